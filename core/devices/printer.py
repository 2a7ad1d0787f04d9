"""The ticket and receipt printer: a small protocol, and adapters chosen by a URL.

    preview                            no device (the default): each ticket or receipt is
                                       saved as a PNG, to show on screen, and a .txt
    tcp://HOST[:PORT]                  network ESC/POS printer, raw port 9100 unless told
    usb://VID:PID[?in_ep=82&out_ep=1]  USB ESC/POS printer, ids and endpoints in hex
    serial:DEVICE[?baudrate=N]         serial ESC/POS printer, 9600 baud unless told
    file:PATH                          a device file such as /dev/usb/lp0 (writes only)
    cups:QUEUE                         a raw CUPS queue

The ESC/POS adapters drive python-escpos, imported the first time a printer is
used so that `core` loads without it. They connect lazily, keep the
connection, and start afresh after any error. Before each job they ask the
printer itself, over the same connection, with the ESC/POS real-time status
queries (DLE EOT 1: online or not; DLE EOT 4: the roll paper sensors); a
printer that does not answer within the timeout is offline. python-escpos's
`is_online()` and `paper_status()` send the same two queries, but read an empty
answer as "paper adequate", so the answers are decoded here. `file:` cannot
read answers and `cups:` asks CUPS instead.

Each layout is built once as a list of blocks, then either sent as ESC/POS or
drawn with Pillow, so the preview shows what the paper would.
"""

from __future__ import annotations

import enum
import errno
import functools
import logging
import os
import re
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias
from urllib.parse import parse_qsl, urlsplit

from core.errors import ConfigError, LotkeeperError

if TYPE_CHECKING:
    from PIL import Image, ImageFont

    from core.site import Site

log = logging.getLogger("lotkeeper.printer")

DEFAULT_TCP_PORT = 9100
# Font A characters across 80 mm paper (python-escpos's default profile); a
# double-size line holds half as many.
COLUMNS = 42
QR_DOT_SIZE = 8  # printer dots per QR module: a ticket code prints about 30 mm wide
LOGO_MAX_SIZE = (384, 160)  # dots; 384 fits 58 mm paper too
SIMULATED_BANNER = "SIMULATED PAYMENT - NO MONEY TAKEN"
LOGO_ASSET = "ticket_logo.png"

# ESC/POS real-time status (DLE EOT n). Every answer byte has bits 1 and 4 set
# and bits 0 and 7 clear, which tells a status byte from anything else.
_ASK_PRINTER = b"\x10\x04\x01"
_ASK_PAPER = b"\x10\x04\x04"
_FIXED_MASK, _FIXED_BITS = 0x93, 0x12
_OFFLINE_BIT = 0x08  # DLE EOT 1, bit 3
_PAPER_NEAR_END = 0x0C  # DLE EOT 4, bits 2-3: near-end sensor
_PAPER_END = 0x60  # DLE EOT 4, bits 5-6: end sensor

_FORMS = "preview, tcp://HOST[:PORT], usb://VID:PID, serial:DEVICE, file:PATH or cups:QUEUE"


class PrinterState(enum.StrEnum):
    OK = "ok"
    PAPER_LOW = "paper_low"
    PAPER_OUT = "paper_out"
    OFFLINE = "offline"


@dataclass(frozen=True)
class PrinterHealth:
    """What the printer said when last asked."""

    state: PrinterState
    detail: str  # for the attendant: "paper low", "no answer from 10.0.0.5:9100 within 2 s"

    @property
    def can_print(self) -> bool:
        """True when a job would print; paper low still prints."""
        return self.state in (PrinterState.OK, PrinterState.PAPER_LOW)


@dataclass(frozen=True)
class SlipWords:
    """The fixed words printed on tickets and receipts. English by default;
    a kiosk passes them in the driver's language (`{label}` is the spot)."""

    ticket: str = "PARKING TICKET"
    keep: str = "Keep this ticket. Pay before you leave."
    spot: str = "Spot {label}"
    size: str = "Size"
    plate: str = "Plate"
    entered: str = "Entered"
    leave_by: str = "Leave by"
    receipt: str = "RECEIPT"
    total: str = "Total"
    paid_with: str = "Paid with"
    exit_by: str = "Exit by"
    simulated: str = SIMULATED_BANNER


@dataclass(frozen=True)
class TicketPrint:
    """What goes on an entry ticket; times are already formatted for the site."""

    site_name: str
    code: str  # the full signed code: the QR holds it
    short_code: str
    spot_label: str
    level: str
    size: str
    plate: str | None
    entered: str
    leave_by: str
    words: SlipWords = SlipWords()


@dataclass(frozen=True)
class ReceiptPrint:
    """What goes on a payment receipt."""

    site_name: str
    reference: str  # "Ticket 42", "Reservation 7"
    lines: tuple[tuple[str, str], ...]  # (label, amount text): the fee breakdown
    total: str
    paid_with: str  # "Visa •••• 4242", "Cash"
    exit_by: str | None
    simulated: bool  # the demo payment provider: the receipt must say no money was taken
    code: str | None = None  # a QR, e.g. the reservation code
    title: str | None = None  # instead of the words' "RECEIPT", e.g. "RESERVATION"
    words: SlipWords = SlipWords()


@dataclass(frozen=True)
class SlipPrint:
    """Any other slip, printed at the booth: an exit pass, a shift report."""

    site_name: str
    title: str
    rows: tuple[tuple[str, str], ...]  # (label, value)
    code: str | None = None  # printed as a QR
    note: str | None = None  # a line under everything
    name: str = "slip"  # the preview's file name
    short_code: str | None = None  # under the QR, big, as on a ticket: the code to type


class PrinterError(LotkeeperError):
    """A job was not printed. The message is for the driver, a template
    with its values (`noun`: "ticket", "receipt" or "slip", words the
    kiosk's catalog translates); `health` says why, for the attendant."""

    code = "printer_fault"

    def __init__(self, message: str, health: PrinterHealth, **values: object) -> None:
        super().__init__(message, **values)
        self.health = health


class Printer(Protocol):
    """A ticket and receipt printer. Calls block (network, USB): run them in
    a worker thread."""

    url: str  # as configured, for the attendant; printer URLs hold no secrets

    def health(self) -> PrinterHealth:
        """Ask the printer how it is, within the timeout. Never raises."""
        ...

    def print_ticket(self, ticket: TicketPrint) -> Path | None:
        """Print an entry ticket, or raise `PrinterError`. The preview
        printer returns the image it saved; real printers return None."""
        ...

    def print_receipt(self, receipt: ReceiptPrint) -> Path | None:
        """Print a payment receipt, or raise `PrinterError`. Returns as
        `print_ticket` does."""
        ...

    def print_slip(self, slip: SlipPrint) -> Path | None:
        """Print an exit pass or a report, or raise `PrinterError`. Returns
        as `print_ticket` does."""
        ...


def site_printer(site: Site) -> Printer:
    """The printer this machine's configuration names (`printer.url`), with
    previews saved under the data directory's `printed/`."""
    settings = site.settings.printer
    return open_printer(
        settings.url, site.settings.paths.data_dir / "printed", timeout=settings.timeout_seconds
    )


def open_printer(
    url: str, preview_dir: Path, timeout: float = 2.0, *, logo: Path | None = None
) -> Printer:
    """The printer `url` names (forms in this module's docstring), not yet
    connected: nothing is opened until it is first asked or printed on.
    `preview_dir` is where `preview` saves its jobs; `timeout` bounds each
    connect and status question in seconds. `logo` (default: the shipped
    `assets/ticket_logo.png`) heads every job when the file exists. Raises
    `ConfigError` for a URL that is not one of the forms."""
    spec = url.strip()
    if not timeout > 0:
        raise ConfigError(
            "The printer timeout must be more than 0 seconds, not {timeout}.", timeout=timeout
        )
    if logo is None:
        from core.config import asset_path

        logo = asset_path(LOGO_ASSET)
    if spec.lower() == "preview":
        return PreviewPrinter(preview_dir, logo=logo)
    scheme, colon, rest = spec.partition(":")
    if colon:
        scheme = scheme.lower()
        if scheme == "tcp":
            host, port = _parse_tcp(spec)
            return TcpPrinter(spec, host, port, timeout=timeout, logo=logo)
        if scheme == "usb":
            vendor, product, endpoints = _parse_usb(spec)
            return UsbPrinter(spec, vendor, product, timeout=timeout, logo=logo, **endpoints)
        if scheme == "serial":
            device, query = _path_and_query(spec, rest, "a serial device: serial:/dev/ttyUSB0")
            options = _options(spec, query, {"baudrate": _positive_int})
            return SerialPrinter(spec, device, timeout=timeout, logo=logo, **options)
        if scheme == "file":
            return FilePrinter(spec, _parse_file(spec, rest), timeout=timeout, logo=logo)
        if scheme == "cups":
            if not re.fullmatch(r"[^\s/\\?'\"#]{1,127}", rest):
                raise ConfigError(
                    "Printer URL {url} names no CUPS queue: use cups:QUEUE.", url=_shown(url)
                )
            return CupsPrinter(spec, rest, timeout=timeout, logo=logo)
    raise ConfigError(
        "Printer URL {url} is not one Lotkeeper knows: use {forms}.", url=_shown(url), forms=_FORMS
    )


# -- URL parsing ---------------------------------------------------------------


def _shown(url: str) -> str:
    # A user:password@ has no business in a printer URL; never echo one.
    return repr(re.sub(r"//[^/@]*@", "//***@", url))


def _parse_tcp(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        port = DEFAULT_TCP_PORT
    if not parts.hostname:
        raise ConfigError(
            "Printer URL {url} names no host: use tcp://HOST[:PORT], e.g. tcp://10.0.0.5:9100.",
            url=_shown(url),
        )
    if not 0 < port < 65536:
        raise ConfigError(
            "Printer URL {url} has a bad port: use a number from 1 to 65535.", url=_shown(url)
        )
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ConfigError(
            "Printer URL {url} holds more than a host and port: use tcp://HOST[:PORT].",
            url=_shown(url),
        )
    return parts.hostname, port


def _parse_usb(url: str) -> tuple[int, int, dict[str, int]]:
    match = re.fullmatch(r"usb://([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})(?:\?(.*))?", url, re.I)
    if match is None:
        raise ConfigError(
            "Printer URL {url} is not usb://VID:PID with the ids in hex, e.g. usb://04b8:0202.",
            url=_shown(url),
        )
    endpoints = _options(url, match[3] or "", {"in_ep": _endpoint, "out_ep": _endpoint})
    return int(match[1], 16), int(match[2], 16), endpoints


def _path_and_query(url: str, rest: str, what: str) -> tuple[str, str]:
    path, _, query = rest.partition("?")
    if not path.strip():
        raise ConfigError(
            "Printer URL {url} names no device: it needs {what}.", url=_shown(url), what=what
        )
    return path, query


def _parse_file(url: str, rest: str) -> str:
    if rest.startswith("//"):
        # file:///dev/usb/lp0, the long form of file:/dev/usb/lp0.
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                "Printer URL {url} is not a local file: use file:PATH.", url=_shown(url)
            )
        rest = parts.path
    path, query = _path_and_query(url, rest, "a device file: file:/dev/usb/lp0")
    _options(url, query, {})
    return path


def _options(url: str, query: str, allowed: dict[str, Callable[[str], int]]) -> dict[str, int]:
    options: dict[str, int] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            if not allowed:
                raise ConfigError(
                    "Printer URL {url} has an unknown option {key}: it takes none.",
                    url=_shown(url),
                    key=repr(key),
                )
            raise ConfigError(
                "Printer URL {url} has an unknown option {key}: it takes {options}.",
                url=_shown(url),
                key=repr(key),
                options=", ".join(allowed),
            )
        try:
            options[key] = allowed[key](value)
        except ValueError:
            raise ConfigError(
                "Printer URL {url} has a bad {key}: {value}.",
                url=_shown(url),
                key=key,
                value=repr(value),
            ) from None
    return options


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _endpoint(text: str) -> int:
    value = int(text, 16)
    if not 0 <= value <= 0xFF:
        raise ValueError(text)
    return value


# -- layouts -------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    text: str
    big: bool = False  # double width and height
    bold: bool = False
    center: bool = True
    inverse: bool = False


@dataclass(frozen=True)
class _Row:
    label: str
    value: str
    bold: bool = False


@dataclass(frozen=True)
class _Qr:
    data: str


@dataclass(frozen=True)
class _Rule:
    pass


@dataclass(frozen=True)
class _Logo:
    pass


_Block: TypeAlias = _Text | _Row | _Qr | _Rule | _Logo


def _ticket_blocks(ticket: TicketPrint) -> list[_Block]:
    words = ticket.words
    blocks: list[_Block] = [
        _Logo(),
        _Text(ticket.site_name, bold=True),
        _Text(words.ticket),
        _Qr(ticket.code),
        _Text(ticket.short_code, big=True, bold=True),
        _Text(words.spot.format(label=ticket.spot_label), big=True),
        _Text(ticket.level, big=True),
        _Rule(),
        _Row(words.size, ticket.size),
    ]
    if ticket.plate:
        blocks.append(_Row(words.plate, ticket.plate))
    blocks += [
        _Row(words.entered, ticket.entered),
        _Row(words.leave_by, ticket.leave_by, bold=True),
        _Rule(),
        _Text(words.keep),
    ]
    return blocks


def _receipt_blocks(receipt: ReceiptPrint) -> list[_Block]:
    words = receipt.words
    blocks: list[_Block] = [
        _Logo(),
        _Text(receipt.site_name, bold=True),
        _Text(receipt.title or words.receipt),
        _Text(receipt.reference),
    ]
    if receipt.simulated:
        blocks.append(_Text(words.simulated, bold=True, inverse=True))
    blocks.append(_Rule())
    blocks += [_Row(label, amount) for label, amount in receipt.lines]
    blocks += [
        _Rule(),
        _Row(words.total, receipt.total, bold=True),
        _Row(words.paid_with, receipt.paid_with),
    ]
    if receipt.exit_by:
        blocks.append(_Row(words.exit_by, receipt.exit_by, bold=True))
    if receipt.code:
        blocks.append(_Qr(receipt.code))
    return blocks


def _slip_blocks(slip: SlipPrint) -> list[_Block]:
    blocks: list[_Block] = [
        _Logo(),
        _Text(slip.site_name, bold=True),
        _Text(slip.title, bold=True),
        _Rule(),
    ]
    blocks += [_Row(label, value) for label, value in slip.rows]
    if slip.code or slip.short_code:
        blocks.append(_Rule())
    if slip.code:
        # As on a ticket: the QR alone holds the long code, which nobody types.
        blocks.append(_Qr(slip.code))
    if slip.short_code:
        blocks.append(_Text(slip.short_code, big=True, bold=True))
    if slip.note:
        blocks += [_Rule(), _Text(slip.note)]
    return blocks


def _text_lines(block: _Text) -> list[str]:
    return textwrap.wrap(block.text, COLUMNS // 2 if block.big else COLUMNS) or [""]


def _row_parts(row: _Row) -> list[tuple[str, str]]:
    """(left, right) text of each line of a row: the label wraps, the value
    goes on the right of the first line (or under a label too long to share)."""
    room = COLUMNS - len(row.value) - 1
    if room < 8:
        return [(line, "") for line in textwrap.wrap(row.label, COLUMNS)] + [("", row.value)]
    label = textwrap.wrap(row.label, room) or [""]
    return [(label[0], row.value)] + [(line, "") for line in label[1:]]


def _row_lines(row: _Row) -> list[str]:
    return [left.ljust(COLUMNS - len(right)) + right for left, right in _row_parts(row)]


def _plain_text(blocks: list[_Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        match block:
            case _Text():
                lines += [
                    line.center(COLUMNS) if block.center else line for line in _text_lines(block)
                ]
            case _Row():
                lines += _row_lines(block)
            case _Qr():
                lines.append(f"[QR: {block.data}]")
            case _Rule():
                lines.append("-" * COLUMNS)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _logo_image(path: Path | None) -> Image.Image | None:
    """The logo in grey, scaled to fit the paper; None when there is none to print."""
    if path is None or not path.is_file():
        return None
    from PIL import Image

    try:
        with Image.open(path) as source:
            image = source.convert("RGBA")
    except (OSError, ValueError) as error:
        # A broken logo must not stop a ticket.
        log.warning("ticket logo %s cannot be read, printing without it: %s", path, error)
        return None
    paper = Image.new("RGBA", image.size, "white")
    paper.alpha_composite(image)
    grey = paper.convert("L")
    grey.thumbnail(LOGO_MAX_SIZE)
    return grey


def _raster(image: Image.Image) -> bytes:
    """ESC/POS `GS v 0`: a raster bit image, one bit per dot, rows padded to bytes."""
    from PIL import ImageOps

    # Inverted, ink becomes 1 bits, and a 1 bit is a printed dot.
    dots = ImageOps.invert(image).convert("1")
    width_bytes = (dots.width + 7) // 8
    header = b"\x1dv0\x00" + width_bytes.to_bytes(2, "little") + dots.height.to_bytes(2, "little")
    return header + dots.tobytes()


# -- ESC/POS adapters ----------------------------------------------------------


class _NoAnswer(Exception):
    """The printer took a status query and sent nothing (or nonsense) back."""


class _MissingDriver(Exception):
    pass


def _caused_by(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _timed_out(error: BaseException) -> bool:
    # socket.timeout, pyusb's USBTimeoutError, pyserial's SerialTimeoutException.
    return any(
        isinstance(link, TimeoutError) or "timeout" in type(link).__name__.lower()
        for link in _caused_by(error)
    )


def _reason(error: BaseException) -> str:
    # python-escpos wraps OS errors in its own, with messages over several
    # lines; the OS error says it best.
    for link in _caused_by(error):
        if isinstance(link, OSError) and link.strerror:
            return link.strerror[0].lower() + link.strerror[1:]
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _decode_status(printer: int, paper: int, where: str) -> PrinterHealth:
    if paper & _PAPER_END:
        # Checked first: a printer out of paper also reports itself offline.
        return PrinterHealth(PrinterState.PAPER_OUT, "out of paper")
    if printer & _OFFLINE_BIT:
        return PrinterHealth(
            PrinterState.OFFLINE, f"{where} reports it is offline (cover open or paper jam?)"
        )
    if paper & _PAPER_NEAR_END:
        return PrinterHealth(PrinterState.PAPER_LOW, "paper low")
    return PrinterHealth(PrinterState.OK, "ready")


def _send_escpos(device: Any, blocks: list[_Block], logo: bytes | None) -> None:
    from escpos.constants import QR_ECLEVEL_M  # type: ignore[import-untyped]

    # ESC @ clears whatever a failed job left in the printer and resets its
    # code page, so the encoder must choose (and announce) one again.
    device.hw("INIT")
    device.magic.encoding = None
    for block in blocks:
        match block:
            case _Text():
                device.set_with_default(
                    align="center" if block.center else "left",
                    bold=block.bold,
                    double_width=block.big,
                    double_height=block.big,
                    invert=block.inverse,
                )
                for line in _text_lines(block):
                    device.textln(line)
            case _Row():
                device.set_with_default(bold=block.bold)
                for line in _row_lines(block):
                    device.textln(line)
            case _Qr():
                device.set_with_default(align="center")
                # Native: the printer draws the symbol at its own resolution,
                # sharper than an image and a few bytes to send.
                device.qr(block.data, native=True, size=QR_DOT_SIZE, ec=QR_ECLEVEL_M)
                device.ln()
            case _Rule():
                device.set_with_default()
                device.textln("-" * COLUMNS)
            case _Logo():
                if logo:
                    # Sent as is: python-escpos's image() prints a warning to
                    # stdout (over the kiosk's screen) unless told the paper width.
                    device.set_with_default(align="center")
                    device._raw(logo)
                    device.ln()
    device.set_with_default()
    device.cut()


class _EscposPrinter:
    """What the python-escpos adapters share: the lazy connection, the status
    check and the printing. Subclasses say how to open the device."""

    def __init__(self, url: str, *, timeout: float, logo: Path | None) -> None:
        self.url = url
        self.timeout = timeout
        self.logo = logo
        self._device: Any = None
        # A heartbeat may ask for health while a worker prints: one exchange at a time.
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """The device, as the attendant would look for it."""
        raise NotImplementedError

    def _open(self) -> Any:
        raise NotImplementedError

    def _ask(self, device: Any) -> PrinterHealth:
        return _decode_status(
            self._status(device, _ASK_PRINTER), self._status(device, _ASK_PAPER), self.where
        )

    def _finish(self, device: Any) -> None:
        """After a job: nothing, for printers that print as the bytes arrive."""

    def health(self) -> PrinterHealth:
        """Ask the printer (connecting if need be) whether it is online and
        has paper. Never raises; no answer within the timeout is OFFLINE."""
        with self._lock:
            return self._check()

    def print_ticket(self, ticket: TicketPrint) -> Path | None:
        """Check the printer, then print the ticket and cut. Raises
        `PrinterError` when out of paper, offline, or failing mid-job."""
        self._print("ticket", _ticket_blocks(ticket))
        return None

    def print_receipt(self, receipt: ReceiptPrint) -> Path | None:
        """As `print_ticket`, for a payment receipt."""
        self._print("receipt", _receipt_blocks(receipt))
        return None

    def print_slip(self, slip: SlipPrint) -> Path | None:
        """As `print_ticket`, for an exit pass or a report."""
        self._print("receipt", _slip_blocks(slip))
        return None

    def close(self) -> None:
        """Let go of the device; the next call connects again."""
        with self._lock:
            self._drop()

    def _check(self) -> PrinterHealth:
        reused = self._device is not None
        try:
            return self._ask(self._connect())
        except Exception as error:
            self._drop()
            if reused and not _timed_out(error):
                # Printers close idle connections (a closed socket reads as an
                # empty answer): only a fresh one tells whether the printer is gone.
                return self._check()
            if _timed_out(error) or isinstance(error, _NoAnswer):
                detail = f"no answer from {self.where} within {self.timeout:g} s"
            else:
                detail = f"cannot reach {self.where}: {_reason(error)}"
            return PrinterHealth(PrinterState.OFFLINE, detail)

    def _print(self, noun: str, blocks: list[_Block]) -> None:
        with self._lock:
            health = self._check()
            if health.state is PrinterState.PAPER_OUT:
                raise PrinterError("The {noun} printer is out of paper.", health, noun=noun)
            if not health.can_print:
                raise PrinterError(
                    "The {noun} printer is not working right now.", health, noun=noun
                )
            image = _logo_image(self.logo)
            try:
                device = self._connect()
                _send_escpos(device, blocks, _raster(image) if image else None)
                self._finish(device)
            except Exception as error:
                # Any fault of the device or its driver: the job is lost either way.
                log.warning("printing on %s failed", self.url, exc_info=True)
                self._drop()
                failed = PrinterHealth(
                    PrinterState.OFFLINE, f"printing failed on {self.where}: {_reason(error)}"
                )
                raise PrinterError(
                    "The {noun} printer failed while printing.", failed, noun=noun
                ) from error

    def _connect(self) -> Any:
        if self._device is None:
            self._device = self._open()
        return self._device

    def _drop(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.close()
            except Exception:
                # It is being dropped because it failed; closing may fail too.
                log.debug("closing %s failed", self.url, exc_info=True)

    def _status(self, device: Any, query: bytes) -> int:
        answer = bytes(device.query_status(query))
        if not answer or answer[-1] & _FIXED_MASK != _FIXED_BITS:
            raise _NoAnswer(query)
        # The last byte: anything before it answered an earlier, abandoned query.
        return answer[-1]


class TcpPrinter(_EscposPrinter):
    """An ESC/POS printer on the network (`tcp://HOST[:PORT]`, raw port 9100)."""

    def __init__(self, url: str, host: str, port: int, *, timeout: float, logo: Path | None):
        super().__init__(url, timeout=timeout, logo=logo)
        self.host = host
        self.port = port

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _open(self) -> Any:
        from escpos.printer import Network  # type: ignore[import-untyped]

        # The socket timeout bounds the connect, each send and each status read.
        device = Network(self.host, port=self.port, timeout=self.timeout)
        device.open()
        return device


class UsbPrinter(_EscposPrinter):
    """An ESC/POS printer on USB (`usb://VID:PID`, ids in hex; needs pyusb)."""

    def __init__(
        self,
        url: str,
        vendor_id: int,
        product_id: int,
        *,
        timeout: float,
        logo: Path | None,
        in_ep: int = 0x82,
        out_ep: int = 0x01,
    ) -> None:
        super().__init__(url, timeout=timeout, logo=logo)
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.in_ep = in_ep
        self.out_ep = out_ep

    @property
    def where(self) -> str:
        return f"USB printer {self.vendor_id:04x}:{self.product_id:04x}"

    def _open(self) -> Any:
        from escpos.printer import Usb

        if not Usb.is_usable():
            raise _MissingDriver("the pyusb package is not installed")
        milliseconds = max(1, round(self.timeout * 1000))
        device = Usb(
            self.vendor_id,
            self.product_id,
            timeout=milliseconds,
            in_ep=self.in_ep,
            out_ep=self.out_ep,
        )
        device.open()
        # python-escpos reads without a timeout of its own: pyusb's default applies.
        device.device.default_timeout = milliseconds
        return device


class SerialPrinter(_EscposPrinter):
    """An ESC/POS printer on a serial port (`serial:/dev/ttyUSB0`; needs pyserial)."""

    def __init__(
        self, url: str, path: str, *, timeout: float, logo: Path | None, baudrate: int = 9600
    ) -> None:
        super().__init__(url, timeout=timeout, logo=logo)
        self.path = path
        self.baudrate = baudrate

    @property
    def where(self) -> str:
        return self.path

    def _open(self) -> Any:
        from escpos.printer import Serial

        if not Serial.is_usable():
            raise _MissingDriver("the pyserial package is not installed")
        device = Serial(self.path, baudrate=self.baudrate, timeout=self.timeout)
        device.open()
        return device


class FilePrinter(_EscposPrinter):
    """A printer behind a device file (`file:/dev/usb/lp0`). The file is
    written only, so health says no more than whether the device is there."""

    def __init__(self, url: str, path: str, *, timeout: float, logo: Path | None) -> None:
        super().__init__(url, timeout=timeout, logo=logo)
        self.path = path

    @property
    def where(self) -> str:
        return self.path

    def _open(self) -> Any:
        from escpos.printer import File

        # Opening for writing would create a missing file: an unplugged
        # printer's /dev node must read as offline, not become a file.
        if not os.path.exists(self.path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self.path)
        device = File(self.path)
        device.open()
        return device

    def _ask(self, device: Any) -> PrinterHealth:
        if not os.path.exists(self.path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self.path)
        return PrinterHealth(PrinterState.OK, "ready (a file: printer cannot report paper)")


class CupsPrinter(_EscposPrinter):
    """A raw CUPS queue (`cups:QUEUE`; needs pycups). Health comes from the
    queue's state and its reasons (media-empty, media-low)."""

    def __init__(self, url: str, queue: str, *, timeout: float, logo: Path | None) -> None:
        super().__init__(url, timeout=timeout, logo=logo)
        self.queue = queue

    @property
    def where(self) -> str:
        return f"CUPS queue {self.queue}"

    def _open(self) -> Any:
        from escpos.printer import CupsPrinter as EscposCups

        if not EscposCups.is_usable():
            raise _MissingDriver("the pycups package is not installed")
        device = EscposCups(self.queue)
        device.open(job_name="lotkeeper")
        return device

    def _ask(self, device: Any) -> PrinterHealth:
        queue = device.printers.get(self.queue)
        if queue is None:
            return PrinterHealth(PrinterState.OFFLINE, f"CUPS has no queue named {self.queue}")
        reasons = " ".join(queue.get("printer-state-reasons", []))
        if "media-empty" in reasons or "media-needed" in reasons:
            return PrinterHealth(PrinterState.PAPER_OUT, "out of paper")
        if queue.get("printer-state") == 5 or "offline" in reasons:  # 5: stopped
            return PrinterHealth(PrinterState.OFFLINE, f"{self.where} is stopped or offline")
        if "media-low" in reasons:
            return PrinterHealth(PrinterState.PAPER_LOW, "paper low")
        return PrinterHealth(PrinterState.OK, "ready")

    def _finish(self, device: Any) -> None:
        # python-escpos hands the job to CUPS when it closes; the next job opens anew.
        self._device = None
        device.close()


# -- preview -------------------------------------------------------------------

_PAPER_WIDTH = 576  # pixels: 80 mm paper at 203 dpi, as a printer would print it
_MARGIN = 24
_FONT_SIZE = 22


class PreviewPrinter:
    """No device: each job is drawn as the paper would look and saved as a PNG,
    with its text in a .txt beside it, for the kiosk to show."""

    url = "preview"

    def __init__(self, directory: Path, *, logo: Path | None = None) -> None:
        self.directory = directory
        self.logo = logo

    def health(self) -> PrinterHealth:
        """Always OK: there is nothing to run out of."""
        return PrinterHealth(PrinterState.OK, f"preview only: saved in {self.directory}")

    def print_ticket(self, ticket: TicketPrint) -> Path:
        """Save `ticket-<short code>.png` (and .txt); returns the PNG's path."""
        return self._save("ticket", f"ticket-{_slug(ticket.short_code)}", _ticket_blocks(ticket))

    def print_receipt(self, receipt: ReceiptPrint) -> Path:
        """Save `receipt-<reference>.png` (and .txt); returns the PNG's path."""
        name = f"receipt-{_slug(receipt.reference).lower()}"
        return self._save("receipt", name, _receipt_blocks(receipt))

    def print_slip(self, slip: SlipPrint) -> Path:
        """Save `<name>.png` (and .txt); returns the PNG's path."""
        return self._save("slip", _slug(slip.name).lower(), _slip_blocks(slip))

    def _save(self, noun: str, name: str, blocks: list[_Block]) -> Path:
        png = self.directory / f"{name}.png"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _draw(blocks, _logo_image(self.logo)).save(png)
            png.with_suffix(".txt").write_text(_plain_text(blocks), encoding="utf-8")
        except OSError as error:
            health = PrinterHealth(
                PrinterState.OFFLINE, f"cannot save in {self.directory}: {_reason(error)}"
            )
            raise PrinterError("The {noun} could not be saved.", health, noun=noun) from error
        return png


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "job"


_Font: TypeAlias = "ImageFont.ImageFont | ImageFont.FreeTypeFont"


def _draw(blocks: list[_Block], logo: Image.Image | None) -> Image.Image:
    from PIL import Image

    strips: list[Image.Image] = []
    for block in blocks:
        match block:
            case _Text():
                size = 2 * _FONT_SIZE if block.big else _FONT_SIZE
                for line in _text_lines(block):
                    strips.append(
                        _text_strip(
                            size, line, center=block.center, bold=block.bold, inverse=block.inverse
                        )
                    )
            case _Row():
                for left, right in _row_parts(block):
                    strips.append(_text_strip(_FONT_SIZE, left, right, bold=block.bold))
            case _Qr():
                strips.append(_qr_strip(block.data))
            case _Rule():
                rule = Image.new("L", (_PAPER_WIDTH, _FONT_SIZE), 255)
                middle = _FONT_SIZE // 2
                rule.paste(0, (_MARGIN, middle, _PAPER_WIDTH - _MARGIN, middle + 2))
                strips.append(rule)
            case _Logo():
                if logo is not None:
                    strips.append(_centred(logo, logo.height + _MARGIN))
    page = Image.new("L", (_PAPER_WIDTH, sum(s.height for s in strips) + 2 * _MARGIN), 255)
    top = _MARGIN
    for strip in strips:
        page.paste(strip, (0, top))
        top += strip.height
    return page


# Fonts with the letters, currency signs and bullets of a receipt (é, €, •),
# where the system has one; Pillow's own font lacks them.
_FONT_FILES = {
    False: ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"),
    True: ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf"),
}


@functools.cache
def _font(size: int, bold: bool) -> tuple[_Font, int]:
    """A font, and the stroke width that makes it bold when no bold face was found."""
    from PIL import ImageFont

    for name in _FONT_FILES[bold]:
        try:
            return ImageFont.truetype(name, size), 0
        except OSError:
            continue
    return ImageFont.load_default(size), 1 if bold else 0


def _text_strip(
    size: int,
    left: str,
    right: str = "",
    *,
    center: bool = False,
    bold: bool = False,
    inverse: bool = False,
) -> Image.Image:
    from PIL import Image, ImageDraw

    font, stroke = _font(size, bold)
    strip = Image.new("L", (_PAPER_WIDTH, round(size * 1.35)), 0 if inverse else 255)
    draw = ImageDraw.Draw(strip)
    ink = 255 if inverse else 0
    style: dict[str, Any] = {"font": font, "fill": ink, "stroke_width": stroke, "stroke_fill": ink}
    x = (_PAPER_WIDTH - draw.textlength(left, font=font)) / 2 if center else _MARGIN
    draw.text((x, 0), left, **style)
    if right:
        draw.text((_PAPER_WIDTH - _MARGIN - draw.textlength(right, font=font), 0), right, **style)
    return strip


def _qr_strip(data: str) -> Image.Image:
    import qrcode
    from qrcode.image.pil import PilImage

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, image_factory=PilImage)
    code.add_data(data)
    code.make(fit=True)
    quiet = 4  # modules of white around the symbol, as scanners expect
    code.border = quiet
    code.box_size = max(2, min(8, (_PAPER_WIDTH - 2 * _MARGIN) // (code.modules_count + 2 * quiet)))
    image = code.make_image().get_image().convert("L")
    return _centred(image, image.height)


def _centred(image: Image.Image, height: int) -> Image.Image:
    from PIL import Image

    strip = Image.new("L", (_PAPER_WIDTH, height), 255)
    strip.paste(image, ((_PAPER_WIDTH - image.width) // 2, 0))
    return strip
