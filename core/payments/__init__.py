"""Payment providers behind one protocol (`provider.PaymentProvider`), chosen
by `payments.provider` in the config. The Stripe SDK is imported only when
`stripe-terminal` is chosen, so `core` loads without it."""

from __future__ import annotations

from core.clock import Clock
from core.config import PaymentSettings
from core.payments.provider import (
    ChargeRequest,
    PaymentProvider,
    PaymentStatus,
    ProviderState,
    ProviderUnavailable,
    RefundState,
)
from core.storage.database import Database


def make_provider(
    settings: PaymentSettings, db: Database, site_id: str, clock: Clock
) -> PaymentProvider:
    """The provider the config asks for."""
    if settings.provider == "stripe-terminal":
        from core.payments.stripe_terminal import StripeTerminalProvider

        assert settings.stripe_api_key is not None and settings.stripe_reader_id
        return StripeTerminalProvider(
            api_key=settings.stripe_api_key.get_secret_value(),
            reader_id=settings.stripe_reader_id,
            api_base=settings.stripe_api_base,
            max_network_retries=settings.max_network_retries,
        )
    from core.payments.simulated import SimulatedProvider

    return SimulatedProvider(db, site_id, clock)


__all__ = [
    "ChargeRequest",
    "PaymentProvider",
    "PaymentStatus",
    "ProviderState",
    "ProviderUnavailable",
    "RefundState",
    "make_provider",
]
