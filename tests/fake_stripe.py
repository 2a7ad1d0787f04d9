"""A loopback fake of the slice of Stripe's API that Lotkeeper uses.

`FakeStripe` is a real HTTP server on 127.0.0.1 (a free port) in a daemon
thread, so the real stripe SDK talks to it over real HTTP, exactly as it talks
to api.stripe.com: form-encoded requests (`metadata[kiosk]=...`,
`expand[0]=...`), a bearer API key, `Idempotency-Key` headers, and JSON
answers shaped like Stripe's objects and errors.

    with FakeStripe() as fake:
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})

What it serves: charges (retrieve), PaymentIntents (create, retrieve with
`expand[]=latest_charge`,
cancel, capture), Terminal readers (retrieve, `process_payment_intent`,
`cancel_action`), the simulated-reader test helper `present_payment_method`
(Stripe's own card-present test card numbers, see `TEST_CARDS`), and refunds.

Behaviour copied from Stripe's documentation:
- a repeated idempotency key with the same parameters replays the stored
  answer (header `Idempotent-Replayed: true`); with other parameters it is a
  400 `idempotency_error`. Answers to requests that failed validation or
  conflicted (400/404) are not stored, as at Stripe.
- from API version 2026-09-30 (the installed SDK pins a later one)
  `payment_method_types` is refused with `payment_method_types_no_longer_supported`;
  `allowed_payment_method_types` is the way to ask for `card_present`.
- unknown parameters are refused (`parameter_unknown`), so a typo in the
  provider fails here as it would in production.
- `cancel_action` leaves the reader with no action (`action: null`, as in
  Stripe's API reference) and the PaymentIntent `requires_payment_method`.

Guesses, where Stripe documents no exact answer: the error for `cancel_action`
on an idle reader (a 400 with no code), and a card presented for a
PaymentIntent cancelled meanwhile (the action fails with
`payment_intent_unexpected_state`; no charge is made).

Faults for tests: `fail_next` (answer with an error, e.g. 500, without doing
anything), `drop_next` (do the work, then close the connection unanswered: the
answer is lost), `offline` (close every connection unanswered),
`set_reader_fault` (the reader is offline or timing out) and `before_next`
(run something, such as a card tap, just before a given request: races).
Inspection: `payment_intents`, `charges`, `refunds`, `readers`,
`successful_charges()`, `count(method, path)` and `log`.

Test infrastructure only: nothing in `core` imports it.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]

API_KEY = "sk_test_lotkeeper_fake_4eC39HqLyjWDarjtT1zdp7dc"
READER_ID = "tmr_fake_kiosk_1"
LOCATION_ID = "tml_fake_garage"
# Stripe removed `payment_method_types` as a request parameter on this version.
PAYMENT_METHOD_TYPES_REMOVED = "2026-09-30"


@dataclass(frozen=True)
class CardOutcome:
    """What presenting a card number on a simulated reader does."""

    brand: str
    last4: str
    code: str | None = None  # set: the card is declined with this error code
    decline_code: str | None = None
    message: str | None = None

    @property
    def declined(self) -> bool:
        return self.code is not None


# Stripe's card-present test numbers (docs.stripe.com/terminal/references/testing).
TEST_CARDS: dict[str, CardOutcome] = {
    "4242424242424242": CardOutcome("visa", "4242"),
    "5555555555554444": CardOutcome("mastercard", "4444"),
    "378282246310005": CardOutcome("amex", "0005"),
    "4000000000000002": CardOutcome(
        "visa", "0002", "card_declined", "generic_decline", "Your card was declined."
    ),
    "4000000000009995": CardOutcome(
        "visa", "9995", "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "4000000000000069": CardOutcome(
        "visa", "0069", "expired_card", "expired_card", "Your card has expired."
    ),
    "4000000000000119": CardOutcome(
        "visa",
        "0119",
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}
DEFAULT_CARD = "4242424242424242"

# Currencies the fake accepts, with Stripe's minimum charge in minor units.
MINIMUM_CHARGE = {"usd": 50, "cad": 50, "eur": 50, "gbp": 30, "chf": 50, "aud": 50, "jpy": 50}

CANCELLABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)

READER_FAULT_MESSAGES = {
    "terminal_reader_busy": "Reader is currently busy processing another request.",
    "terminal_reader_offline": (
        "Reader is currently offline, please ensure the reader is powered on and "
        "connected to the internet before retrying your request."
    ),
    "terminal_reader_timeout": "There was a timeout when sending this command to the reader.",
    "terminal_reader_hardware_fault": "The reader has a hardware fault.",
}


class StripeErrorResponse(Exception):
    """An answer in Stripe's error shape: `{"error": {"type": ..., ...}}`."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {
            "error": {
                key: value
                for key, value in {
                    "type": type,
                    "message": message,
                    "code": code,
                    "param": param,
                    "decline_code": decline_code,
                }.items()
                if value is not None
            }
        }


def invalid(
    message: str, *, code: str | None = None, param: str | None = None
) -> StripeErrorResponse:
    return StripeErrorResponse(400, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, object_id: str, param: str = "id", status: int = 404) -> StripeErrorResponse:
    return StripeErrorResponse(
        status,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Json
    ids: Mapping[str, str]  # the path's {id}
    stripe_version: str


@dataclass
class LoggedRequest:
    method: str
    path: str
    params: Json
    idempotency_key: str | None
    status: int | None  # None: the connection was closed unanswered
    replayed: bool = False


@dataclass
class _Fault:
    remaining: int
    path: str | None
    answer: StripeErrorResponse | None  # None: do the work, then drop the connection


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: Json


Handler = Callable[["FakeStripe", Request], Json]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register an endpoint; `{id}` in the pattern is one path segment."""

    def register(handler: Handler) -> Handler:
        regex = re.compile("^" + pattern.replace("{id}", "(?P<id>[^/]+)") + "$")
        _ROUTES.append((method, regex, handler))
        return handler

    return register


def decode_form(text: str) -> Json:
    """Stripe's form encoding back into nested dicts and lists:
    `metadata[kiosk]=A` -> {"metadata": {"kiosk": "A"}}, `expand[0]=x` and
    `expand[]=x` -> {"expand": ["x"]}."""
    root: Json = {}
    for raw_key, values in parse_qs(text, keep_blank_values=True).items():
        head, bracket, rest = raw_key.partition("[")
        parts = [head, *re.findall(r"\[([^\[\]]*)\]", bracket + rest)]
        for value in values:
            node = root
            for part in parts[:-1]:
                child = node.setdefault(part or str(len(node)), {})
                if not isinstance(child, dict):
                    raise invalid(f"Invalid hash: {raw_key}", param=head)
                node = child
            node[parts[-1] or str(len(node))] = value
    decoded = _listify(root)
    assert isinstance(decoded, dict)
    return decoded


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(item) for key, item in value.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeStripe) -> None:
        super().__init__(("127.0.0.1", 0), _HttpHandler)
        self.fake = fake


class _HttpHandler(BaseHTTPRequestHandler):
    server: _Server
    # One request per connection: a dropped answer is then a clean disconnect.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.fake.dispatch(self.command, self.path, headers, body)
        if answer is None:
            self.close_connection = True
            return
        status, response_headers, payload = answer
        self.send_response(status)
        for name, value in response_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


class FakeStripe:
    """Stripe's API for one test account, on a loopback port."""

    def __init__(self, api_key: str = API_KEY, reader_ids: tuple[str, ...] = (READER_ID,)) -> None:
        self.api_key = api_key
        self.reader_id = reader_ids[0]
        self.payment_intents: dict[str, Json] = {}
        self.charges: dict[str, Json] = {}
        self.refunds: dict[str, Json] = {}
        self.readers: dict[str, Json] = {}
        self.cards: dict[str, CardOutcome] = dict(TEST_CARDS)
        self.requests: Counter[tuple[str, str]] = Counter()
        self.log: list[LoggedRequest] = []
        self.offline = False
        self.refund_status = "succeeded"
        self._reader_faults: dict[str, str] = {}
        self._faults: list[_Fault] = []
        self._hooks: dict[tuple[str, str], Callable[[], object]] = {}
        self._idempotent: dict[str, _Stored] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for reader_id in reader_ids:
            self.add_reader(reader_id)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeStripe:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-stripe",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- test controls -----------------------------------------------------

    def add_reader(self, reader_id: str) -> Json:
        reader: Json = {
            "id": reader_id,
            "object": "terminal.reader",
            "action": None,
            "device_sw_version": "2.42.0",
            "device_type": "simulated_wisepos_e",
            "ip_address": "0.0.0.0",
            "label": f"Kiosk reader {reader_id}",
            "last_seen_at": int(time.time() * 1000),
            "livemode": False,
            "location": LOCATION_ID,
            "metadata": {},
            "serial_number": f"fake-{reader_id}",
            "status": "online",
        }
        self.readers[reader_id] = reader
        return reader

    def set_reader_fault(self, reader_id: str, code: str | None) -> None:
        """Make the reader refuse commands with a Stripe reader error code
        (`terminal_reader_offline`, `terminal_reader_timeout`, ...) until
        cleared with None."""
        with self._lock:
            if code is None:
                self._reader_faults.pop(reader_id, None)
            else:
                self._reader_faults[reader_id] = code
            offline = code == "terminal_reader_offline"
            self.readers[reader_id]["status"] = "offline" if offline else "online"

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        path: str | None = None,
        type: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `n` requests (to `path`, if given) with an error,
        doing nothing else: a 500 as from an overloaded API by default."""
        answer = StripeErrorResponse(
            status,
            type or ("api_error" if status >= 500 else "invalid_request_error"),
            message or "An unknown error occurred",
            code=code,
        )
        with self._lock:
            self._faults.append(_Fault(n, path, answer))

    def drop_next(self, n: int = 1, *, path: str | None = None) -> None:
        """Carry out the next `n` requests (to `path`, if given) but close the
        connection without answering, as if the answer was lost on the way."""
        with self._lock:
            self._faults.append(_Fault(n, path, None))

    def before_next(self, method: str, path: str, action: Callable[[], object]) -> None:
        """Run `action` (say, `fake.present_card`) just before the next request
        to this method and path is handled: a race, made to happen on cue."""
        with self._lock:
            self._hooks[(method.upper(), path)] = action

    def present_card(self, number: str = DEFAULT_CARD, reader_id: str | None = None) -> Json:
        """What the test helper endpoint does, without HTTP."""
        with self._lock:
            reader = self._reader(reader_id or self.reader_id)
            return self._present(reader, "card_present", number)

    # -- inspection --------------------------------------------------------

    def count(self, method: str, path: str) -> int:
        """Requests that arrived for this method and exact path."""
        return self.requests[(method.upper(), path)]

    def successful_charges(self) -> list[Json]:
        return [c for c in self.charges.values() if c["status"] == "succeeded" and c["captured"]]

    def authorized_charges(self) -> list[Json]:
        """Charges that took money or hold it (captured or not)."""
        return [c for c in self.charges.values() if c["status"] == "succeeded"]

    # -- HTTP --------------------------------------------------------------

    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """One HTTP request in, one answer out (None: close unanswered)."""
        url = urlsplit(target)
        path = url.path
        with self._lock:
            self.requests[(method, path)] += 1
            key = headers.get("idempotency-key")
            entry = LoggedRequest(method, path, {}, key, None)
            self.log.append(entry)
            if self.offline:
                return None
            hook = self._hooks.pop((method, path), None)
            if hook is not None:
                hook()
            fault = self._take_fault(path)
            if fault is not None and fault.answer is not None:
                entry.status = fault.answer.status
                return self._encode(fault.answer.status, fault.answer.body, headers, False)
            status, payload, replayed = self._answer(method, path, url.query, headers, body, entry)
            entry.status = status
            entry.replayed = replayed
            if fault is not None:
                entry.status = None
                return None
            return self._encode(status, payload, headers, replayed)

    def _answer(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        entry: LoggedRequest,
    ) -> tuple[int, Json, bool]:
        try:
            self._authenticate(headers.get("authorization"))
            handler, ids = self._resolve(method, path)
            text = body.decode() if method == "POST" else query
            params = decode_form(text)
            entry.params = params
        except StripeErrorResponse as error:
            return error.status, error.body, False

        key = headers.get("idempotency-key") if method == "POST" else None
        fingerprint = json.dumps([method, path, params], sort_keys=True)
        if key is not None and key in self._idempotent:
            stored = self._idempotent[key]
            if stored.fingerprint != fingerprint:
                refusal = StripeErrorResponse(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                )
                return refusal.status, refusal.body, False
            return stored.status, copy.deepcopy(stored.body), True

        version = headers.get("stripe-version", "")
        try:
            status, payload = 200, handler(self, Request(method, path, params, ids, version))
        except StripeErrorResponse as error:
            status, payload = error.status, error.body
        # Stripe keeps the outcome of requests that ran; a request refused
        # before running (validation, conflicts) may be sent again.
        if key is not None and (status == 200 or status == 402):
            self._idempotent[key] = _Stored(fingerprint, status, copy.deepcopy(payload))
        return status, payload, False

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path is None or fault.path == path:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization or not authorization.startswith("Bearer "):
            raise StripeErrorResponse(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth.",
            )
        given = authorization.removeprefix("Bearer ")
        if given != self.api_key:
            raise StripeErrorResponse(
                401,
                "invalid_request_error",
                f"Invalid API Key provided: {given[:8]}{'*' * 12}{given[-4:]}",
            )

    def _resolve(self, method: str, path: str) -> tuple[Handler, Mapping[str, str]]:
        for route_method, regex, handler in _ROUTES:
            match = regex.match(path)
            if match and route_method == method:
                return handler, match.groupdict()
        raise StripeErrorResponse(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}).",
        )

    def _encode(
        self, status: int, payload: Json, headers: Mapping[str, str], replayed: bool
    ) -> tuple[int, dict[str, str], bytes]:
        out = {
            "Content-Type": "application/json",
            "Request-Id": f"req_fake{next(self._ids):010d}",
            "Stripe-Version": headers.get("stripe-version", ""),
        }
        if "idempotency-key" in headers:
            out["Idempotency-Key"] = headers["idempotency-key"]
        if replayed:
            out["Idempotent-Replayed"] = "true"
        return status, out, json.dumps(payload).encode()

    # -- helpers -----------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):010d}"

    def _intent(self, intent_id: str, param: str = "id", status: int = 404) -> Json:
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise missing("payment_intent", intent_id, param, status)
        return intent

    def _reader(self, reader_id: str) -> Json:
        reader = self.readers.get(reader_id)
        if reader is None:
            raise missing("terminal.reader", reader_id)
        return reader

    def _reader_fault(self, reader_id: str) -> None:
        code = self._reader_faults.get(reader_id)
        if code is not None:
            message = READER_FAULT_MESSAGES.get(code, "The reader could not take the command.")
            raise invalid(message, code=code)

    @staticmethod
    def _only(params: Json, allowed: set[str]) -> None:
        for name in params:
            if name not in allowed:
                raise invalid(
                    f"Received unknown parameter: {name}", code="parameter_unknown", param=name
                )

    @staticmethod
    def _integer(params: Json, name: str, *, required: bool) -> int | None:
        raw = params.get(name)
        if raw is None:
            if required:
                raise invalid(
                    f"Missing required param: {name}.", code="parameter_missing", param=name
                )
            return None
        if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
            raise invalid(f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name)
        value = int(raw)
        if value < 1:
            raise invalid(
                "This value must be greater than or equal to 1.",
                code="parameter_invalid_integer",
                param=name,
            )
        return value

    def _render_intent(self, intent: Json, params: Json) -> Json:
        expand = params.get("expand") or []
        if not isinstance(expand, list):
            raise invalid("Invalid array", param="expand")
        out = copy.deepcopy(intent)
        for index, path in enumerate(expand):
            if path != "latest_charge":
                raise invalid(
                    f"This property cannot be expanded ({path}).", param=f"expand[{index}]"
                )
            if out["latest_charge"] is not None:
                out["latest_charge"] = copy.deepcopy(self.charges[out["latest_charge"]])
        return out

    def _render_reader(self, reader: Json) -> Json:
        return copy.deepcopy(reader)

    # -- PaymentIntents ----------------------------------------------------

    @route("POST", "/v1/payment_intents")
    def _create_payment_intent(self, request: Request) -> Json:
        params = request.params
        self._only(
            params,
            {
                "amount",
                "currency",
                "allowed_payment_method_types",
                "payment_method_types",
                "capture_method",
                "description",
                "metadata",
                "expand",
                "receipt_email",
                "statement_descriptor_suffix",
            },
        )
        amount = self._integer(params, "amount", required=True)
        assert amount is not None
        currency = params.get("currency")
        if currency is None:
            raise invalid(
                "Missing required param: currency.", code="parameter_missing", param="currency"
            )
        if currency not in MINIMUM_CHARGE:
            raise invalid(f"Invalid currency: {currency}.", param="currency")
        if amount < MINIMUM_CHARGE[currency]:
            raise invalid(
                f"Amount must be at least {MINIMUM_CHARGE[currency]} {currency} minor units.",
                code="amount_too_small",
                param="amount",
            )
        if "payment_method_types" in params and (
            request.stripe_version >= PAYMENT_METHOD_TYPES_REMOVED or not request.stripe_version
        ):
            raise invalid(
                "payment_method_types is no longer supported on this API version; "
                "use allowed_payment_method_types.",
                code="payment_method_types_no_longer_supported",
                param="payment_method_types",
            )
        types = params.get("allowed_payment_method_types") or params.get("payment_method_types")
        if types is not None and not isinstance(types, list):
            raise invalid("Invalid array", param="allowed_payment_method_types")
        capture_method = params.get("capture_method", "automatic")
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise invalid(
                f"Invalid capture_method: must be one of automatic, automatic_async, "
                f"or manual ({capture_method})",
                param="capture_method",
            )
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise invalid("Invalid hash", param="metadata")
        intent_id = self._new_id("pi")
        intent: Json = {
            "id": intent_id,
            "object": "payment_intent",
            "allowed_payment_method_types": params.get("allowed_payment_method_types"),
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{intent_id}_secret_fake",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency,
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "payment_method": None,
            "payment_method_types": types or ["card"],
            "status": "requires_payment_method",
        }
        self.payment_intents[intent_id] = intent
        return self._render_intent(intent, params)

    @route("GET", "/v1/payment_intents/{id}")
    def _retrieve_payment_intent(self, request: Request) -> Json:
        self._only(request.params, {"expand", "client_secret"})
        return self._render_intent(self._intent(request.ids["id"]), request.params)

    @route("POST", "/v1/payment_intents/{id}/cancel")
    def _cancel_payment_intent(self, request: Request) -> Json:
        self._only(request.params, {"cancellation_reason", "expand"})
        intent = self._intent(request.ids["id"])
        if intent["status"] not in CANCELLABLE:
            raise invalid(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following "
                f"statuses may be canceled: {', '.join(CANCELLABLE)}.",
                code="payment_intent_unexpected_state",
            )
        if intent["status"] == "requires_capture":
            # The authorisation is released: nothing was or will be captured.
            charge = self.charges[intent["latest_charge"]]
            charge.update(amount_refunded=charge["amount"], refunded=True)
            intent["amount_capturable"] = 0
        intent.update(
            status="canceled",
            canceled_at=int(time.time()),
            cancellation_reason=request.params.get("cancellation_reason", "requested_by_customer"),
        )
        return self._render_intent(intent, request.params)

    @route("POST", "/v1/payment_intents/{id}/capture")
    def _capture_payment_intent(self, request: Request) -> Json:
        self._only(request.params, {"amount_to_capture", "expand", "metadata"})
        intent = self._intent(request.ids["id"])
        if intent["status"] != "requires_capture":
            raise invalid(
                "This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following "
                "statuses may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        amount = self._integer(request.params, "amount_to_capture", required=False)
        amount = intent["amount_capturable"] if amount is None else amount
        if amount > intent["amount_capturable"]:
            raise invalid(
                "The amount to capture is more than the amount capturable.",
                code="amount_too_large",
                param="amount_to_capture",
            )
        charge = self.charges[intent["latest_charge"]]
        charge.update(captured=True, amount_captured=amount)
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return self._render_intent(intent, request.params)

    # -- Terminal readers --------------------------------------------------

    @route("GET", "/v1/terminal/readers/{id}")
    def _retrieve_reader(self, request: Request) -> Json:
        self._only(request.params, {"expand"})
        return self._render_reader(self._reader(request.ids["id"]))

    @route("POST", "/v1/terminal/readers/{id}/process_payment_intent")
    def _process_payment_intent(self, request: Request) -> Json:
        params = request.params
        self._only(params, {"payment_intent", "process_config", "expand"})
        reader = self._reader(request.ids["id"])
        self._reader_fault(reader["id"])
        intent_id = params.get("payment_intent")
        if not intent_id:
            raise invalid(
                "Missing required param: payment_intent.",
                code="parameter_missing",
                param="payment_intent",
            )
        action = reader["action"]
        if action is not None and action["status"] == "in_progress":
            raise invalid(
                READER_FAULT_MESSAGES["terminal_reader_busy"], code="terminal_reader_busy"
            )
        intent = self._intent(intent_id, param="payment_intent", status=400)
        if intent["status"] != "requires_payment_method":
            raise invalid(
                "This PaymentIntent's status is "
                f"{intent['status']}, but it must be requires_payment_method to be processed.",
                code="payment_intent_unexpected_state",
                param="payment_intent",
            )
        if "card_present" not in intent["payment_method_types"]:
            raise invalid(
                "The PaymentIntent must allow card_present to be processed by a reader.",
                param="payment_intent",
            )
        reader["action"] = {
            "type": "process_payment_intent",
            "status": "in_progress",
            "failure_code": None,
            "failure_message": None,
            "api_error": None,
            "process_payment_intent": {
                "payment_intent": intent_id,
                "process_config": params.get("process_config"),
            },
        }
        return self._render_reader(reader)

    @route("POST", "/v1/terminal/readers/{id}/cancel_action")
    def _cancel_action(self, request: Request) -> Json:
        self._only(request.params, {"expand"})
        reader = self._reader(request.ids["id"])
        self._reader_fault(reader["id"])
        action = reader["action"]
        if action is None or action["status"] != "in_progress":
            raise invalid("This reader has no action in progress to cancel.")
        reader["action"] = None
        return self._render_reader(reader)

    @route("POST", "/v1/test_helpers/terminal/readers/{id}/present_payment_method")
    def _present_payment_method(self, request: Request) -> Json:
        params = request.params
        self._only(params, {"type", "card_present", "interac_present", "amount_tip", "expand"})
        reader = self._reader(request.ids["id"])
        kind = params.get("type", "card_present")
        if kind not in ("card_present", "interac_present"):
            raise invalid(f"Invalid type: {kind} cannot be presented here.", param="type")
        details = params.get(kind) or {}
        number = details.get("number", DEFAULT_CARD) if isinstance(details, dict) else None
        if not isinstance(number, str):
            raise invalid("Invalid hash", param=kind)
        return self._present(reader, kind, number)

    def _present(self, reader: Json, kind: str, number: str) -> Json:
        action = reader["action"]
        if action is None or action["status"] != "in_progress":
            raise invalid("This reader has no action in progress to present a card to.")
        card = self.cards.get(number)
        if card is None:
            raise invalid(
                f"{number} is not a test card number this fake knows.",
                param=f"{kind}[number]",
            )
        intent = self.payment_intents[action["process_payment_intent"]["payment_intent"]]
        if intent["status"] != "requires_payment_method":
            message = f"This PaymentIntent's status is {intent['status']}; it cannot be paid."
            action.update(
                status="failed",
                failure_code="payment_intent_unexpected_state",
                failure_message=message,
                api_error={
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "message": message,
                },
            )
            return self._render_reader(reader)

        payment_method = self._new_id("pm")
        charge = self._new_charge(intent, card, kind, payment_method)
        intent["latest_charge"] = charge["id"]
        if card.declined:
            error = {
                "type": "card_error",
                "code": card.code,
                "decline_code": card.decline_code,
                "message": card.message,
                "charge": charge["id"],
            }
            intent.update(
                status="requires_payment_method",
                last_payment_error={
                    **error,
                    "payment_method": {"id": payment_method, "type": kind},
                },
            )
            action.update(
                status="failed",
                failure_code=card.code,
                failure_message=card.message,
                api_error=error,
            )
        else:
            if intent["capture_method"] == "manual":
                intent.update(status="requires_capture", amount_capturable=intent["amount"])
            else:
                intent.update(status="succeeded", amount_received=intent["amount"])
            intent.update(payment_method=payment_method, last_payment_error=None)
            action["status"] = "succeeded"
        return self._render_reader(reader)

    def _new_charge(self, intent: Json, card: CardOutcome, kind: str, payment_method: str) -> Json:
        captured = not card.declined and intent["capture_method"] != "manual"
        charge: Json = {
            "id": self._new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if captured else 0,
            "amount_refunded": 0,
            "captured": captured,
            "created": int(time.time()),
            "currency": intent["currency"],
            "description": intent["description"],
            "failure_code": card.code,
            "failure_message": card.message,
            "livemode": False,
            "metadata": dict(intent["metadata"]),
            "outcome": {
                "network_status": "declined_by_network" if card.declined else "approved_by_network",
                "reason": card.decline_code,
                "type": "issuer_declined" if card.declined else "authorized",
            },
            "paid": not card.declined,
            "payment_intent": intent["id"],
            "payment_method": payment_method,
            "payment_method_details": {
                "type": kind,
                kind: {
                    "brand": card.brand,
                    "last4": card.last4,
                    "exp_month": 12,
                    "exp_year": 2030,
                    "funding": "credit",
                    "country": "US",
                    "network": card.brand,
                    "read_method": "contactless_emv",
                },
            },
            "refunded": False,
            "refunds": None,
            "status": "failed" if card.declined else "succeeded",
        }
        self.charges[charge["id"]] = charge
        return charge

    # -- Refunds -----------------------------------------------------------

    @route("POST", "/v1/refunds")
    def _create_refund(self, request: Request) -> Json:
        params = request.params
        self._only(params, {"payment_intent", "charge", "amount", "reason", "metadata", "expand"})
        if "payment_intent" in params:
            intent = self._intent(params["payment_intent"], "payment_intent", status=400)
            charge_id = intent["latest_charge"]
            charge = self.charges.get(charge_id) if charge_id else None
            if charge is None or charge["status"] != "succeeded" or not charge["captured"]:
                raise invalid(
                    f"This PaymentIntent ({intent['id']}) does not have a successful charge "
                    "to refund.",
                    param="payment_intent",
                )
        elif "charge" in params:
            charge = self.charges.get(params["charge"])
            if charge is None:
                raise missing("charge", params["charge"], "charge", status=400)
        else:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        left = charge["amount_captured"] - charge["amount_refunded"]
        if left <= 0:
            raise invalid(
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = self._integer(params, "amount", required=False)
        amount = left if amount is None else amount
        if amount > left:
            raise invalid(
                f"Refund amount ({amount} {charge['currency']}) is greater than unrefunded "
                f"amount on charge ({left} {charge['currency']})",
                code="amount_too_large",
                param="amount",
            )
        refund: Json = {
            "id": self._new_id("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": None,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "failure_reason": None,
            "metadata": params.get("metadata") or {},
            "payment_intent": charge["payment_intent"],
            "reason": params.get("reason"),
            "status": self.refund_status,
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        return copy.deepcopy(refund)

    @route("GET", "/v1/charges/{id}")
    def _retrieve_charge(self, request: Request) -> Json:
        self._only(request.params, {"expand"})
        found = self.charges.get(request.ids["id"])
        if found is None:
            raise missing("charge", request.ids["id"])
        return copy.deepcopy(found)

    @route("GET", "/v1/refunds/{id}")
    def _retrieve_refund(self, request: Request) -> Json:
        self._only(request.params, {"expand"})
        refund = self.refunds.get(request.ids["id"])
        if refund is None:
            raise missing("refund", request.ids["id"])
        return copy.deepcopy(refund)
