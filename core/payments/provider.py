"""What Lotkeeper asks of a payment provider, and what it gets back.

Card data never reaches Lotkeeper: a provider drives a card reader (or
simulates one) and reports the outcome. Every call carries the ledger row's
idempotency key, so asking twice never charges twice. The payment service
(`core.services.payments`) writes the ledger row before `start` is called and
settles it from what `poll` or `lookup` report.

A card-present payment takes a while (the driver has to tap), so the flow is:
`start` hands the payment to the reader and returns at once, `poll` is asked
until the state is final, `cancel` stops it (driver pressed cancel, or the
reader timed out). `lookup` is for the reconciler: what became of an attempt
whose process died, started again with the same key if it never got far.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class PaymentStatus(enum.StrEnum):
    """A ledger row's state. Only `pending` may change; the rest are final."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self is not PaymentStatus.PENDING


@dataclass(frozen=True)
class ChargeRequest:
    """One payment attempt, as the provider sees it."""

    idempotency_key: str
    amount: int  # minor units, > 0
    currency: str  # ISO 4217, lower case ("usd")
    description: str
    # Only the simulated provider reads this: a test card token (see
    # `core.payments.simulated`). Real readers take the card themselves.
    card: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderState:
    """Where a payment is at the provider."""

    status: PaymentStatus
    provider_ref: str | None = None  # e.g. the Stripe PaymentIntent id
    card_brand: str | None = None
    card_last4: str | None = None
    failure_code: str | None = None  # e.g. "card_declined", "reader_timeout"
    failure_message: str | None = None  # fit to show a driver
    reader_message: str | None = None  # live status for the screen ("Tap or insert card")


@dataclass(frozen=True)
class RefundState:
    status: PaymentStatus  # succeeded, failed or pending
    provider_ref: str | None = None  # e.g. the Stripe Refund id
    failure_message: str | None = None


@dataclass(frozen=True)
class ReaderHealth:
    """How the card reader is, for the kiosk's heartbeat."""

    ok: bool
    detail: str  # for the attendant: "tmr_123 online", "reader offline"


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered with a server error
    after its retries. Nothing is known to have happened; the same call with
    the same key is safe to repeat."""


class IntentNotSupported(Exception):
    """This provider takes no payments made by the client itself."""


class PaymentProvider(Protocol):
    """A way to take card payments. Implementations: `simulated`,
    `stripe-terminal`."""

    name: str
    # True for the demo provider: results and receipts must say so.
    simulated: bool
    # True when it can take payments the client made itself (`claim_intent`).
    client_payments: bool

    def start(self, request: ChargeRequest) -> ProviderState:
        """Create the payment (idempotent by key) and hand it to the reader.
        Returns a pending state with a `provider_ref`, or a final failure."""
        ...

    def poll(self, request: ChargeRequest, provider_ref: str) -> ProviderState:
        """The payment's current state; final once the reader is done."""
        ...

    def cancel(self, request: ChargeRequest, provider_ref: str) -> ProviderState:
        """Stop the reader action and cancel the payment if it has not
        succeeded. Returns the final state (which may be `succeeded` if the
        card was taken just before the cancel arrived)."""
        ...

    def lookup(self, request: ChargeRequest, provider_ref: str | None) -> ProviderState:
        """For the reconciler: the final state of an attempt left pending by a
        crash, never creating a charge. A payment that was created but never
        taken is cancelled at the provider and reported `cancelled`; one that
        never reached the provider is reported `cancelled` with no ref. May
        return `pending` while a reader is still working on it."""
        ...

    def refund(
        self, idempotency_key: str, provider_ref: str, amount: int, currency: str
    ) -> RefundState:
        """Refund `amount` of a succeeded payment (idempotent by key)."""
        ...

    def reader_health(self) -> ReaderHealth:
        """Whether the card reader can take a payment now. Never raises."""
        ...

    def claim_intent(self, intent_id: str, request: ChargeRequest) -> ProviderState:
        """A payment the client made itself (a Stripe PaymentIntent it
        confirmed from a phone or the web): its state, once checked to be
        for `request`'s amount and currency, captured if it was only
        authorized. Never creates a charge. Raises `IntentNotSupported`."""
        ...
