"""Lot layout files (`assets/lot.toml`): levels, and the spots on each level,
written one by one or as numbered rows.

    name = "Demo garage"
    [[levels]]
    name = "Level 1"
    [[levels.rows]]          # 1A01 .. 1A25
    prefix = "1A"
    count = 25
    size = "small"
    [[levels.spots]]         # one spot
    label = "1X01"
    size = "large"
    accessible = true
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.domain import Size
from core.errors import InvalidInput, LayoutError

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_FLAGS = ("accessible", "ev", "out_of_service")


@dataclass(frozen=True)
class SpotSpec:
    label: str
    level: str
    level_order: int
    position: int
    size: Size
    accessible: bool = False
    ev: bool = False
    out_of_service: bool = False


@dataclass(frozen=True)
class LotLayout:
    name: str
    spots: tuple[SpotSpec, ...]

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.level for s in self.spots))


def _flags(where: str, table: dict[str, Any]) -> dict[str, bool]:
    flags = {}
    for flag in _FLAGS:
        value = table.get(flag, False)
        if not isinstance(value, bool):
            raise LayoutError(f"{where}.{flag}: must be true or false")
        flags[flag] = value
    return flags


def _size(where: str, table: dict[str, Any]) -> Size:
    try:
        return Size.parse(table.get("size", ""))
    except InvalidInput:
        raise LayoutError(
            f"{where}.size: {table.get('size')!r} is not small, medium or large"
        ) from None


def _check_keys(where: str, table: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise LayoutError(f"{where}: must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise LayoutError(f"{where}: unknown key {unknown[0]!r}")
    return table


def parse_layout(data: dict[str, Any], source: str = "layout") -> LotLayout:
    """Validate a decoded layout; raise `LayoutError` naming the bad entry."""
    _check_keys(source, data, {"name", "levels"})
    levels = data.get("levels")
    if not isinstance(levels, list) or not levels:
        raise LayoutError(f"{source}: needs at least one [[levels]] table")
    spots: list[SpotSpec] = []
    seen: dict[str, str] = {}
    position = 0

    def add(
        where: str, label: str, level: str, order: int, size: Size, flags: dict[str, bool]
    ) -> None:
        nonlocal position
        if not _LABEL.match(label):
            raise LayoutError(f"{where}: spot label {label!r} must be 1-32 letters, digits, . _ -")
        if label in seen:
            raise LayoutError(f"{where}: spot {label!r} is already defined at {seen[label]}")
        seen[label] = where
        position += 1
        spots.append(SpotSpec(label, level, order, position, size, **flags))

    level_names: set[str] = set()
    for order, level in enumerate(levels):
        where = f"{source}: levels[{order}]"
        _check_keys(where, level, {"name", "rows", "spots"})
        name = level.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 32:
            raise LayoutError(f"{where}.name: each level needs a name of 1-32 characters")
        if name in level_names:
            raise LayoutError(f"{where}.name: level {name!r} appears twice")
        level_names.add(name)
        for index, row in enumerate(level.get("rows", [])):
            row_where = f"{where}.rows[{index}]"
            _check_keys(row_where, row, {"prefix", "count", "start", "size", *_FLAGS})
            prefix, count, start = row.get("prefix"), row.get("count"), row.get("start", 1)
            if not isinstance(prefix, str) or not prefix:
                raise LayoutError(f"{row_where}.prefix: needs a text prefix such as '1A'")
            if not isinstance(count, int) or not 1 <= count <= 2000:
                raise LayoutError(f"{row_where}.count: needs a whole number from 1 to 2000")
            if not isinstance(start, int) or start < 0:
                raise LayoutError(f"{row_where}.start: needs a whole number >= 0")
            size, flags = _size(row_where, row), _flags(row_where, row)
            digits = max(2, len(str(start + count - 1)))
            for number in range(start, start + count):
                add(row_where, f"{prefix}{number:0{digits}d}", name, order, size, flags)
        for index, spot in enumerate(level.get("spots", [])):
            spot_where = f"{where}.spots[{index}]"
            _check_keys(spot_where, spot, {"label", "size", *_FLAGS})
            label = spot.get("label")
            if not isinstance(label, str):
                raise LayoutError(f"{spot_where}.label: each spot needs a label")
            add(spot_where, label, name, order, _size(spot_where, spot), _flags(spot_where, spot))
    if not spots:
        raise LayoutError(f"{source}: the layout has no spots")
    name = data.get("name", "Lot")
    if not isinstance(name, str):
        raise LayoutError(f"{source}.name: must be text")
    return LotLayout(name, tuple(spots))


def read_layout(path: str | Path) -> LotLayout:
    """Read and validate a layout file; raise `LayoutError` with one clear line."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise LayoutError(f"layout file {path} does not exist") from None
    except OSError as exc:
        raise LayoutError(f"cannot read layout file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(f"layout file {path} is not valid TOML: {exc}") from None
    return parse_layout(data, path.name)
