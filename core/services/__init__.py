"""The service layer: the only way frontends change or read the lot.

Each function takes a `Site` and plain values, runs one unit of work, and
returns a frozen dataclass or raises a `core.errors.LotkeeperError` whose
message is fit for a driver or an attendant.
"""

from core.domain import Payment
from core.errors import LotFull
from core.services.accounts import (
    add_vehicle,
    change_password,
    create_account,
    get_account,
    list_vehicles,
    remove_vehicle,
    sign_in,
)
from core.services.availability import LotSnapshot, availability, occupancy_history, snapshot
from core.services.devices import (
    Component,
    DeviceHealth,
    device_health,
    reader_health,
    record_device_fault,
    report_heartbeat,
    standing_alerts,
)
from core.services.entry import enter, exit
from core.services.events import EventBatch, EventCursor, events_since, recent_events
from core.services.keys import KeyInfo, list_keys, retire_key, rotate_key
from core.services.layout import load_layout, load_layout_file
from core.services.notifications import (
    Preferences,
    notification_preferences,
    set_notification_preferences,
)
from core.services.payments import (
    cancel_payment,
    get_payment,
    payment_history,
    payments_for,
    poll_payment,
    reconcile,
    refund_payment,
    start_payment,
    wait_for_payment,
)
from core.services.reservations import (
    AccountSpots,
    Reservation,
    ReservationState,
    account_reservations,
    account_spots,
    cancel_reservation,
    check_in,
    confirm_reservation,
    expire_holds,
    find_reservation,
    get_reservation,
    hold,
    pay_reservation,
    quote_reservation,
    release_no_shows,
    reservations_on_spot,
)
from core.services.stays import (
    StayStatus,
    exit_paid_stay,
    find_stays,
    lost_ticket_quote,
    note_overstays,
    pay_lost_ticket,
    pay_ticket,
    stay_status,
    ticket_status,
)

__all__ = [
    "AccountSpots",
    "Component",
    "DeviceHealth",
    "EventBatch",
    "EventCursor",
    "KeyInfo",
    "LotFull",
    "LotSnapshot",
    "Payment",
    "Preferences",
    "Reservation",
    "ReservationState",
    "StayStatus",
    "account_reservations",
    "account_spots",
    "add_vehicle",
    "availability",
    "cancel_payment",
    "cancel_reservation",
    "change_password",
    "check_in",
    "confirm_reservation",
    "create_account",
    "device_health",
    "enter",
    "events_since",
    "exit",
    "exit_paid_stay",
    "expire_holds",
    "find_reservation",
    "find_stays",
    "get_account",
    "get_payment",
    "get_reservation",
    "hold",
    "list_keys",
    "list_vehicles",
    "load_layout",
    "load_layout_file",
    "lost_ticket_quote",
    "note_overstays",
    "notification_preferences",
    "occupancy_history",
    "pay_lost_ticket",
    "pay_reservation",
    "pay_ticket",
    "payment_history",
    "payments_for",
    "poll_payment",
    "quote_reservation",
    "reader_health",
    "recent_events",
    "reconcile",
    "record_device_fault",
    "refund_payment",
    "release_no_shows",
    "remove_vehicle",
    "report_heartbeat",
    "reservations_on_spot",
    "retire_key",
    "rotate_key",
    "set_notification_preferences",
    "sign_in",
    "snapshot",
    "standing_alerts",
    "start_payment",
    "stay_status",
    "ticket_status",
    "wait_for_payment",
]
