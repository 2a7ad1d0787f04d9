"""The service layer: the only way frontends change or read the lot.

Each function takes a `Site` and plain values, runs one unit of work, and
returns a frozen dataclass or raises a `core.errors.LotkeeperError` whose
message is fit for a driver or an attendant.
"""

from core.services.availability import LotSnapshot, availability, snapshot
from core.services.entry import enter, exit
from core.services.events import EventBatch, EventCursor, events_since, recent_events
from core.services.keys import KeyInfo, list_keys, retire_key, rotate_key
from core.services.layout import load_layout, load_layout_file

__all__ = [
    "EventBatch",
    "EventCursor",
    "KeyInfo",
    "LotSnapshot",
    "availability",
    "enter",
    "events_since",
    "exit",
    "list_keys",
    "load_layout",
    "load_layout_file",
    "recent_events",
    "retire_key",
    "rotate_key",
    "snapshot",
]
