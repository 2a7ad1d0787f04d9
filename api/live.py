"""Live availability for WebSocket clients: one reader per server tails the
event log every `every` seconds (and, while clients are connected,
re-reads the lot from scratch every `RESYNC_SECONDS`, for changes that
write no event, such as a reservation's window starting); when anything
changed it reads the lot once and pushes the per-size counts and the
spots whose state changed to every client.
`GET /spots` answers from the same reading while it is under a second old
and no event came since (one small query instead of reading every spot),
so a crowd of phones asking costs about one read of the lot a second.

Each client has a short queue. A client too slow to take its messages is
not sent the backlog: its queue is emptied and it gets a fresh snapshot,
which holds everything the dropped updates did."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from api.schemas import counts
from core import services as lk
from core.domain import SpotState
from core.errors import LotkeeperError
from core.services.availability import LotSnapshot, summarize
from core.services.events import EventCursor
from core.site import Site

log = logging.getLogger("lotkeeper.api")

BACKLOG = 8
RESYNC_SECONDS = 1.0


def _spot(state: SpotState) -> dict[str, Any]:
    return {
        "label": state.label,
        "level": state.level,
        "size": state.size.label,
        "status": state.status.value,
    }


def _read_when(reading: tuple[LotSnapshot | None, float]) -> float:
    return reading[1]


class LiveClient:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=BACKLOG)
        self.fresh = True  # owes a snapshot first
        self.resyncs = 0  # times it fell behind and got a snapshot instead

    def push(self, message: dict[str, Any], snapshot: dict[str, Any]) -> None:
        if self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
            self.resyncs += 1
            message = snapshot
        self.queue.put_nowait(message)

    async def next(self) -> dict[str, Any]:
        return await self.queue.get()


class LiveFeed:
    def __init__(self, site: Site, every: float = 0.25) -> None:
        self.site = site
        self.every = every
        self.clients: set[LiveClient] = set()
        self.cursor: EventCursor | None = None
        self.states: dict[str, str] = {}
        self.last: LotSnapshot | None = None
        self.read_at = 0.0
        self.cached: LotSnapshot | None = None  # read by `current`, for GET /spots
        self.cached_at = 0.0

    def join(self) -> LiveClient:
        client = LiveClient()
        if self.last is not None:
            client.queue.put_nowait(self._message("snapshot", self.last, self.last.spots))
            client.fresh = False
        self.clients.add(client)
        return client

    def leave(self, client: LiveClient) -> None:
        self.clients.discard(client)

    def current(self) -> LotSnapshot:
        """The lot now (blocking: call it from a thread): the newest reading
        (the tail's, or the last one made here) while it is under
        `RESYNC_SECONDS` old and no event has come since, else a fresh one."""
        lot, at = max(((self.last, self.read_at), (self.cached, self.cached_at)), key=_read_when)
        if (
            lot is not None
            and time.monotonic() - at <= RESYNC_SECONDS
            and not lk.events_since(self.site, lot.cursor, limit=1).events
        ):
            return lot
        lot = lk.snapshot(self.site)
        self.cached, self.cached_at = lot, time.monotonic()
        return lot

    def _read(self) -> LotSnapshot | None:
        """In a thread: the lot when it changed (or is due a re-read)."""
        now = time.monotonic()
        # The timed re-read is for clients watching; with none, only events
        # are followed (GET /spots reads for itself when its copy is old).
        due = bool(self.clients) and now - self.read_at >= RESYNC_SECONDS
        if self.cursor is not None and not due:
            batch = lk.events_since(self.site, self.cursor)
            self.cursor = batch.cursor
            if not batch.events:
                return None
        lot = lk.snapshot(self.site)
        if self.cursor is None:
            self.cursor = lot.cursor
        self.read_at = now
        return lot

    def _message(self, kind: str, lot: LotSnapshot, spots: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "at": lot.at.isoformat(),
            "sizes": [counts(s).model_dump() for s in summarize(lot.spots, lot.at).sizes],
            "spots": [_spot(s) for s in spots],
        }

    def publish(self, lot: LotSnapshot) -> None:
        changed = [s for s in lot.spots if self.states.get(s.label) != s.status.value]
        self.states = {s.label: s.status.value for s in lot.spots}
        self.last = lot
        snapshot = self._message("snapshot", lot, lot.spots)
        update = self._message("update", lot, changed)
        for client in list(self.clients):
            if client.fresh:
                client.fresh = False
                client.push(snapshot, snapshot)
            elif changed:
                client.push(update, snapshot)

    async def run(self) -> None:
        while True:
            try:
                lot = await asyncio.to_thread(self._read)
            except LotkeeperError as error:
                log.warning("live availability: %s", error)
                lot = None
            if lot is not None:
                self.publish(lot)
            await asyncio.sleep(self.every)
