"""`core` must import without any user-interface or device library."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("textual", "rich", "escpos", "stripe", "qrcode")


def test_core_imports_without_ui_or_device_libraries() -> None:
    probe = (
        "import sys\n"
        "import core, core.services, core.site, core.cli, core.config, core.storage.migrate\n"
        "import core.devices.printer, core.devices.gate, core.payments\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
