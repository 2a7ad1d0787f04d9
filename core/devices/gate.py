"""The barrier gate. The default adapter only logs: a site wires its own
controller (relay board, PLC) behind the same one-method protocol."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("lotkeeper.gate")


class Gate(Protocol):
    def open(self, lane: str, reason: str) -> None:
        """Raise the barrier once for one car."""
        ...


class LoggedGate:
    """Records each opening (the default until a controller is configured)."""

    def __init__(self) -> None:
        self.openings: list[tuple[str, str]] = []

    def open(self, lane: str, reason: str) -> None:
        self.openings.append((lane, reason))
        log.info("gate %s opened: %s", lane, reason)
