"""Domain errors. Each message is written for the person who will read it:
a driver at a kiosk or an attendant in the booth."""

from __future__ import annotations


class LotkeeperError(Exception):
    """Base class: `str(error)` is a message fit to show on a screen.

    A message with values in it is given as a template and the values
    (`InvalidInput("At most {n} hours.", n=24)`), so that a screen in
    another language can translate `template` and fill in `values`.
    `arguments` keeps the values as given: a time from `Site.describe_time`
    remembers its moment there, for a screen to word in its own language."""

    code = "error"

    def __init__(self, message: str, **values: object) -> None:
        text = message.format(**values) if values else message
        super().__init__(text)
        self.message = text
        self.template = message
        self.values = {name: str(value) for name, value in values.items()}
        self.arguments: dict[str, object] = dict(values)


class ConfigError(LotkeeperError):
    code = "config_error"


class DatabaseUnavailable(LotkeeperError):
    code = "database_unavailable"


class SchemaOutOfDate(LotkeeperError):
    code = "schema_out_of_date"


class InvalidInput(LotkeeperError):
    """Input that cannot be used; `field` names it when one input is at
    fault (the API answers it as the 422's `field`)."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, **values: object) -> None:
        super().__init__(message, **values)
        self.field = field


class LotFull(LotkeeperError):
    """No spot of a fitting size (with the feature the driver asked for,
    if any) is free for the whole walk-in window."""

    code = "lot_full"

    def __init__(self, size: str, need: str | None = None) -> None:
        # Cars fit larger spots too, so "full" for a size means no fitting spot at all.
        if need == "accessible":
            super().__init__(
                "Sorry, no accessible spot is free for a {size} car right now.", size=size
            )
        elif need == "ev":
            super().__init__(
                "Sorry, no EV charging spot is free for a {size} car right now.", size=size
            )
        else:
            super().__init__("Sorry, the garage is full for a {size} car right now.", size=size)
        self.size = size
        self.need = str(need) if need is not None else None


class LayoutError(LotkeeperError):
    """A lot layout file is malformed, or applying it would strand a car."""

    code = "layout_error"


class TicketError(LotkeeperError):
    """A scanned or typed ticket code cannot be used. Subclasses say why."""

    code = "invalid_ticket"
    reason = "invalid"


class MalformedTicket(TicketError):
    reason = "malformed"

    def __init__(self) -> None:
        super().__init__(
            "That code could not be read as a Lotkeeper ticket. "
            "Please scan it again or type the code printed under the QR."
        )


class TicketSignatureInvalid(TicketError):
    """The tag does not match: the code was altered, mistyped or forged."""

    reason = "bad_signature"

    def __init__(self) -> None:
        super().__init__(
            "This ticket is not valid: its code does not check out. "
            "Please ask the attendant for help."
        )


class TicketKeyUnknown(TicketError):
    """Signed with a key this site does not have (never had, or retired)."""

    reason = "unknown_key"

    def __init__(self, key_id: str) -> None:
        super().__init__(
            "This ticket was not issued by this garage, or is too old to use here. "
            "Please ask the attendant for help."
        )
        self.key_id = key_id


class TicketUnknown(TicketError):
    """The code is well signed, but no such ticket exists at this site."""

    reason = "unknown_ticket"

    def __init__(self, what: str = "ticket") -> None:
        # Whole sentences, to translate as such.
        if what == "ticket":
            super().__init__(
                "We have no record of this ticket at this garage. "
                "Please ask the attendant for help."
            )
        elif what == "reservation":
            super().__init__(
                "We have no record of this reservation at this garage. "
                "Please ask the attendant for help."
            )
        else:
            super().__init__(
                "We have no record of this {what} at this garage. "
                "Please ask the attendant for help.",
                what=what,
            )


class TicketAlreadyUsed(TicketError):
    reason = "already_used"

    def __init__(self, exited_at_text: str) -> None:
        super().__init__(
            "This ticket was already used to exit at {time}. Each ticket opens the exit gate once.",
            time=exited_at_text,
        )


class NotFound(LotkeeperError):
    """An account, reservation or payment that does not exist (or is not
    this account's to see)."""

    code = "not_found"


class EmailTaken(LotkeeperError):
    code = "email_taken"

    def __init__(self) -> None:
        super().__init__(
            "An account with this email already exists. Sign in, or use another email."
        )


class SignInFailed(LotkeeperError):
    """Wrong password and unknown email get this same answer."""

    code = "sign_in_failed"

    def __init__(
        self, message: str = "That email and password do not match an account. Please try again."
    ) -> None:
        super().__init__(message)


class SignInThrottled(LotkeeperError):
    code = "sign_in_throttled"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            "Too many attempts to sign in with this email. "
            "Please wait {seconds} seconds and try again.",
            seconds=retry_after_seconds,
        )
        self.retry_after_seconds = retry_after_seconds


class PlateTaken(LotkeeperError):
    code = "plate_taken"

    def __init__(self, plate: str) -> None:
        super().__init__(
            "The plate {plate} is registered to another account. "
            "Please ask the attendant if it is yours.",
            plate=plate,
        )
        self.plate = plate


class PaymentRequired(LotkeeperError):
    """The exit was refused: the stay has something left to pay."""

    code = "payment_required"

    def __init__(self, ticket_id: int, due_text: str) -> None:
        super().__init__("Please pay {due} for this ticket before leaving.", due=due_text)
        self.ticket_id = ticket_id
        self.due_text = due_text


class NothingToPay(LotkeeperError):
    code = "nothing_to_pay"


class PaymentUnavailable(LotkeeperError):
    """The payment provider or reader cannot be reached. Nothing was charged
    that the ledger does not know of: the attempt stays pending and the
    reconciler settles it."""

    code = "payment_unavailable"


class PaymentInProgress(LotkeeperError):
    """Another charge for the same ticket or reservation is being taken right
    now (another pay station, the booth, a phone): one at a time, so that
    nothing is ever paid twice."""

    code = "payment_in_progress"

    def __init__(self, what: str = "ticket") -> None:
        super().__init__(
            "This reservation is being paid somewhere else right now. Please finish there, "
            "or wait a minute and try again."
            if what == "reservation"
            else "This ticket is being paid somewhere else right now. Please finish there, "
            "or wait a minute and try again."
        )


class RefundRefused(LotkeeperError):
    code = "refund_refused"


class WrongKindOfCode(TicketError):
    """A reservation code at the exit, or a ticket at reservation check-in."""

    reason = "wrong_kind"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ReservationError(LotkeeperError):
    """A reservation cannot be made, paid, changed or used. `code` says why."""

    code = "reservation_error"

    def __init__(self, code: str, message: str, **values: object) -> None:
        super().__init__(message, **values)
        self.code = code
