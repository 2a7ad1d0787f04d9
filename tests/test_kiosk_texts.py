"""Every text the kiosk shows is translated: a string passed to `_()` in the
kiosk's code with no Spanish entry would show English to a Spanish reader."""

from __future__ import annotations

import ast
from pathlib import Path

import kiosk
from kiosk.i18n import LOCALE_DIR, PoTranslations

KIOSK_DIR = Path(kiosk.__file__).parent


def texts_in_code() -> set[str]:
    found = set()
    for path in KIOSK_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_", "N_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def test_every_kiosk_text_has_a_spanish_translation() -> None:
    catalog = PoTranslations(LOCALE_DIR / "es.po")
    texts = texts_in_code()
    assert len(texts) > 50  # the scan finds the kiosk's texts at all
    missing = sorted(t for t in texts if t not in catalog)
    assert missing == []


def test_translations_keep_every_placeholder() -> None:
    catalog = PoTranslations(LOCALE_DIR / "es.po")
    for text in texts_in_code():
        translated = catalog.gettext(text)
        names = {part.split("}")[0] for part in text.split("{")[1:]}
        assert names == {part.split("}")[0] for part in translated.split("{")[1:]}, text
