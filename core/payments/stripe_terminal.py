"""Card payments on a Stripe Terminal smart reader, driven from the server.

This is Stripe's "server-driven" Terminal integration (WisePOS E, S700): the
reader talks to Stripe, Lotkeeper talks to Stripe, and no card data passes
through Lotkeeper.

1. `start` creates a PaymentIntent allowing only `card_present`, captured
   automatically, under the ledger row's idempotency key, then asks the
   reader to process it (`process_payment_intent`, keyed `<key>:process`).
   The reader shows the amount and waits for the driver's card.
2. `poll` reads the reader's current action. `in_progress`: the driver has not
   finished. `succeeded`: the PaymentIntent is read back with its charge, for
   the card brand and last four digits. `failed`: a decline, reported with a
   message fit for the driver; the PaymentIntent is cancelled so that nothing
   can be charged on it later. If the reader has moved on (another action, or
   none), the PaymentIntent's own status decides.
3. `cancel` stops the reader action and cancels the PaymentIntent, unless the
   card was taken first, in which case the payment stands.
4. `lookup` is the reconciler's question after a crash. With no ref, it sends
   the create call again with the same key and parameters: Stripe answers with
   the original PaymentIntent if the first call got through, or creates an
   unpaid one if it did not. Nothing is ever sent to the reader, so a lookup
   cannot take a card; an attempt that never got one is cancelled.
5. `refund` refunds part or all of a PaymentIntent, once per key.

Stripe replays the *original* response for a repeated idempotency key, so a
PaymentIntent obtained that way is read again before its status is trusted.

Errors: no answer, server errors (after the SDK's own retries, which resend
the same idempotency key), rate limits and a refused API key raise
`ProviderUnavailable`. Stripe refusing a request (a decline, a busy reader)
becomes a failed state. No stripe exception leaves this module.

Only this module imports `stripe`, and nothing in `core` imports it eagerly,
so `core` loads without the SDK.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import stripe
from stripe import PaymentIntent
from stripe.terminal import Reader

from core.payments.provider import (
    ChargeRequest,
    PaymentStatus,
    ProviderState,
    ProviderUnavailable,
    ReaderHealth,
    RefundState,
)

T = TypeVar("T")

READER_PROMPT = "Tap, insert or swipe your card"
PROCESSING = "Processing, please wait"
CANCELLED_MESSAGE = "The payment was cancelled."
NOT_ACCEPTED = "The card was not accepted. Please try another card."
NOT_AVAILABLE = "Card payment is not available right now. Please ask an attendant for help."

# Keyed by Stripe's error code, or by its decline code where that says more
# (Stripe reports insufficient funds as `card_declined` / `insufficient_funds`).
DECLINE_MESSAGES: dict[str, str] = {
    "card_declined": "The card was declined. Please try another card.",
    "expired_card": "This card has expired. Please try another card.",
    "insufficient_funds": "The card was declined (insufficient funds). Please try another card.",
    "incorrect_pin": "The PIN was not correct. Please try again.",
    "processing_error": "The card could not be processed. Please try again.",
}

# Stripe's error code -> (our failure code, message for the driver).
READER_ERRORS: dict[str, tuple[str, str]] = {
    "terminal_reader_busy": (
        "reader_busy",
        "The card reader is busy. Please wait a moment and try again.",
    ),
    "terminal_reader_offline": (
        "reader_offline",
        "The card reader is offline. Please ask an attendant for help.",
    ),
    "terminal_reader_timeout": (
        "reader_timeout",
        "The card reader did not answer. Please try again.",
    ),
    "terminal_reader_hardware_fault": (
        "reader_fault",
        "The card reader is not working. Please ask an attendant for help.",
    ),
}
READER_UNAVAILABLE = ("reader_unavailable", NOT_AVAILABLE)

# PaymentIntent statuses in which no card has been taken and cancelling is allowed.
UNPAID = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})


def _decline(code: str | None, decline_code: str | None) -> tuple[str, str]:
    """Our failure code and the driver's message for a refused card."""
    for candidate in (decline_code, code):
        if candidate in DECLINE_MESSAGES:
            return candidate, DECLINE_MESSAGES[candidate]
    return code or decline_code or "card_not_accepted", NOT_ACCEPTED


def _optional(obj: object, name: str) -> object:
    """A field Stripe may leave out of a response (sub-objects that only exist
    for one payment method type, fields newer than the pinned API version).
    StripeObject raises AttributeError for those rather than returning None."""
    return getattr(obj, name, None)


def _text(obj: object, name: str) -> str | None:
    value = _optional(obj, name)
    return value if isinstance(value, str) else None


def _card_of(intent: PaymentIntent) -> tuple[str | None, str | None]:
    """Brand and last four digits, when the charge came back expanded."""
    charge = _optional(intent, "latest_charge")
    if charge is None or isinstance(charge, str):
        return None, None
    return _card_of_charge(charge)


def _card_of_charge(charge: object) -> tuple[str | None, str | None]:
    """Brand and last four digits as Stripe sends them on a charge:
    `payment_method_details.card_present` for a reader (`card` for a phone)."""
    details = _optional(charge, "payment_method_details")
    for kind in ("card_present", "interac_present", "card"):
        card = _optional(details, kind)
        if card is not None:
            return _text(card, "brand"), _text(card, "last4")
    return None, None


def _is_replay(obj: stripe.StripeObject) -> bool:
    response = obj.last_response
    return response is not None and response.headers.get("Idempotent-Replayed") == "true"


class StripeTerminalProvider:
    """Takes card payments on one Stripe Terminal reader (`tmr_...`)."""

    name = "stripe-terminal"
    simulated = False
    client_payments = True

    def __init__(
        self,
        api_key: str,
        reader_id: str,
        api_base: str | None = None,
        max_network_retries: int = 2,
    ) -> None:
        api_base = api_base.rstrip("/") if api_base else None
        self._reader_id = reader_id
        self._retries = max_network_retries
        self._api_base = api_base or stripe.DEFAULT_API_BASE
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
        )

    # -- the protocol ------------------------------------------------------

    def reader_health(self) -> ReaderHealth:
        """Asks Stripe for the reader's status (Stripe hears from the reader
        itself): online, offline, or why it could not be asked."""
        try:
            reader = self._call(
                "read the card reader",
                lambda: self._client.v1.terminal.readers.retrieve(self._reader_id),
            )
        except ProviderUnavailable as exc:
            return ReaderHealth(False, str(exc))
        except stripe.StripeError as exc:
            return ReaderHealth(False, f"reader {self._reader_id}: {exc.user_message or exc}")
        status = _text(reader, "status") or "unknown"
        label = _text(reader, "label") or self._reader_id
        if status != "online":
            return ReaderHealth(False, f"card reader {label} is {status}")
        return ReaderHealth(True, f"card reader {label} online")

    def start(self, request: ChargeRequest) -> ProviderState:
        """Create the PaymentIntent (once per key) and hand it to the reader.
        Pending with the PaymentIntent id as `provider_ref`, or failed if
        Stripe refused the payment or the reader cannot take it."""
        try:
            return self._start(request)
        except stripe.StripeError as exc:
            raise self._unexpected("start the payment", exc) from exc

    def poll(self, request: ChargeRequest, provider_ref: str) -> ProviderState:
        """Where the payment is: pending while the reader waits for a card,
        then succeeded (with the card brand and last four digits) or failed."""
        try:
            return self._poll(provider_ref)
        except stripe.StripeError as exc:
            raise self._unexpected("check on the payment", exc) from exc

    def cancel(self, request: ChargeRequest, provider_ref: str) -> ProviderState:
        """Stop the reader and cancel the PaymentIntent. Succeeded if the card
        was taken before the cancel arrived; pending only if Stripe is still
        processing a card that was presented."""
        try:
            return self._cancel(provider_ref)
        except stripe.StripeError as exc:
            raise self._unexpected("cancel the payment", exc) from exc

    def lookup(self, request: ChargeRequest, provider_ref: str | None) -> ProviderState:
        """For the reconciler: the final state of an attempt a crash left
        pending. Never sends anything to the reader, so never takes a card.
        Pending only while the reader is still working on this payment."""
        try:
            return self._lookup(request, provider_ref)
        except stripe.StripeError as exc:
            raise self._unexpected("look up the payment", exc) from exc

    def refund(
        self, idempotency_key: str, provider_ref: str, amount: int, currency: str
    ) -> RefundState:
        """Refund `amount` of the PaymentIntent `provider_ref` (once per key).
        Stripe refunds in the payment's own currency."""
        try:
            return self._refund(idempotency_key, provider_ref, amount)
        except stripe.StripeError as exc:
            raise self._unexpected("refund the payment", exc) from exc

    # -- the flows ---------------------------------------------------------

    def claim_intent(self, intent_id: str, request: ChargeRequest) -> ProviderState:
        try:
            return self._claim_intent(intent_id, request)
        except stripe.InvalidRequestError:
            return ProviderState(
                PaymentStatus.FAILED,
                failure_code="intent_unknown",
                failure_message="Stripe has no such PaymentIntent.",
            )
        except stripe.StripeError as exc:
            raise self._unexpected("check the PaymentIntent", exc) from exc

    def _claim_intent(self, intent_id: str, request: ChargeRequest) -> ProviderState:
        intent = self._retrieve_intent(intent_id)
        if intent.amount != request.amount or intent.currency != request.currency:
            return ProviderState(
                PaymentStatus.FAILED,
                failure_code="intent_mismatch",
                failure_message=(
                    f"That PaymentIntent is for {intent.amount} {intent.currency}, "
                    f"not {request.amount} {request.currency}."
                ),
            )
        if intent.status == "requires_capture":
            intent = self._capture(intent.id)
        return self._state_of(intent)

    def _start(self, request: ChargeRequest) -> ProviderState:
        try:
            intent = self._create_intent(request)
        except (stripe.InvalidRequestError, stripe.IdempotencyError, stripe.CardError) as exc:
            return ProviderState(
                PaymentStatus.FAILED,
                failure_code=exc.code or "payment_refused",
                failure_message=NOT_AVAILABLE,
            )
        try:
            self._call(
                "send the payment to the card reader",
                lambda: self._client.v1.terminal.readers.process_payment_intent(
                    self._reader_id,
                    {"payment_intent": intent.id},
                    {"idempotency_key": f"{request.idempotency_key}:process"},
                ),
            )
        except stripe.InvalidRequestError as exc:
            code, message = READER_ERRORS.get(exc.code or "", READER_UNAVAILABLE)
            # A timed-out command may still have reached the reader: cancelling
            # the PaymentIntent makes sure it cannot be paid behind our back,
            # and tells us if it already was.
            settled = self._cancel_intent(intent.id)
            if settled.status is not PaymentStatus.CANCELLED:
                return settled
            return ProviderState(
                PaymentStatus.FAILED, intent.id, failure_code=code, failure_message=message
            )
        return ProviderState(PaymentStatus.PENDING, intent.id, reader_message=READER_PROMPT)

    def _poll(self, intent_id: str) -> ProviderState:
        action = self._reader_action(intent_id)
        if action is None:
            return self._settle(self._retrieve_intent(intent_id))
        if action.status == "in_progress":
            return ProviderState(PaymentStatus.PENDING, intent_id, reader_message=READER_PROMPT)
        if action.status == "failed":
            api_error = _optional(action, "api_error")
            if _text(api_error, "code") == "payment_intent_unexpected_state":
                # Not the card: the PaymentIntent was already cancelled or
                # paid when the card came. Its own status is the answer.
                return self._settle(self._retrieve_intent(intent_id))
            code, message = _decline(
                _text(api_error, "code") or action.failure_code,
                _text(api_error, "decline_code"),
            )
            return self._fail(intent_id, code, message)
        return self._settle(self._retrieve_intent(intent_id))

    def _cancel(self, intent_id: str) -> ProviderState:
        action = self._reader_action(intent_id)
        if action is not None and action.status == "in_progress":
            # Refused if the action finished a moment ago or the reader went
            # offline: cancelling the PaymentIntent below is what makes sure no
            # card can be taken either way.
            with contextlib.suppress(stripe.InvalidRequestError):
                self._call(
                    "stop the card reader",
                    lambda: self._client.v1.terminal.readers.cancel_action(self._reader_id),
                )
        intent = self._retrieve_intent(intent_id)
        if intent.status in ("succeeded", "canceled"):
            return self._state_of(intent)
        return self._cancel_intent(intent_id)

    def _lookup(self, request: ChargeRequest, provider_ref: str | None) -> ProviderState:
        created_now = False
        if provider_ref is None:
            try:
                created = self._create_intent(request)
            except (stripe.InvalidRequestError, stripe.CardError):
                # Stripe refuses these parameters, so it refused them the
                # first time too: the attempt never reached it.
                return ProviderState(
                    PaymentStatus.CANCELLED,
                    failure_code="never_started",
                    failure_message=CANCELLED_MESSAGE,
                )
            except stripe.IdempotencyError as exc:
                raise ProviderUnavailable(
                    f"Stripe holds a different request under idempotency key "
                    f"{request.idempotency_key!r}; compare the ledger row with the "
                    f"Stripe dashboard"
                ) from exc
            provider_ref = created.id
            created_now = not _is_replay(created)

        intent = self._retrieve_intent(provider_ref)
        if intent.status == "requires_capture":
            intent = self._capture(provider_ref)
        if intent.status not in UNPAID:
            return self._state_of(intent)
        if not created_now:
            action = self._reader_action(provider_ref)
            if action is not None and action.status == "in_progress":
                return ProviderState(
                    PaymentStatus.PENDING, provider_ref, reader_message=READER_PROMPT
                )
        state = self._cancel_intent(provider_ref)
        if created_now and state.status is PaymentStatus.CANCELLED:
            # The first create never got through; the PaymentIntent made just
            # now to find that out is not part of the attempt.
            return ProviderState(
                PaymentStatus.CANCELLED,
                failure_code="never_started",
                failure_message=CANCELLED_MESSAGE,
            )
        return state

    def _refund(self, idempotency_key: str, intent_id: str, amount: int) -> RefundState:
        try:
            refund = self._call(
                "refund the payment",
                lambda: self._client.v1.refunds.create(
                    {"payment_intent": intent_id, "amount": amount},
                    {"idempotency_key": idempotency_key},
                ),
            )
        except (stripe.InvalidRequestError, stripe.CardError, stripe.IdempotencyError) as exc:
            return RefundState(PaymentStatus.FAILED, failure_message=self._refund_refusal(exc))
        if refund.status == "succeeded":
            return RefundState(PaymentStatus.SUCCEEDED, refund.id)
        if refund.status in ("failed", "canceled"):
            return RefundState(
                PaymentStatus.FAILED,
                refund.id,
                failure_message="The card's bank could not take the refund.",
            )
        return RefundState(PaymentStatus.PENDING, refund.id)

    # -- pieces ------------------------------------------------------------

    def _create_intent(self, request: ChargeRequest) -> PaymentIntent:
        # `lookup` sends exactly these parameters again under the same key;
        # Stripe refuses a reused key whose parameters differ.
        return self._call(
            "create the payment",
            lambda: self._client.v1.payment_intents.create(
                {
                    "amount": request.amount,
                    "currency": request.currency,
                    # Stripe API 2026-09-30 and later (the SDK pins one) refuse
                    # the older `payment_method_types` parameter.
                    "allowed_payment_method_types": ["card_present"],
                    "capture_method": "automatic",
                    "description": request.description,
                    "metadata": dict(request.metadata),
                },
                {"idempotency_key": request.idempotency_key},
            ),
        )

    def _retrieve_intent(self, intent_id: str) -> PaymentIntent:
        return self._call(
            "read the payment",
            lambda: self._client.v1.payment_intents.retrieve(
                intent_id, {"expand": ["latest_charge"]}
            ),
        )

    def _capture(self, intent_id: str) -> PaymentIntent:
        return self._call(
            "capture the payment",
            lambda: self._client.v1.payment_intents.capture(
                intent_id, {"expand": ["latest_charge"]}
            ),
        )

    def _card_of_charge_id(self, charge_id: str) -> tuple[str | None, str | None]:
        """The card of a charge by id; unknown if Stripe cannot say now (the
        payment stands either way: only the receipt's card line is missing)."""
        try:
            charge = self._call(
                "read the card of the payment",
                lambda: self._client.v1.charges.retrieve(charge_id),
            )
        except (stripe.StripeError, ProviderUnavailable):
            return None, None
        return _card_of_charge(charge)

    def _reader_action(self, intent_id: str) -> Reader.Action | None:
        """The reader's process_payment_intent action for this PaymentIntent,
        or None when the reader is idle or doing something else."""
        try:
            reader = self._call(
                "read the card reader",
                lambda: self._client.v1.terminal.readers.retrieve(self._reader_id),
            )
        except stripe.InvalidRequestError:
            # Reader unknown to Stripe (removed, or a wrong id): the
            # PaymentIntent's own status still answers.
            return None
        action = reader.action
        if action is None or action.type != "process_payment_intent":
            return None
        process = _optional(action, "process_payment_intent")
        target = _optional(process, "payment_intent")
        target_id = target if isinstance(target, str) else _text(target, "id")
        return action if target_id == intent_id else None

    def _cancel_intent(self, intent_id: str) -> ProviderState:
        """Cancel an unpaid PaymentIntent; if Stripe says it is past that,
        report what it became instead."""
        try:
            intent = self._call(
                "cancel the payment",
                lambda: self._client.v1.payment_intents.cancel(intent_id),
            )
        except stripe.InvalidRequestError:
            intent = self._retrieve_intent(intent_id)
        return self._state_of(intent)

    def _fail(self, intent_id: str, code: str, message: str) -> ProviderState:
        """Report a refused card, cancelling the PaymentIntent so a failed
        ledger row can never turn into a charge later."""
        settled = self._cancel_intent(intent_id)
        if settled.status is not PaymentStatus.CANCELLED:
            return settled
        return ProviderState(
            PaymentStatus.FAILED, intent_id, failure_code=code, failure_message=message
        )

    def _settle(self, intent: PaymentIntent) -> ProviderState:
        """The state of a PaymentIntent the reader is not (or no longer)
        working on."""
        if intent.status == "requires_capture":
            intent = self._capture(intent.id)
        state = self._state_of(intent)
        if state.status is PaymentStatus.FAILED and state.failure_code and state.failure_message:
            return self._fail(intent.id, state.failure_code, state.failure_message)
        return state

    def _state_of(self, intent: PaymentIntent) -> ProviderState:
        status = intent.status
        if status == "succeeded":
            brand, last4 = _card_of(intent)
            charge_id = _optional(intent, "latest_charge")
            if last4 is None and isinstance(charge_id, str):
                # Sent as an id (not expanded): read the charge itself.
                brand, last4 = self._card_of_charge_id(charge_id)
            return ProviderState(
                PaymentStatus.SUCCEEDED, intent.id, card_brand=brand, card_last4=last4
            )
        if status == "canceled":
            return ProviderState(
                PaymentStatus.CANCELLED,
                intent.id,
                failure_code="cancelled",
                failure_message=CANCELLED_MESSAGE,
            )
        if status in ("processing", "requires_capture"):
            return ProviderState(PaymentStatus.PENDING, intent.id, reader_message=PROCESSING)
        error = _optional(intent, "last_payment_error")
        if status == "requires_payment_method" and error is not None:
            code, message = _decline(_text(error, "code"), _text(error, "decline_code"))
            return ProviderState(
                PaymentStatus.FAILED, intent.id, failure_code=code, failure_message=message
            )
        return ProviderState(PaymentStatus.PENDING, intent.id, reader_message=READER_PROMPT)

    @staticmethod
    def _refund_refusal(exc: stripe.StripeError) -> str:
        code = exc.code
        if code == "amount_too_large":
            return "That is more than is left to refund on this payment."
        if code == "charge_already_refunded":
            return "This payment has already been refunded in full."
        if code == "resource_missing":
            return "Stripe has no such payment to refund."
        if isinstance(exc, stripe.IdempotencyError):
            return "This refund key was already used for a different refund."
        return f"Stripe refused the refund ({code or 'no reason given'})."

    def _call(self, doing: str, call: Callable[[], T]) -> T:
        """Run one SDK call, turning "Stripe could not be asked" into
        ProviderUnavailable. Stripe's refusals pass through for the caller."""
        try:
            return call()
        except stripe.AuthenticationError as exc:
            raise ProviderUnavailable(
                "the Stripe API key was refused; check payments.stripe_api_key "
                "(LOTKEEPER_PAYMENTS__STRIPE_API_KEY)"
            ) from exc
        except stripe.PermissionError as exc:
            raise ProviderUnavailable(
                f"the Stripe API key is not allowed to {doing}; it needs write access "
                f"to PaymentIntents, Refunds and Terminal readers"
            ) from exc
        except stripe.APIConnectionError as exc:
            raise ProviderUnavailable(
                f"could not reach Stripe at {self._api_base} to {doing} "
                f"(tried {self._retries + 1} times)"
            ) from exc
        except stripe.RateLimitError as exc:
            raise ProviderUnavailable(
                f"Stripe is rate limiting requests; could not {doing}, try again shortly"
            ) from exc
        except stripe.APIError as exc:
            raise ProviderUnavailable(
                f"Stripe answered with a server error (HTTP {exc.http_status}) "
                f"after {self._retries + 1} tries; could not {doing}"
            ) from exc

    @staticmethod
    def _unexpected(doing: str, exc: stripe.StripeError) -> ProviderUnavailable:
        # Anything not handled where it arose: the SDK's exceptions stay
        # inside this module, and every call here is safe to repeat.
        kind = type(exc).__name__
        detail = exc.user_message or "no message"
        return ProviderUnavailable(f"Stripe refused to {doing} ({kind}: {detail})")
