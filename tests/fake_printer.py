"""A loopback ESC/POS network printer, for the real adapters to print on.

`FakePrinter` listens on 127.0.0.1 (a free port) in a daemon thread, like the
raw port 9100 of an Epson receipt printer:

    with FakePrinter() as fake:
        printer = open_printer(fake.url, tmp_path)

It records every byte it receives, over every connection, and reads them as a
printer would: one command at a time, so bytes inside an image or a QR's data
are never taken for commands. It answers the real-time status queries
(`DLE EOT n`) with the byte an Epson printer sends (ESC/POS spec, "DLE EOT"):

    DLE EOT 1, printer status: bits 1 and 4 always set; bit 3 set = offline.
        Epson printers go offline when the paper runs out.
    DLE EOT 4, roll paper sensors: bits 1 and 4 always set; bits 2-3 set =
        paper near its end; bits 5-6 set = paper out (the near-end sensor then
        sees no paper either).

python-escpos decodes 0x12 as online / paper adequate, 0x1E (near-end) as
"paper ending" and 0x7E as "no paper".

Modes, settable at any time (`fake.mode = "paper_out"`):
- `paper_ok`, `paper_low`, `paper_out`: answers as above;
- `silent`: takes bytes, answers nothing (a printer that has hung);
- `offline`: switched off: open connections drop and new ones are refused.

Inspection: `received`; `qr_payloads()`, the text of each QR stored with
`GS ( k` (cn 49, fn 80); `text()`, the printable text, decoded in the code
page the stream selected; `cuts`; `connections`; `clear()`. An adapter returns
once its bytes are sent, so wait with `wait_for_cuts()` before looking.
`drop_connections()` closes open connections as printers do with idle ones;
`feed()` reads bytes that went elsewhere (a `file:` printer's file).

Test infrastructure only: nothing in `core` imports it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Literal, get_args

Mode = Literal["paper_ok", "paper_low", "paper_out", "silent", "offline"]

ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
EOT = 0x04

# The answer to DLE EOT n, per mode and n: 1 printer, 2 offline cause, 3 error
# cause, 4 roll paper sensor.
STATUS: dict[str, dict[int, int]] = {
    "paper_ok": {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12},
    "paper_low": {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x1E},
    # Offline (bit 3), stopped by paper end (DLE EOT 2 bit 5), both sensors empty.
    "paper_out": {1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E},
}

# ESC t n: the code pages of an Epson printer that Python has codecs for.
CODE_PAGES = {
    0: "cp437",
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
}


class _Stream:
    """One connection's bytes, parsed command by command as they arrive."""

    def __init__(self, printer: FakePrinter, conn: socket.socket | None) -> None:
        self.printer = printer
        self.conn = conn
        self.pending = bytearray()
        self.code_page = 0

    def feed(self, data: bytes) -> None:
        self.pending += data
        while self.pending:
            used = self._command(self.pending)
            if used == 0:
                return  # the rest of this command has not arrived yet
            del self.pending[:used]

    def _command(self, buf: bytearray) -> int:
        """Handle the command at the start of `buf`: the bytes it takes, or 0
        when more must arrive first."""
        first = buf[0]
        if first == DLE:
            if len(buf) < 3:
                return 0
            if buf[1] == EOT:
                self.printer.answer_status(self.conn, buf[2])
                return 3
            return 1
        if first == ESC:
            return self._esc(buf)
        if first == GS:
            return self._gs(buf)
        if first == FS:
            if len(buf) < 2:
                return 0
            if buf[1] in b".&":  # FS . / FS &: leave or enter kanji mode
                return 2
            return 3 if len(buf) >= 3 else 0
        if first == 0x0A:
            self.printer.record_text("\n")
            return 1
        if first < 0x20:
            return 1
        end = 1
        while end < len(buf) and buf[end] >= 0x20:
            end += 1
        self.printer.record_text(bytes(buf[:end]).decode(CODE_PAGES.get(self.code_page, "cp437")))
        return end

    def _esc(self, buf: bytearray) -> int:
        if len(buf) < 2:
            return 0
        command = buf[1]
        if command == ord("@"):
            self.code_page = 0
            return 2
        if command in b"2<":
            return 2
        if command in b"im":  # obsolete cut commands
            self.printer.record_cut()
            return 2
        if command == ord("*"):  # column bit image: ESC * m nL nH data
            if len(buf) < 5:
                return 0
            dots = buf[3] + 256 * buf[4]
            size = 5 + (dots if buf[2] in (0, 1) else 3 * dots)
            return size if len(buf) >= size else 0
        if command == ord("D"):  # tab stops, NUL-terminated
            end = buf.find(0, 2)
            return end + 1 if end >= 0 else 0
        size = {ord("p"): 5, ord("B"): 4, ord("c"): 4}.get(command, 3)
        if len(buf) < size:
            return 0
        if command == ord("t"):
            self.code_page = buf[2]
        return size

    def _gs(self, buf: bytearray) -> int:
        if len(buf) < 3:
            return 0
        command = buf[1]
        if command == ord("V"):  # cut: GS V m, or GS V m n for m 65, 66, 97...
            size = 3 if buf[2] in (0, 1, 48, 49) else 4
            if len(buf) < size:
                return 0
            self.printer.record_cut()
            return size
        if command == ord("("):  # GS ( k / GS ( L ...: pL pH, then that many bytes
            if len(buf) < 5:
                return 0
            size = 5 + buf[3] + 256 * buf[4]
            if len(buf) < size:
                return 0
            body = bytes(buf[5:size])
            # QR (cn 49) store data (fn 80, then m = 48): the rest is the symbol's text.
            if buf[2] == ord("k") and body[:3] == b"1P0":
                self.printer.record_qr(body[3:].decode("utf-8"))
            return size
        if command == ord("v"):  # raster image: GS v 0 m xL xH yL yH data
            if len(buf) < 8:
                return 0
            size = 8 + (buf[4] + 256 * buf[5]) * (buf[6] + 256 * buf[7])
            return size if len(buf) >= size else 0
        if command in b"LPW$\\":
            return 4 if len(buf) >= 4 else 0
        return 3


class FakePrinter:
    """An ESC/POS printer on a loopback TCP port. See the module docstring."""

    def __init__(self, mode: Mode = "paper_ok") -> None:
        self._mode: Mode = mode
        self._lock = threading.Lock()
        # Notified on each cut: a job has arrived whole once its cut has.
        self._cut_seen = threading.Condition(self._lock)
        self._received = bytearray()
        self._text_parts: list[str] = []
        self._qr_texts: list[str] = []
        self._cuts = 0
        self._connections = 0
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> FakePrinter:
        self._listen()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_listening()
        self._drop_connections()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in get_args(Mode):
            raise ValueError(f"unknown mode {mode!r}")
        was = self._mode
        self._mode = mode
        if mode == "offline" and was != "offline":
            # Closing the listening socket makes the kernel refuse connections.
            self._stop_listening()
            self._drop_connections()
        elif mode != "offline" and was == "offline":
            self._listen()

    # -- inspection -----------------------------------------------------------

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    @property
    def cuts(self) -> int:
        with self._lock:
            return self._cuts

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    def qr_payloads(self) -> list[str]:
        with self._lock:
            return list(self._qr_texts)

    def text(self) -> str:
        with self._lock:
            return "".join(self._text_parts)

    def feed(self, data: bytes) -> None:
        """Read `data` as if it arrived on a connection of its own: for bytes
        an adapter wrote somewhere else, such as a `file:` printer's file."""
        with self._lock:
            self._received += data
        _Stream(self, None).feed(data)

    def drop_connections(self) -> None:
        """Close every open connection, as printers do with idle ones."""
        self._drop_connections()

    def wait_for_cuts(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until `count` cuts have arrived (the adapter returns once its
        bytes are sent, before this thread has read them). False on timeout."""
        with self._cut_seen:
            return self._cut_seen.wait_for(lambda: self._cuts >= count, timeout)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._text_parts.clear()
            self._qr_texts.clear()
            self._cuts = 0

    # -- the printer ----------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Back on the same port after `offline`, as a printer keeps its address.
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # Wakes the thread blocked in accept().
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _drop_connections(self) -> None:
        with self._lock:
            connections, self._open = self._open, []
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # stopped listening
            with self._lock:
                self._connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        stream = _Stream(self, conn)
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._lock:
                    if conn in self._open:
                        self._open.remove(conn)
                conn.close()
                return
            with self._lock:
                self._received += data
            stream.feed(data)

    # -- called by the parser, from connection threads -------------------------

    def answer_status(self, conn: socket.socket | None, n: int) -> None:
        answer = STATUS.get(self._mode, {}).get(n)
        if answer is None or conn is None:
            return  # silent (or offline in the instant before the drop)
        with contextlib.suppress(OSError):
            conn.sendall(bytes([answer]))

    def record_text(self, text: str) -> None:
        with self._lock:
            self._text_parts.append(text)

    def record_qr(self, payload: str) -> None:
        with self._lock:
            self._qr_texts.append(payload)

    def record_cut(self) -> None:
        with self._cut_seen:
            self._cuts += 1
            self._cut_seen.notify_all()
