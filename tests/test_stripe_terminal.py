"""The stripe-terminal provider, driven through the real stripe SDK over real
HTTP against `FakeStripe` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import stripe
import stripe._http_client
from fake_stripe import CardOutcome, FakeStripe

from core.payments.provider import (
    ChargeRequest,
    PaymentProvider,
    PaymentStatus,
    ProviderState,
    ProviderUnavailable,
)
from core.payments.stripe_terminal import (
    DECLINE_MESSAGES,
    NOT_ACCEPTED,
    READER_PROMPT,
    StripeTerminalProvider,
)

VISA = "4242424242424242"
DECLINED = "4000000000000002"
INTENTS = "/v1/payment_intents"
REFUNDS = "/v1/refunds"
RETRIES = 2


@pytest.fixture(autouse=True)
def _no_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK waits at least half a second before each retry. The retry logic
    # (what it retries, with which idempotency key) is unchanged without it.
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.0)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def provider(fake: FakeStripe) -> StripeTerminalProvider:
    return StripeTerminalProvider(
        fake.api_key, fake.reader_id, api_base=fake.url, max_network_retries=RETRIES
    )


@pytest.fixture
def sdk(fake: FakeStripe) -> stripe.StripeClient:
    """A client of our own, for what the driver and Stripe's test helpers do."""
    return stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})


def charge(key: str = "pay_0001", amount: int = 1250) -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=key,
        amount=amount,
        currency="usd",
        description="Parking, ticket T-1001",
        metadata={"kiosk": "north-1", "ticket": "T-1001"},
    )


def tap(sdk: stripe.StripeClient, fake: FakeStripe, number: str = VISA) -> None:
    sdk.v1.test_helpers.terminal.readers.present_payment_method(
        fake.reader_id, {"card_present": {"number": number}}
    )


def started(provider: StripeTerminalProvider, request: ChargeRequest) -> str:
    state = provider.start(request)
    assert state.status is PaymentStatus.PENDING
    assert state.provider_ref is not None
    return state.provider_ref


def requests_to(fake: FakeStripe, method: str, path: str) -> list[str | None]:
    """The idempotency keys of the requests that arrived, in order."""
    return [e.idempotency_key for e in fake.log if e.method == method and e.path == path]


# -- a payment ----------------------------------------------------------------


def test_the_provider_is_a_payment_provider_named_stripe_terminal(
    provider: StripeTerminalProvider,
) -> None:
    as_protocol: PaymentProvider = provider  # checked by mypy
    assert (as_protocol.name, as_protocol.simulated) == ("stripe-terminal", False)


def test_a_tapped_card_is_pending_until_the_reader_reports_success_with_brand_and_last4(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    request = charge()
    state = provider.start(request)

    assert state == ProviderState(
        PaymentStatus.PENDING, state.provider_ref, reader_message=READER_PROMPT
    )
    ref = state.provider_ref
    assert ref is not None and ref.startswith("pi_")
    intent = fake.payment_intents[ref]
    assert intent["amount"] == 1250
    assert intent["currency"] == "usd"
    assert intent["capture_method"] == "automatic"
    assert intent["payment_method_types"] == ["card_present"]
    assert intent["description"] == "Parking, ticket T-1001"
    assert intent["metadata"] == {"kiosk": "north-1", "ticket": "T-1001"}
    assert requests_to(fake, "POST", INTENTS) == ["pay_0001"]
    process = f"/v1/terminal/readers/{fake.reader_id}/process_payment_intent"
    assert requests_to(fake, "POST", process) == ["pay_0001:process"]

    assert provider.poll(request, ref).status is PaymentStatus.PENDING
    tap(sdk, fake)
    done = provider.poll(request, ref)

    assert done == ProviderState(PaymentStatus.SUCCEEDED, ref, card_brand="visa", card_last4="4242")
    assert len(fake.successful_charges()) == 1


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (DECLINED, "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000119", "processing_error"),
    ],
)
def test_a_declined_card_fails_with_its_code_and_a_message_for_the_driver(
    fake: FakeStripe,
    provider: StripeTerminalProvider,
    sdk: stripe.StripeClient,
    number: str,
    code: str,
) -> None:
    request = charge()
    ref = started(provider, request)
    tap(sdk, fake, number)

    state = provider.poll(request, ref)

    assert state.status is PaymentStatus.FAILED
    assert state.failure_code == code
    assert state.failure_message == DECLINE_MESSAGES[code]
    assert "Your card" not in (state.failure_message or "")  # Stripe's own wording stays out
    # A failed row must never turn into a charge later.
    assert fake.payment_intents[ref]["status"] == "canceled"
    assert fake.successful_charges() == []


def test_a_wrong_pin_has_its_own_message(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    # Not one of Stripe's test numbers: registered with the fake for this test.
    fake.cards["4000000000000101"] = CardOutcome(
        "visa", "0101", "incorrect_pin", "incorrect_pin", "The PIN you entered is incorrect."
    )
    request = charge()
    ref = started(provider, request)
    tap(sdk, fake, "4000000000000101")

    state = provider.poll(request, ref)

    assert (state.failure_code, state.failure_message) == (
        "incorrect_pin",
        DECLINE_MESSAGES["incorrect_pin"],
    )


def test_an_unlisted_decline_gets_the_generic_message_and_keeps_its_code(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    fake.cards["4000000000006975"] = CardOutcome(
        "visa", "6975", "card_decline_rate_limit_exceeded", None, "Too many attempts."
    )
    request = charge()
    ref = started(provider, request)
    tap(sdk, fake, "4000000000006975")

    state = provider.poll(request, ref)

    assert state.status is PaymentStatus.FAILED
    assert state.failure_code == "card_decline_rate_limit_exceeded"
    assert state.failure_message == NOT_ACCEPTED


def test_a_decline_is_still_reported_after_the_reader_moved_on_to_another_payment(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    first = charge("pay_first")
    ref = started(provider, first)
    tap(sdk, fake, "4000000000009995")
    started(provider, charge("pay_second"))  # the reader now works for another payment

    state = provider.poll(first, ref)

    assert (state.status, state.failure_code) == (PaymentStatus.FAILED, "insufficient_funds")


# -- the reader cannot take it ------------------------------------------------


def test_a_busy_reader_fails_the_new_payment_and_cancels_its_intent(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    first = started(provider, charge("pay_first"))

    state = provider.start(charge("pay_second"))

    assert state.status is PaymentStatus.FAILED
    assert state.failure_code == "reader_busy"
    assert state.failure_message == "The card reader is busy. Please wait a moment and try again."
    assert state.provider_ref is not None
    assert fake.payment_intents[state.provider_ref]["status"] == "canceled"
    # The payment already on the reader is left alone.
    action = fake.readers[fake.reader_id]["action"]
    assert action["process_payment_intent"]["payment_intent"] == first
    assert action["status"] == "in_progress"


@pytest.mark.parametrize(
    ("stripe_code", "failure_code"),
    [("terminal_reader_offline", "reader_offline"), ("terminal_reader_timeout", "reader_timeout")],
)
def test_an_unreachable_reader_fails_the_payment_without_leaving_an_open_intent(
    fake: FakeStripe, provider: StripeTerminalProvider, stripe_code: str, failure_code: str
) -> None:
    fake.set_reader_fault(fake.reader_id, stripe_code)

    state = provider.start(charge())

    assert (state.status, state.failure_code) == (PaymentStatus.FAILED, failure_code)
    assert state.failure_message and "reader" in state.failure_message
    assert [i["status"] for i in fake.payment_intents.values()] == ["canceled"]


def test_stripe_refusing_the_amount_fails_the_payment_before_anything_is_created(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    state = provider.start(charge(amount=20))  # below Stripe's 50-cent minimum

    assert state.status is PaymentStatus.FAILED
    assert state.failure_code == "amount_too_small"
    assert state.provider_ref is None
    assert fake.payment_intents == {}


# -- cancel -------------------------------------------------------------------


def test_cancel_while_waiting_stops_the_reader_and_cancels_the_intent(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    ref = started(provider, request)

    state = provider.cancel(request, ref)

    assert state.status is PaymentStatus.CANCELLED
    assert state.failure_code == "cancelled"
    assert fake.readers[fake.reader_id]["action"] is None
    assert fake.count("POST", f"/v1/terminal/readers/{fake.reader_id}/cancel_action") == 1
    assert fake.payment_intents[ref]["status"] == "canceled"


def test_cancel_after_the_card_was_taken_reports_the_success(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    request = charge()
    ref = started(provider, request)
    tap(sdk, fake)

    state = provider.cancel(request, ref)

    assert (state.status, state.card_last4) == (PaymentStatus.SUCCEEDED, "4242")
    assert fake.payment_intents[ref]["status"] == "succeeded"


def test_cancel_racing_a_tap_on_the_reader_reports_the_success(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    ref = started(provider, request)
    # The driver's card goes through between our look at the reader and the
    # cancel command reaching it.
    fake.before_next(
        "POST", f"/v1/terminal/readers/{fake.reader_id}/cancel_action", fake.present_card
    )

    state = provider.cancel(request, ref)

    assert (state.status, state.card_brand) == (PaymentStatus.SUCCEEDED, "visa")
    assert fake.payment_intents[ref]["status"] == "succeeded"
    assert len(fake.successful_charges()) == 1


def test_a_card_presented_after_cancel_is_not_charged(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    ref = started(provider, request)
    # The cancel command never reaches the reader, so it keeps waiting for a card.
    fake.fail_next(status=400, path=f"/v1/terminal/readers/{fake.reader_id}/cancel_action")

    assert provider.cancel(request, ref).status is PaymentStatus.CANCELLED
    fake.present_card()

    assert fake.successful_charges() == []
    assert provider.poll(request, ref).status is PaymentStatus.CANCELLED


# -- idempotency and retries ----------------------------------------------------


def test_starting_twice_with_the_same_key_creates_one_intent(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    first = provider.start(request)
    second = provider.start(request)

    assert second == first
    assert len(fake.payment_intents) == 1
    assert [e.replayed for e in fake.log if e.path == INTENTS] == [False, True]


def test_server_errors_are_retried_by_the_sdk_with_the_same_idempotency_key(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    fake.fail_next(RETRIES, status=500, path=INTENTS)

    state = provider.start(charge())

    assert state.status is PaymentStatus.PENDING
    assert requests_to(fake, "POST", INTENTS) == ["pay_0001"] * (RETRIES + 1)
    assert len(fake.payment_intents) == 1


def test_an_answer_lost_on_the_way_is_replayed_on_retry_not_created_twice(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    fake.drop_next(path=INTENTS)

    state = provider.start(charge())

    assert state.status is PaymentStatus.PENDING
    assert len(fake.payment_intents) == 1
    assert [e.replayed for e in fake.log if e.path == INTENTS] == [False, True]


def test_server_errors_beyond_the_retries_raise_provider_unavailable(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    fake.fail_next(RETRIES + 1, status=503, path=INTENTS)

    with pytest.raises(ProviderUnavailable, match="server error"):
        provider.start(charge())
    assert fake.count("POST", INTENTS) == RETRIES + 1


def test_every_call_raises_provider_unavailable_when_stripe_cannot_be_reached(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    ref = started(provider, request)
    fake.offline = True
    calls: list[Callable[[], object]] = [
        lambda: provider.start(charge("pay_0002")),
        lambda: provider.poll(request, ref),
        lambda: provider.cancel(request, ref),
        lambda: provider.lookup(request, None),
        lambda: provider.refund("refund_1", ref, 100, "usd"),
    ]

    for call in calls:
        with pytest.raises(ProviderUnavailable, match="could not reach Stripe"):
            call()
    assert fake.count("POST", INTENTS) == 1 + 2 * (RETRIES + 1)  # start and lookup retried


def test_a_refused_api_key_raises_provider_unavailable_saying_so(fake: FakeStripe) -> None:
    provider = StripeTerminalProvider("sk_test_wrong_key_0000", fake.reader_id, api_base=fake.url)

    with pytest.raises(ProviderUnavailable, match="Stripe API key was refused") as refused:
        provider.start(charge())
    assert "sk_test_wrong" not in str(refused.value)
    assert fake.count("POST", INTENTS) == 1  # a refused key is not retried
    assert fake.payment_intents == {}


@pytest.mark.parametrize(("status", "says"), [(403, "not allowed"), (429, "rate limiting")])
def test_refused_permissions_and_rate_limits_raise_provider_unavailable(
    fake: FakeStripe, provider: StripeTerminalProvider, status: int, says: str
) -> None:
    fake.fail_next(status=status, path=INTENTS)

    with pytest.raises(ProviderUnavailable, match=says):
        provider.start(charge())
    assert fake.payment_intents == {}


# -- lookup (the reconciler) ------------------------------------------------------


def test_lookup_without_a_ref_finds_a_paid_intent_without_creating_another(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    request = charge()
    ref = started(provider, request)  # the process died before saving the ref
    tap(sdk, fake)

    state = provider.lookup(request, None)

    assert state == ProviderState(
        PaymentStatus.SUCCEEDED, ref, card_brand="visa", card_last4="4242"
    )
    assert list(fake.payment_intents) == [ref]
    assert fake.count("POST", f"/v1/terminal/readers/{fake.reader_id}/process_payment_intent") == 1


def test_lookup_when_the_intent_was_never_created_cancels_the_one_it_had_to_create(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    fake.offline = True
    with pytest.raises(ProviderUnavailable):
        provider.start(request)
    fake.offline = False

    state = provider.lookup(request, None)

    assert state.status is PaymentStatus.CANCELLED
    assert state.provider_ref is None
    assert state.failure_code == "never_started"
    assert [i["status"] for i in fake.payment_intents.values()] == ["canceled"]
    assert fake.charges == {}
    assert fake.readers[fake.reader_id]["action"] is None


def test_lookup_cancels_an_intent_that_never_reached_the_reader(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    process = f"/v1/terminal/readers/{fake.reader_id}/process_payment_intent"
    fake.fail_next(RETRIES + 1, status=500, path=process)
    with pytest.raises(ProviderUnavailable):
        provider.start(request)

    state = provider.lookup(request, None)

    (ref,) = fake.payment_intents
    assert (state.status, state.provider_ref) == (PaymentStatus.CANCELLED, ref)
    assert fake.payment_intents[ref]["status"] == "canceled"
    assert fake.count("POST", process) == RETRIES + 1  # lookup never talks to the reader


def test_lookup_leaves_a_payment_the_reader_is_still_taking_pending(
    fake: FakeStripe, provider: StripeTerminalProvider
) -> None:
    request = charge()
    ref = started(provider, request)

    state = provider.lookup(request, ref)

    assert state.status is PaymentStatus.PENDING
    assert fake.payment_intents[ref]["status"] == "requires_payment_method"
    assert fake.readers[fake.reader_id]["action"]["status"] == "in_progress"


def test_lookup_cancels_an_abandoned_intent_the_reader_no_longer_holds(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    request = charge()
    ref = started(provider, request)
    sdk.v1.terminal.readers.cancel_action(fake.reader_id)  # e.g. reset at the reader

    state = provider.lookup(request, ref)

    assert (state.status, state.provider_ref) == (PaymentStatus.CANCELLED, ref)
    assert fake.payment_intents[ref]["status"] == "canceled"


def test_lookup_captures_an_authorised_intent(
    fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient
) -> None:
    intent = sdk.v1.payment_intents.create(
        {
            "amount": 900,
            "currency": "usd",
            "allowed_payment_method_types": ["card_present"],
            "capture_method": "manual",
        }
    )
    sdk.v1.terminal.readers.process_payment_intent(fake.reader_id, {"payment_intent": intent.id})
    tap(sdk, fake, "5555555555554444")
    assert fake.payment_intents[intent.id]["status"] == "requires_capture"

    state = provider.lookup(charge(amount=900), intent.id)

    assert (state.status, state.card_brand) == (PaymentStatus.SUCCEEDED, "mastercard")
    assert len(fake.successful_charges()) == 1


# -- refunds --------------------------------------------------------------------


@pytest.fixture
def paid(fake: FakeStripe, provider: StripeTerminalProvider, sdk: stripe.StripeClient) -> str:
    """A succeeded payment of 12.50 USD; its PaymentIntent id."""
    request = charge()
    ref = started(provider, request)
    tap(sdk, fake)
    assert provider.poll(request, ref).status is PaymentStatus.SUCCEEDED
    return ref


def test_a_full_refund_succeeds(
    fake: FakeStripe, provider: StripeTerminalProvider, paid: str
) -> None:
    state = provider.refund("refund_1", paid, 1250, "usd")

    assert state.status is PaymentStatus.SUCCEEDED
    assert state.provider_ref is not None and state.provider_ref.startswith("re_")
    assert fake.refunds[state.provider_ref]["amount"] == 1250
    assert requests_to(fake, "POST", REFUNDS) == ["refund_1"]


def test_partial_refunds_succeed_until_the_payment_is_used_up(
    fake: FakeStripe, provider: StripeTerminalProvider, paid: str
) -> None:
    assert provider.refund("refund_1", paid, 500, "usd").status is PaymentStatus.SUCCEEDED
    assert provider.refund("refund_2", paid, 750, "usd").status is PaymentStatus.SUCCEEDED

    state = provider.refund("refund_3", paid, 1, "usd")

    assert state.status is PaymentStatus.FAILED
    assert state.failure_message == "This payment has already been refunded in full."
    assert sum(r["amount"] for r in fake.refunds.values()) == 1250


def test_refunding_more_than_is_left_is_refused(
    fake: FakeStripe, provider: StripeTerminalProvider, paid: str
) -> None:
    provider.refund("refund_1", paid, 1000, "usd")

    state = provider.refund("refund_2", paid, 500, "usd")

    assert state.status is PaymentStatus.FAILED
    assert state.failure_message == "That is more than is left to refund on this payment."
    assert len(fake.refunds) == 1


def test_a_repeated_refund_key_replays_the_same_refund(
    fake: FakeStripe, provider: StripeTerminalProvider, paid: str
) -> None:
    first = provider.refund("refund_1", paid, 500, "usd")
    again = provider.refund("refund_1", paid, 500, "usd")

    assert again == first
    assert len(fake.refunds) == 1
    assert [e.replayed for e in fake.log if e.path == REFUNDS] == [False, True]


def test_a_refund_key_reused_for_another_amount_is_refused(
    fake: FakeStripe, provider: StripeTerminalProvider, paid: str
) -> None:
    provider.refund("refund_1", paid, 500, "usd")

    state = provider.refund("refund_1", paid, 700, "usd")

    assert state.status is PaymentStatus.FAILED
    assert state.failure_message == "This refund key was already used for a different refund."
    assert len(fake.refunds) == 1


def test_a_refund_stripe_has_not_finished_is_pending(
    fake: FakeStripe, provider: StripeTerminalProvider, paid: str
) -> None:
    fake.refund_status = "pending"

    assert provider.refund("refund_1", paid, 500, "usd").status is PaymentStatus.PENDING


def test_a_card_error_on_refund_is_a_failed_refund(
    fake: FakeStripe, provider: StripeTerminalProvider, paid: str
) -> None:
    fake.fail_next(status=402, path=REFUNDS, type="card_error", code="expired_card")

    state = provider.refund("refund_1", paid, 500, "usd")

    assert state.status is PaymentStatus.FAILED
    assert state.failure_message == "Stripe refused the refund (expired_card)."


def test_brand_and_last4_are_read_from_the_latest_charge_even_when_it_is_only_an_id(
    fake: FakeStripe,
    provider: StripeTerminalProvider,
    sdk: stripe.StripeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stripe sends `latest_charge` as an id unless expanded (a replayed
    create, a cancel that lost the race): the card is then read from the
    charge's `payment_method_details.card_present`."""
    request = charge()
    ref = started(provider, request)
    tap(sdk, fake)
    monkeypatch.setattr(
        provider,
        "_retrieve_intent",
        lambda intent_id: sdk.v1.payment_intents.retrieve(intent_id),  # not expanded
    )
    done = provider.poll(request, ref)
    assert (done.status, done.card_brand, done.card_last4) == (
        PaymentStatus.SUCCEEDED,
        "visa",
        "4242",
    )
    assert fake.count("GET", f"/v1/charges/{fake.payment_intents[ref]['latest_charge']}") == 1
