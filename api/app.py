"""The remote API for drivers: accounts, live availability, advance
reservations (quote, 5-minute hold, pay, cancel), history, and live
availability over a WebSocket. It serves the same engine as the kiosks,
through `core` service functions only.

Every error is JSON `{"code", "message", "field"}` with a stable code;
bad input is 422 naming the field (an id out of range too: never a 500).
Writes take an `Idempotency-Key` header: a replay gets the first answer.
Sign-in is rate limited per client address, on top of the engine's
per-email-and-client slow-down; `X-Forwarded-For` names the client only
when the request comes from a configured trusted proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, Path, Query, Request, WebSocket
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.live import LiveFeed
from api.schemas import (
    AccountSpotsOut,
    Cancelled,
    CarSize,
    Credentials,
    NewUser,
    Paid,
    PaymentOut,
    PaymentsPage,
    PayRequest,
    Problem,
    ReservationOut,
    ReserveRequest,
    SessionToken,
    SpotNeed,
    Spots,
    StayOut,
    TicketIn,
    User,
)
from core import services as lk
from core.config import IpNetwork
from core.domain import Size, SpotStatus
from core.errors import LotkeeperError, ReservationError
from core.payments.provider import PaymentStatus
from core.services.accounts import add_ticket_to_account
from core.services.api_access import (
    NotSignedIn,
    account_for_token,
    begin_idempotent,
    finish_idempotent,
    issue_token,
    release_idempotent,
    revoke_token,
)
from core.services.availability import summarize
from core.site import Site

log = logging.getLogger("lotkeeper.api")
T = TypeVar("T")
Write = Callable[[], tuple[int, BaseModel | None]]

STATUS = {
    "invalid_input": 422,
    "invalid_code": 422,
    "not_found": 404,
    "forbidden": 403,
    "lot_full": 409,
    "email_taken": 409,
    "plate_taken": 409,
    "no_spot": 409,
    "hold_expired": 409,
    "not_held": 409,
    "not_paid": 409,
    "not_cancellable": 409,
    "ticket_taken": 409,
    "nothing_to_pay": 409,
    "refund_refused": 409,
    "idempotency_conflict": 409,
    "payment_declined": 402,
    "not_signed_in": 401,
    "sign_in_failed": 401,
    "sign_in_throttled": 429,
    "too_many_requests": 429,
    "database_unavailable": 503,
    "payment_unavailable": 503,
}

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description}
    for status, description in (
        (401, "Not signed in, or the session ended"),
        (403, "Another account's data"),
        (404, "No such thing"),
        (409, "Refused as things stand (lot full, hold expired, ...)"),
        (
            422,
            "Bad input: `field` names it (a ticket code that does not check out: `invalid_code`)",
        ),
        (429, "Too many attempts: wait `Retry-After` seconds"),
        (503, "The database or the payment provider is unreachable; retry"),
    )
}


LOCATIONS = ("body", "query", "path", "header")
MAX_ID = 2**63 - 1
"""Ids are signed 64-bit in every database: a larger one names nothing, and
SQLite cannot even be asked about it."""
AccountId = Annotated[int, Path(ge=1, le=MAX_ID, description="Your account's id.")]
ReservationId = Annotated[int, Path(ge=1, le=MAX_ID, description="One of your reservations.")]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.retry_after = retry_after  # seconds until it may try again: `Retry-After`

    def answer(self) -> JSONResponse:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return problem(self.status, self.code, self.message, self.field, **headers)


def problem(
    status: int, code: str, message: str, field: str | None = None, **headers: str
) -> JSONResponse:
    body = Problem(code=code, message=message, field=field).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


def engine_problem(error: LotkeeperError) -> JSONResponse:
    """An engine refusal as an answer: its stable code and its message."""
    code = error_code(error)
    headers = {}
    retry_after = getattr(error, "retry_after_seconds", None)  # the throttles'
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, NotSignedIn):
        headers["WWW-Authenticate"] = "Bearer"
    field = getattr(error, "field", None)  # InvalidInput's: the input at fault
    named = field if isinstance(field, str) else None
    return problem(STATUS.get(code, 409), code, str(error), named, **headers)


def error_code(error: LotkeeperError) -> str:
    if isinstance(error, ReservationError):
        return error.code  # no_spot, hold_expired, not_cancellable, ...
    if error.code == "invalid_ticket":
        return "invalid_code"
    return error.code


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a peer or an X-Forwarded-For entry (which may carry a
    port: `1.2.3.4:5678`, `[2001:db8::1]:5678`), or None when it is none."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _client_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # One IPv6 host usually holds a whole /64: counting its addresses apart
    # would give it billions of fresh starts.
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(
    peer: str | None, forwarded_for: list[str], trusted: tuple[IpNetwork, ...]
) -> str:
    """Who is asking, as the sign-in limits count it. `peer` is the address
    that connected. Only when it is a trusted proxy is `X-Forwarded-For`
    read, from the right (each proxy appends the address it got the request
    from): the client is the right-most entry that is not itself a trusted
    proxy. Entries left of it are whatever the client sent, so never used;
    an entry that is no address ends the walk at the proxy that passed it
    on. An IPv6 client counts by its /64."""

    def is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in trusted)

    nearest = _address(peer or "")
    if nearest is None:
        return (peer or "unknown")[:64]
    if not is_trusted(nearest):
        return _client_key(nearest)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        nearest = address
        if not is_trusted(address):
            break
    return _client_key(nearest)


class SignInLimiter:
    """At most `attempts` sign-ins per client address in `window` seconds."""

    def __init__(self, attempts: int = 10, window: float = 60.0) -> None:
        self.attempts, self.window = attempts, window
        self.seen: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def check(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self.lock:
            recent = self.seen[client]
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= self.attempts:
                # The oldest attempt leaves the window then, and one more is let in.
                wait = max(1, math.ceil(recent[0] + self.window - now))
                raise ApiError(
                    429, "too_many_requests", f"Too many sign-ins; wait {wait} s.", retry_after=wait
                )
            recent.append(now)


bearer = HTTPBearer(auto_error=False)
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def current_account(request: Request, credentials: BearerToken) -> int:
    """The signed-in account, from the bearer token."""
    if credentials is None:
        raise NotSignedIn("Sign in first (POST /session), then send its token as a Bearer.")
    return account_for_token(request.app.state.site, credentials.credentials)


Me = Annotated[int, Depends(current_account)]
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Send the same key to retry safely: a replay gets the first answer.",
    ),
]


def create_app(
    site: Site,
    *,
    tail_seconds: float = 0.25,
    sign_in_limiter: SignInLimiter | None = None,
) -> FastAPI:
    """The API on `site`. `tail_seconds`: how often the live feed reads the
    event log (changes reach WebSocket clients within about that). Client
    addresses come from `api.trusted_proxies` (see `client_address`)."""
    limiter = sign_in_limiter or SignInLimiter()
    live = LiveFeed(site, tail_seconds)
    proxies = site.settings.api.proxy_networks

    def client_of(request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.getlist("x-forwarded-for"), proxies)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(live.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="Lotkeeper",
        version="1.0",
        summary="Parking for drivers: availability, reservations, payments.",
        lifespan=lifespan,
        responses={422: ERRORS[422], 503: ERRORS[503]},
    )
    app.state.live = live
    app.state.site = site

    # -- errors --------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.answer()

    @app.exception_handler(LotkeeperError)
    async def engine_error(request: Request, error: LotkeeperError) -> JSONResponse:
        return engine_problem(error)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = [
            str(part)
            for part in first.get("loc", ())
            if part not in ("body", "query", "path", "header")
        ]
        field = ".".join(where) or None
        message = str(first.get("msg", "Invalid input.")).removeprefix("Value error, ")
        return problem(422, "invalid_input", f"{field}: {message}" if field else message, field)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "Something went wrong on our side; it is logged.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # a body that is not JSON at all
            return problem(
                422, "invalid_input", f"The request body is not valid JSON: {error.detail}"
            )
        codes = {404: "not_found", 405: "method_not_allowed"}
        return problem(error.status_code, codes.get(error.status_code, "error"), str(error.detail))

    # -- who is asking (the `Me` dependency, below) ---------------------------------

    def own(me: int, wanted: int) -> None:
        if me != wanted:
            raise ApiError(403, "forbidden", "You can only see your own account's data.")

    def own_reservation(me: int, reservation_id: int) -> Any:
        return lk.get_reservation(site, reservation_id, account_id=me)  # NotFound for others'

    async def idempotent(
        request: Request,
        scope: str,
        key: str | None,
        run: Callable[[], tuple[int, BaseModel | None]],
    ) -> Response:
        """Run a write once per Idempotency-Key (replays get the first
        answer); without a key, just run it."""
        if key is None:
            return await asyncio.to_thread(_answer, run)
        body = canonical_body(await request.body())
        fingerprint = hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).hexdigest()
        # Begin, run and finish in one thread: a client that hangs up (the
        # await is cancelled) cannot stop the key from being finished.
        return await asyncio.to_thread(_run_once, site, scope, key, fingerprint, run)

    # -- accounts ------------------------------------------------------------------

    @app.post("/user", status_code=201, response_model=User, responses={409: ERRORS[409]})
    async def create_user(new: NewUser, request: Request, key: IdemKey = None) -> Response:
        """Create a driver's account."""
        return await idempotent(
            request,
            "anonymous",
            key,
            lambda: (201, User.of(lk.create_account(site, new.name, new.email, new.password))),
        )

    @app.post(
        "/session",
        status_code=201,
        response_model=SessionToken,
        responses={401: ERRORS[401], 429: ERRORS[429]},
    )
    def sign_in(credentials: Credentials, request: Request) -> SessionToken:
        """Sign in: a bearer token for the other calls (expires in 12 hours;
        DELETE /session ends it sooner)."""
        client = client_of(request)
        limiter.check(client)
        account = lk.sign_in(site, credentials.email, credentials.password, client=client)
        token = issue_token(site, account.id)
        return SessionToken(token=token.token, account_id=account.id, expires_at=token.expires_at)

    @app.delete("/session", status_code=204, responses={401: ERRORS[401]})
    def sign_out(me: Me, credentials: BearerToken) -> Response:
        """Sign out: the token stops working at once."""
        if credentials is not None:
            revoke_token(site, credentials.credentials)
        return Response(status_code=204)

    # -- availability --------------------------------------------------------------

    @app.get("/spots", response_model=Spots)
    def spots(
        car_size: Annotated[
            CarSize | None, Query(description="Only the free spots this size of car fits.")
        ] = None,
        need: Annotated[
            SpotNeed | None, Query(description="Only the free spots with this feature.")
        ] = None,
    ) -> Spots:
        """Live availability: counts per size, and the free spots."""
        fits = Size.parse(car_size) if car_size else Size.SMALL
        lot = live.current()
        free = [
            s
            for s in lot.spots
            if s.status is SpotStatus.FREE
            and s.size >= fits
            and (need is None or (s.accessible if need == "accessible" else s.ev))
        ]
        return Spots.of(summarize(lot.spots, lot.at), free)

    # -- reservations --------------------------------------------------------------

    @app.post(
        "/reserve_spot",
        status_code=201,
        response_model=ReservationOut,
        responses={401: ERRORS[401], 409: ERRORS[409]},
    )
    async def reserve_spot(
        wanted: ReserveRequest, request: Request, me: Me, key: IdemKey = None
    ) -> Response:
        """Quote and hold a spot for the window: the hold lasts 5 minutes
        (`hold_expires_at`); pay within it (POST /reservations/{id}/pay)."""
        return await idempotent(
            request,
            f"account {me}",
            key,
            lambda: (
                201,
                ReservationOut.of(
                    lk.hold(
                        site,
                        me,
                        wanted.car_size,
                        wanted.start,
                        wanted.end,
                        wanted.plate,
                        need=wanted.need,
                    )
                ),
            ),
        )

    @app.get(
        "/reservations/{reservation_id}",
        response_model=ReservationOut,
        responses={401: ERRORS[401], 404: ERRORS[404]},
    )
    def get_reservation(reservation_id: ReservationId, me: Me) -> ReservationOut:
        return ReservationOut.of(own_reservation(me, reservation_id))

    @app.post(
        "/reservations/{reservation_id}/pay",
        response_model=Paid,
        responses={
            401: ERRORS[401],
            202: {
                "model": Paid,
                "description": "The PaymentIntent is still processing: POST .../confirm later",
            },
            402: {"model": Problem, "description": "The card was declined"},
            404: ERRORS[404],
            409: ERRORS[409],
        },
    )
    async def pay(
        reservation_id: ReservationId,
        paying: PayRequest,
        request: Request,
        me: Me,
        key: IdemKey = None,
    ) -> Response:
        """Pay a held reservation: with the simulated provider (a test card
        token), or with a Stripe PaymentIntent the client confirmed. Paid,
        the reservation is confirmed and its code works at the entry."""

        def run() -> tuple[int, BaseModel]:
            own_reservation(me, reservation_id)
            if paying.payment_intent_id is not None:
                payment = lk.pay_reservation_with_intent(
                    site, reservation_id, paying.payment_intent_id
                )
            elif not site.payments.simulated:
                # A real provider here drives the garage's own card readers:
                # a phone pays with a PaymentIntent instead.
                raise ApiError(
                    422,
                    "invalid_input",
                    "Pay with a Stripe PaymentIntent (payment_intent_id) confirmed for the "
                    "reservation's price.",
                    "payment_intent_id",
                )
            else:
                started = lk.pay_reservation(site, reservation_id, card=paying.card, kiosk="api")
                payment = lk.wait_for_payment(site, started.id)
            status = 200
            if payment.status is PaymentStatus.PENDING:
                status = 202  # still processing at Stripe: confirm later
            elif not payment.succeeded:
                raise ApiError(
                    402, "payment_declined", payment.message or "The payment did not go through."
                )
            return status, Paid(
                reservation=ReservationOut.of(lk.get_reservation(site, reservation_id)),
                payment=PaymentOut.of(payment),
            )

        return await idempotent(request, f"account {me}", key, run)

    @app.post(
        "/reservations/{reservation_id}/confirm",
        response_model=ReservationOut,
        responses={401: ERRORS[401], 404: ERRORS[404], 409: ERRORS[409]},
    )
    def confirm(reservation_id: ReservationId, me: Me) -> ReservationOut:
        """Confirm a reservation whose payment settled after the pay call
        answered (409 `not_paid` while it has not)."""
        own_reservation(me, reservation_id)
        return ReservationOut.of(lk.confirm_reservation(site, reservation_id))

    @app.delete(
        "/reservations/{reservation_id}",
        response_model=Cancelled,
        responses={401: ERRORS[401], 404: ERRORS[404], 409: ERRORS[409]},
    )
    async def cancel(
        reservation_id: ReservationId, request: Request, me: Me, key: IdemKey = None
    ) -> Response:
        """Cancel: the spot is free again, and the tariff's cancellation rule
        refunds (all of it a day ahead)."""

        def run() -> tuple[int, BaseModel]:
            done = lk.cancel_reservation(site, reservation_id, me, kiosk="api")
            return 200, Cancelled(
                reservation=ReservationOut.of(done.reservation),
                refund_amount=done.refund_amount,
                refund=PaymentOut.of(done.refund) if done.refund else None,
            )

        return await idempotent(request, f"account {me}", key, run)

    # -- the account's data ----------------------------------------------------------

    @app.get(
        "/{account_id}/get_spots",
        response_model=AccountSpotsOut,
        responses={401: ERRORS[401], 403: ERRORS[403]},
    )
    def get_spots(account_id: AccountId, me: Me) -> AccountSpotsOut:
        """The account's reservations to come or in use, and its cars inside:
        those of its reservations and the walk-in tickets added to it (POST
        /{account_id}/tickets); a registered plate alone shows nothing."""
        own(me, account_id)
        held = lk.account_spots(site, account_id)
        return AccountSpotsOut(
            reservations=[ReservationOut.of(r) for r in held.reservations],
            stays=[StayOut.of(s) for s in held.stays],
        )

    @app.post(
        "/{account_id}/tickets",
        response_model=StayOut,
        responses={
            401: ERRORS[401],
            403: ERRORS[403],
            409: ERRORS[409],
            422: ERRORS[422],
            429: ERRORS[429],
        },
    )
    async def add_ticket(
        account_id: AccountId, ticket: TicketIn, request: Request, me: Me, key: IdemKey = None
    ) -> Response:
        """Add a walk-in ticket to the account by its code (the QR's, or the
        short code printed under it), checked as the pay station checks it.
        Its stay is then in GET /{account_id}/get_spots. A code that does not
        check out is 422 `invalid_code`; a ticket another account holds is
        409 `ticket_taken`; adding it again changes nothing."""

        def run() -> tuple[int, BaseModel]:
            own(me, account_id)
            return 200, StayOut.of(add_ticket_to_account(site, me, ticket.code, source="api"))

        return await idempotent(request, f"account {me}", key, run)

    @app.get(
        "/{account_id}/payments",
        response_model=PaymentsPage,
        responses={401: ERRORS[401], 403: ERRORS[403]},
    )
    def payments(
        account_id: AccountId,
        me: Me,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
        per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> PaymentsPage:
        """The account's charges and refunds, newest first."""
        own(me, account_id)
        found = lk.payment_history(site, account_id, page, per_page)
        return PaymentsPage(
            items=[PaymentOut.of(p) for p in found.items],
            page=found.page,
            per_page=found.per_page,
            total=found.total,
            pages=found.pages,
        )

    @app.get("/ping", include_in_schema=False)
    def ping() -> dict[str, str]:
        """A static answer: the ceiling the load benchmark compares with."""
        return {"status": "ok"}

    # -- live ----------------------------------------------------------------------

    @app.websocket("/live")
    async def live_updates(socket: WebSocket) -> None:
        """Availability per size and spot changes, pushed within a second of
        any change. The first message is a full snapshot; a client that
        falls behind gets a fresh snapshot instead of the backlog."""
        await socket.accept()
        client = live.join()

        async def push() -> None:
            while True:
                message = await client.next()
                await socket.send_text(json.dumps(jsonable_encoder(message)))

        async def until_closed() -> None:
            # Clients send nothing; reading is how a close is noticed.
            while (await socket.receive())["type"] != "websocket.disconnect":
                pass

        tasks = {asyncio.create_task(push()), asyncio.create_task(until_closed())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            live.leave(client)

    return app


def canonical_body(body: bytes) -> bytes:
    """The request as parsed, not as typed: the same JSON with other
    whitespace or key order is the same request under an Idempotency-Key.
    A body that is not JSON (or empty) is compared as sent."""
    if not body.strip():
        return b""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _run_once(site: Site, scope: str, key: str, fingerprint: str, run: Write) -> Response:
    """A write under an Idempotency-Key: the first answer again for a replay;
    else run it and keep its answer. Whatever happens, the key is not left
    "still being answered": an error that escapes frees it for a retry."""
    replay = begin_idempotent(site, scope, key, fingerprint)
    if replay is not None:
        return Response(
            replay.body or None,
            status_code=replay.status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        response = _answer(run)
    except BaseException:
        try:
            release_idempotent(site, scope, key)
        except Exception:  # the database is gone too: the key frees itself in minutes
            log.exception("could not free Idempotency-Key %r of %s", key, scope)
        raise
    finish_idempotent(site, scope, key, response.status_code, bytes(response.body).decode())
    return response


def _answer(run: Write) -> Response:
    """Run a write and turn its result, or its refusal, into a response."""
    try:
        status, model = run()
    except ApiError as error:
        return error.answer()
    except LotkeeperError as error:
        return engine_problem(error)
    if model is None:
        return Response(status_code=status)
    return JSONResponse(jsonable_encoder(model), status_code=status)


def serve(site: Site, host: str, port: int) -> None:
    """Serve the API on uvicorn (what `lotkeeper api` should run). uvicorn's
    own X-Forwarded-For handling is off: it trusts loopback by default, so a
    client on the same host could pick any address it likes; the API reads
    the header itself, from `api.trusted_proxies` only."""
    import uvicorn

    uvicorn.run(create_app(site), host=host, port=port, log_level="info", proxy_headers=False)
