"""The printer adapters: the real python-escpos network adapter against
`FakePrinter` on 127.0.0.1, the preview printer, and the printer URLs."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from fake_printer import FakePrinter, Mode
from PIL import Image

from core.devices.printer import (
    SIMULATED_BANNER,
    CupsPrinter,
    FilePrinter,
    PreviewPrinter,
    Printer,
    PrinterError,
    PrinterHealth,
    PrinterState,
    ReceiptPrint,
    SerialPrinter,
    TcpPrinter,
    TicketPrint,
    UsbPrinter,
    open_printer,
)
from core.errors import ConfigError, LotkeeperError

CODE = "LK1.K1.42.1732262400.ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
RESERVATION_CODE = "LR1.K1.7.1732262400.QRSTUVWXYZ234567ABCDEFGHIJKLMNOP"
SHORT_TIMEOUT = 0.3
STATUS_QUERIES = (b"\x10\x04\x01", b"\x10\x04\x04")
DOUBLE_SIZE = b"\x1b!\x30"  # ESC ! with double width and double height

TICKET = TicketPrint(
    site_name="Lotkeeper demo garage",
    code=CODE,
    short_code="42-ABCDEF",
    spot_label="1A-05",
    level="Level 1",
    size="small",
    plate="KLX 481",
    entered="Fri 22 Nov 09:05",
    leave_by="Fri 22 Nov 21:05",
)


def ticket(**changes: Any) -> TicketPrint:
    return dataclasses.replace(TICKET, **changes)


def receipt(simulated: bool = True, code: str | None = None) -> ReceiptPrint:
    return ReceiptPrint(
        site_name="Lotkeeper demo garage",
        reference="Ticket 42",
        lines=(("First hour", "$3.00"), ("2 more hours", "$4.00")),
        total="$7.00",
        paid_with="Visa •••• 4242",
        exit_by="Fri 22 Nov 11:20",
        simulated=simulated,
        code=code,
    )


@pytest.fixture
def fake() -> Iterator[FakePrinter]:
    with FakePrinter() as printer:
        yield printer


@pytest.fixture
def printer(fake: FakePrinter, tmp_path: Path) -> Iterator[Printer]:
    adapter = open_printer(fake.url, tmp_path / "preview", logo=tmp_path / "no-logo.png")
    yield adapter
    assert isinstance(adapter, TcpPrinter)
    adapter.close()


def quick_printer(fake: FakePrinter, tmp_path: Path) -> TcpPrinter:
    adapter = open_printer(
        fake.url, tmp_path / "preview", timeout=SHORT_TIMEOUT, logo=tmp_path / "no-logo.png"
    )
    assert isinstance(adapter, TcpPrinter)
    return adapter


def nothing_but_status_queries(data: bytes) -> bool:
    for query in STATUS_QUERIES:
        data = data.replace(query, b"")
    return data == b""


def printed(printer: Printer, fake: FakePrinter, job: TicketPrint | ReceiptPrint) -> str:
    if isinstance(job, TicketPrint):
        assert printer.print_ticket(job) is None
    else:
        assert printer.print_receipt(job) is None
    assert fake.wait_for_cuts(1)
    return fake.text()


# -- printing over TCP ----------------------------------------------------------


def test_ticket_carries_a_native_qr_of_the_code_and_its_details_then_a_cut(
    printer: Printer, fake: FakePrinter
) -> None:
    text = printed(printer, fake, ticket())

    assert fake.qr_payloads() == [CODE]
    assert b"\x1dv0" not in fake.received  # the QR is the printer's own, not an image
    for shown in (
        "Lotkeeper demo garage",
        "PARKING TICKET",
        "42-ABCDEF",
        "Spot 1A-05",
        "Level 1",
        "small",
        "KLX 481",
        "Fri 22 Nov 09:05",
        "Fri 22 Nov 21:05",
        "Keep this ticket. Pay before you leave.",
    ):
        assert shown in text
    assert fake.cuts == 1


def test_ticket_prints_short_code_spot_and_level_double_size(
    printer: Printer, fake: FakePrinter
) -> None:
    printed(printer, fake, ticket())

    data = fake.received
    for big in (b"42-ABCDEF", b"Spot 1A-05", b"Level 1"):
        before = data[: data.index(big)]
        assert before.rindex(b"\x1b!") == before.rindex(DOUBLE_SIZE)
    before_times = data[: data.index(b"Fri 22 Nov 09:05")]
    assert before_times.rindex(b"\x1b!") != before_times.rindex(DOUBLE_SIZE)


def test_ticket_without_plate_leaves_the_plate_line_out(
    printer: Printer, fake: FakePrinter
) -> None:
    text = printed(printer, fake, ticket(plate=None))

    assert "Plate" not in text
    assert "42-ABCDEF" in text


def test_logo_prints_first_as_a_raster_image_when_the_file_exists(
    fake: FakePrinter, tmp_path: Path
) -> None:
    logo = tmp_path / "ticket_logo.png"
    Image.new("RGB", (200, 60), "black").save(logo)
    printer = open_printer(fake.url, tmp_path, logo=logo)

    text = printed(printer, fake, ticket())

    data = fake.received
    assert b"\x1dv0" in data
    assert data.index(b"\x1dv0") < data.index(b"Lotkeeper demo garage")
    # The image's bytes were read as image, not as text or commands.
    assert fake.qr_payloads() == [CODE]
    assert "42-ABCDEF" in text


def test_unreadable_logo_is_skipped_and_the_ticket_still_prints(
    fake: FakePrinter, tmp_path: Path
) -> None:
    logo = tmp_path / "ticket_logo.png"
    logo.write_bytes(b"not a png")
    printer = open_printer(fake.url, tmp_path, logo=logo)

    printed(printer, fake, ticket())

    assert b"\x1dv0" not in fake.received
    assert fake.qr_payloads() == [CODE]


# -- health ---------------------------------------------------------------------


def test_health_is_ok_when_the_printer_is_online_with_paper(printer: Printer) -> None:
    health = printer.health()

    assert health == PrinterHealth(PrinterState.OK, "ready")
    assert health.can_print


def test_paper_low_is_reported_and_the_ticket_still_prints(
    printer: Printer, fake: FakePrinter
) -> None:
    fake.mode = "paper_low"

    health = printer.health()
    assert health.state is PrinterState.PAPER_LOW
    assert health.detail == "paper low"
    assert health.can_print
    printed(printer, fake, ticket())
    assert fake.qr_payloads() == [CODE]


def test_paper_out_refuses_the_ticket_and_prints_nothing(
    printer: Printer, fake: FakePrinter
) -> None:
    fake.mode = "paper_out"
    assert printer.health().state is PrinterState.PAPER_OUT

    with pytest.raises(PrinterError) as refused:
        printer.print_ticket(ticket())

    assert str(refused.value) == "The ticket printer is out of paper."
    assert refused.value.health.state is PrinterState.PAPER_OUT
    assert not refused.value.health.can_print
    assert isinstance(refused.value, LotkeeperError)
    assert refused.value.code == "printer_fault"
    assert nothing_but_status_queries(fake.received)
    assert fake.text() == "" and fake.qr_payloads() == [] and fake.cuts == 0


def test_silent_printer_is_offline_within_the_timeout(fake: FakePrinter, tmp_path: Path) -> None:
    printer = quick_printer(fake, tmp_path)
    fake.mode = "silent"

    started = time.monotonic()
    health = printer.health()
    elapsed = time.monotonic() - started

    assert health.state is PrinterState.OFFLINE
    assert health.detail == f"no answer from 127.0.0.1:{fake.port} within 0.3 s"
    assert elapsed < SHORT_TIMEOUT + 0.7


def test_silent_printer_refuses_the_ticket_with_printer_error(
    fake: FakePrinter, tmp_path: Path
) -> None:
    printer = quick_printer(fake, tmp_path)
    fake.mode = "silent"

    with pytest.raises(PrinterError) as refused:
        printer.print_ticket(ticket())

    assert str(refused.value) == "The ticket printer is not working right now."
    assert refused.value.health.state is PrinterState.OFFLINE
    assert nothing_but_status_queries(fake.received)


def test_switched_off_printer_is_offline_and_refuses_to_print(
    fake: FakePrinter, tmp_path: Path
) -> None:
    printer = quick_printer(fake, tmp_path)
    fake.mode = "offline"

    health = printer.health()
    assert health.state is PrinterState.OFFLINE
    assert health.detail == f"cannot reach 127.0.0.1:{fake.port}: connection refused"
    with pytest.raises(PrinterError) as refused:
        printer.print_receipt(receipt())
    assert str(refused.value) == "The receipt printer is not working right now."
    assert fake.connections == 0


def test_printer_switched_back_on_is_reconnected_and_prints(
    fake: FakePrinter, tmp_path: Path
) -> None:
    printer = quick_printer(fake, tmp_path)
    assert printer.health().state is PrinterState.OK
    fake.mode = "offline"
    assert printer.health().state is PrinterState.OFFLINE

    fake.mode = "paper_ok"

    assert printer.health().state is PrinterState.OK
    printed(printer, fake, ticket())
    assert fake.qr_payloads() == [CODE]
    assert fake.connections == 2


def test_one_connection_serves_health_checks_and_jobs(printer: Printer, fake: FakePrinter) -> None:
    assert fake.connections == 0  # nothing is opened until asked

    printer.health()
    printer.health()
    printed(printer, fake, ticket())

    assert fake.connections == 1


def test_connection_closed_by_an_idle_printer_is_replaced_without_reporting_offline(
    printer: Printer, fake: FakePrinter
) -> None:
    assert printer.health().state is PrinterState.OK

    fake.drop_connections()

    assert printer.health().state is PrinterState.OK
    assert fake.connections == 2


def test_status_answers_of_the_fake_read_as_python_escpos_reads_a_real_printer(
    fake: FakePrinter,
) -> None:
    from escpos.printer import Network

    device = Network("127.0.0.1", port=fake.port, timeout=SHORT_TIMEOUT)
    device.open()
    try:
        modes: tuple[tuple[Mode, bool, int], ...] = (
            ("paper_ok", True, 2),
            ("paper_low", True, 1),
            ("paper_out", False, 0),
        )
        for mode, online, paper in modes:
            fake.mode = mode
            assert (device.is_online(), device.paper_status()) == (online, paper), mode
    finally:
        device.close()


# -- receipts -------------------------------------------------------------------


def test_receipt_shows_fees_total_card_exit_time_and_simulated_banner(
    printer: Printer, fake: FakePrinter
) -> None:
    text = printed(printer, fake, receipt(simulated=True))

    lines = text.splitlines()
    assert SIMULATED_BANNER == "SIMULATED PAYMENT - NO MONEY TAKEN"
    assert SIMULATED_BANNER in lines
    assert any(line.startswith("First hour") and line.endswith("$3.00") for line in lines)
    assert any(line.startswith("2 more hours") and line.endswith("$4.00") for line in lines)
    assert any(line.startswith("Total") and line.endswith("$7.00") for line in lines)
    assert any(line.endswith("Visa •••• 4242") for line in lines)
    assert any(line.startswith("Exit by") and line.endswith("Fri 22 Nov 11:20") for line in lines)
    assert "Ticket 42" in text and "RECEIPT" in text
    assert fake.qr_payloads() == []
    assert fake.cuts == 1


def test_receipt_of_a_real_payment_has_no_simulated_banner(
    printer: Printer, fake: FakePrinter
) -> None:
    text = printed(printer, fake, receipt(simulated=False))

    assert "SIMULATED" not in text
    assert "$7.00" in text


def test_reservation_receipt_carries_its_code_as_a_native_qr(
    printer: Printer, fake: FakePrinter
) -> None:
    printed(printer, fake, receipt(code=RESERVATION_CODE))

    assert fake.qr_payloads() == [RESERVATION_CODE]


# -- other device adapters ------------------------------------------------------


def test_file_printer_writes_the_ticket_into_the_device_file(tmp_path: Path) -> None:
    device = tmp_path / "lp0"
    device.touch()
    printer = open_printer(f"file:{device}", tmp_path)

    assert printer.health().state is PrinterState.OK
    assert printer.print_ticket(ticket()) is None
    assert isinstance(printer, FilePrinter)
    printer.close()

    written = FakePrinter()
    written.feed(device.read_bytes())
    assert written.qr_payloads() == [CODE]
    assert "42-ABCDEF" in written.text()
    assert written.cuts == 1


def test_file_printer_with_its_device_missing_is_offline_and_creates_no_file(
    tmp_path: Path,
) -> None:
    device = tmp_path / "lp0"
    printer = open_printer(f"file:{device}", tmp_path)

    assert printer.health().state is PrinterState.OFFLINE
    with pytest.raises(PrinterError):
        printer.print_ticket(ticket())
    assert not device.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_write_failing_mid_job_raises_printer_error_with_offline_health(tmp_path: Path) -> None:
    printer = open_printer("file:/dev/full", tmp_path)

    with pytest.raises(PrinterError) as failed:
        printer.print_ticket(ticket())

    assert str(failed.value) == "The ticket printer failed while printing."
    assert failed.value.health.state is PrinterState.OFFLINE
    assert failed.value.health.detail == "printing failed on /dev/full: no space left on device"


@pytest.mark.parametrize(
    "url",
    ["usb://ffff:fffe", "serial:/dev/ttyLOTKEEPER-NONE", "cups:lotkeeper-no-such-queue"],
)
def test_absent_usb_serial_or_cups_printer_reads_offline_instead_of_raising(
    url: str, tmp_path: Path
) -> None:
    printer = open_printer(url, tmp_path, timeout=SHORT_TIMEOUT)

    health = printer.health()

    assert health.state is PrinterState.OFFLINE
    assert health.detail.startswith("cannot reach")
    with pytest.raises(PrinterError):
        printer.print_ticket(ticket())


# -- preview --------------------------------------------------------------------


def test_preview_saves_a_png_whose_qr_decodes_to_the_code_and_a_text_copy(
    tmp_path: Path,
) -> None:
    printer = open_printer("preview", tmp_path / "printed")

    path = printer.print_ticket(ticket())

    assert path == tmp_path / "printed" / "ticket-42-ABCDEF.png"
    assert [found.text for found in zxingcpp.read_barcodes(Image.open(path))] == [CODE]
    text = path.with_suffix(".txt").read_text(encoding="utf-8")
    for shown in ("42-ABCDEF", "Spot 1A-05", "Level 1", "Fri 22 Nov 21:05", CODE):
        assert shown in text


def test_preview_receipt_is_saved_with_its_banner_and_reservation_qr(tmp_path: Path) -> None:
    printer = open_printer("preview", tmp_path)

    path = printer.print_receipt(receipt(code=RESERVATION_CODE))

    assert path == tmp_path / "receipt-ticket-42.png"
    assert [found.text for found in zxingcpp.read_barcodes(Image.open(path))] == [RESERVATION_CODE]
    text = path.with_suffix(".txt").read_text(encoding="utf-8")
    assert SIMULATED_BANNER in text
    assert "Visa •••• 4242" in text


def test_preview_printer_is_always_healthy(tmp_path: Path) -> None:
    health = open_printer("preview", tmp_path / "not-yet-made").health()

    assert health.state is PrinterState.OK
    assert health.can_print


# -- printer URLs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "attributes"),
    [
        ("preview", PreviewPrinter, {}),
        ("tcp://10.0.0.5", TcpPrinter, {"host": "10.0.0.5", "port": 9100}),
        ("tcp://printer.local:9101", TcpPrinter, {"host": "printer.local", "port": 9101}),
        ("usb://04b8:0202", UsbPrinter, {"vendor_id": 0x04B8, "product_id": 0x0202}),
        ("usb://04B8:0E15?in_ep=81&out_ep=03", UsbPrinter, {"in_ep": 0x81, "out_ep": 0x03}),
        ("serial:/dev/ttyUSB0", SerialPrinter, {"path": "/dev/ttyUSB0", "baudrate": 9600}),
        (
            "serial:/dev/ttyS1?baudrate=19200",
            SerialPrinter,
            {"path": "/dev/ttyS1", "baudrate": 19200},
        ),
        ("file:/dev/usb/lp0", FilePrinter, {"path": "/dev/usb/lp0"}),
        ("file:///dev/usb/lp1", FilePrinter, {"path": "/dev/usb/lp1"}),
        ("cups:TM-T20", CupsPrinter, {"queue": "TM-T20"}),
    ],
)
def test_open_printer_picks_the_adapter_for_each_url_form_without_touching_it(
    url: str, kind: type, attributes: dict[str, object], tmp_path: Path
) -> None:
    # None of these devices exists (nor pyusb, pyserial or pycups, maybe):
    # opening must not reach for them.
    printer = open_printer(url, tmp_path / "printed")

    assert type(printer) is kind
    assert printer.url == url
    for name, value in attributes.items():
        assert getattr(printer, name) == value
    assert not (tmp_path / "printed").exists()


@pytest.mark.parametrize(
    "url",
    [
        "tcp://",
        "tcp://10.0.0.5:99999",
        "tcp://10.0.0.5:9100/queue",
        "usb://zz",
        "usb://04b8:0202?speed=9",
        "foo:bar",
        "printer",
        "serial:",
        "serial:/dev/ttyUSB0?baudrate=fast",
        "file:",
        "cups:",
    ],
)
def test_open_printer_rejects_a_bad_url_in_one_line_naming_it(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as rejected:
        open_printer(url, tmp_path)

    message = str(rejected.value)
    assert repr(url) in message
    assert "\n" not in message


def test_importing_the_printer_module_does_not_load_escpos() -> None:
    probe = (
        "import core.devices.printer, sys\n"
        "assert 'escpos' not in sys.modules, 'escpos'\n"
        # The preview's libraries load only when a preview is drawn, too.
        "assert 'qrcode' not in sys.modules and 'PIL' not in sys.modules, 'qrcode or PIL'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr


# -- booth slips: exit pass, shift report ----------------------------------------


def test_an_exit_pass_prints_its_rows_and_its_code_as_a_qr(
    printer: Printer, fake: FakePrinter, tmp_path: Path
) -> None:
    from core.devices.printer import SlipPrint

    slip = SlipPrint(
        site_name="Lotkeeper demo garage",
        title="EXIT PASS",
        rows=(("Ticket", "42"), ("Plate", "KLX 481"), ("Paid", "$25.00 cash")),
        code=CODE,
        note="Scan at the exit within 15 minutes.",
        name="pass-42",
    )
    assert printer.print_slip(slip) is None
    assert fake.wait_for_cuts(1)
    text = fake.text()
    assert fake.qr_payloads() == [CODE]
    assert "EXIT PASS" in text and "Scan at the exit" in text
    assert any(line.startswith("Plate") and line.endswith("KLX 481") for line in text.splitlines())

    preview = open_printer("preview", tmp_path / "preview", logo=tmp_path / "no-logo.png")
    saved = preview.print_slip(slip)
    assert saved is not None and saved.name == "pass-42.png"
    (read,) = zxingcpp.read_barcodes(Image.open(saved))
    assert read.text == CODE


def test_an_exit_pass_prints_its_short_code_double_size_under_the_qr_as_a_ticket_does(
    printer: Printer, fake: FakePrinter, tmp_path: Path
) -> None:
    from core.devices.printer import SlipPrint

    slip = SlipPrint(
        site_name="Lotkeeper demo garage",
        title="EXIT PASS",
        rows=(("Ticket", "42"), ("Plate", "KLX 481")),
        code=CODE,
        short_code="42-ABCDEF",
        note="Scan the QR or type the code at the exit.",
        name="pass-42",
    )
    assert printer.print_slip(slip) is None
    assert fake.wait_for_cuts(1)

    data = fake.received
    qr_printed = data.index(b"\x1d(k\x03\x001Q0")  # GS ( k fn 81: print the stored symbol
    short = data.index(b"42-ABCDEF")
    assert qr_printed < short < data.index(b"Scan the QR")
    before = data[:short]
    assert before.rindex(b"\x1b!") == before.rindex(DOUBLE_SIZE)
    # The long code is the QR's alone, as on a ticket: no text of it to copy.
    assert fake.qr_payloads() == [CODE]
    assert CODE not in fake.text()

    preview = open_printer("preview", tmp_path / "preview", logo=tmp_path / "no-logo.png")
    saved = preview.print_slip(slip)
    assert saved is not None
    lines = saved.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
    assert lines[lines.index(f"[QR: {CODE}]") + 1].strip() == "42-ABCDEF"


def test_a_slip_on_a_printer_out_of_paper_raises(tmp_path: Path) -> None:
    from core.devices.printer import SlipPrint

    with FakePrinter(mode="paper_out") as fake:
        adapter = quick_printer(fake, tmp_path)
        with pytest.raises(PrinterError, match="out of paper"):
            adapter.print_slip(SlipPrint("Garage", "SHIFT REPORT", (("Entries", "3"),)))
        adapter.close()
        assert fake.cuts == 0


# -- messages in the kiosk's language ------------------------------------------


def test_a_printer_fault_is_a_template_with_the_job_as_its_value(
    printer: Printer, fake: FakePrinter
) -> None:
    fake.mode = "paper_out"

    with pytest.raises(PrinterError) as refused:
        printer.print_receipt(receipt())

    assert str(refused.value) == "The receipt printer is out of paper."
    assert refused.value.template == "The {noun} printer is out of paper."
    assert refused.value.values == {"noun": "receipt"}


def test_a_preview_that_cannot_be_saved_says_which_job(tmp_path: Path) -> None:
    from core.devices.printer import SlipPrint

    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    printer = open_printer("preview", blocked)

    with pytest.raises(PrinterError) as failed:
        printer.print_slip(SlipPrint("Garage", "EXIT PASS", (("Ticket", "42"),)))

    assert str(failed.value) == "The slip could not be saved."
    assert failed.value.health.state is PrinterState.OFFLINE


def test_printer_faults_read_in_spanish_with_the_job_worded(
    fake: FakePrinter, tmp_path: Path
) -> None:
    from kiosk.i18n import error_text, use_language

    printer = quick_printer(fake, tmp_path)
    fake.mode = "paper_out"
    with pytest.raises(PrinterError) as no_paper:
        printer.print_ticket(ticket())
    fake.mode = "silent"
    with pytest.raises(PrinterError) as silent:
        printer.print_receipt(receipt())
    printer.close()
    try:
        use_language("es")
        spanish = [error_text(no_paper.value), error_text(silent.value)]
    finally:
        use_language("en")

    assert spanish == [
        "La impresora se quedó sin papel: no se puede imprimir el ticket.",
        "La impresora no funciona en este momento: no se puede imprimir el recibo.",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "tcp://",
            "Printer URL 'tcp://' names no host: use tcp://HOST[:PORT], e.g. tcp://10.0.0.5:9100.",
        ),
        (
            "usb://04b8:0202?speed=9",
            "Printer URL 'usb://04b8:0202?speed=9' has an unknown option 'speed': "
            "it takes in_ep, out_ep.",
        ),
        (
            "file:/dev/lp0?x=1",
            "Printer URL 'file:/dev/lp0?x=1' has an unknown option 'x': it takes none.",
        ),
        (
            "serial:/dev/ttyUSB0?baudrate=fast",
            "Printer URL 'serial:/dev/ttyUSB0?baudrate=fast' has a bad baudrate: 'fast'.",
        ),
        (
            "serial:",
            "Printer URL 'serial:' names no device: it needs a serial device: serial:/dev/ttyUSB0.",
        ),
    ],
)
def test_a_bad_printer_url_is_named_in_a_template_with_its_values(
    url: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as rejected:
        open_printer(url, tmp_path)

    assert str(rejected.value) == message
    assert rejected.value.values["url"] == repr(url)
    assert repr(url) not in rejected.value.template
