"""Domain errors. Each message is written for the person who will read it:
a driver at a kiosk or an attendant in the booth."""

from __future__ import annotations


class LotkeeperError(Exception):
    """Base class: `str(error)` is a message fit to show on a screen."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(LotkeeperError):
    code = "config_error"


class DatabaseUnavailable(LotkeeperError):
    code = "database_unavailable"


class SchemaOutOfDate(LotkeeperError):
    code = "schema_out_of_date"


class InvalidInput(LotkeeperError):
    code = "invalid_input"


class LotFull(LotkeeperError):
    """No spot of a fitting size is free for the whole walk-in window."""

    code = "lot_full"

    def __init__(self, size: str) -> None:
        # Cars fit larger spots too, so "full" for a size means no fitting spot at all.
        super().__init__(f"Sorry, the garage is full for a {size} car right now.")
        self.size = size


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

    def __init__(self) -> None:
        super().__init__(
            "We have no record of this ticket at this garage. Please ask the attendant for help."
        )


class TicketAlreadyUsed(TicketError):
    reason = "already_used"

    def __init__(self, exited_at_text: str) -> None:
        super().__init__(
            f"This ticket was already used to exit at {exited_at_text}. "
            "Each ticket opens the exit gate once."
        )
