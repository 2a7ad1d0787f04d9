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
            raise LayoutError("{where}.{flag}: must be true or false", where=where, flag=flag)
        flags[flag] = value
    return flags


def _size(where: str, table: dict[str, Any]) -> Size:
    try:
        return Size.parse(table.get("size", ""))
    except InvalidInput:
        raise LayoutError(
            "{where}.size: {size!r} is not small, medium or large",
            where=where,
            size=table.get("size"),
        ) from None


def _check_keys(where: str, table: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise LayoutError("{where}: must be a table", where=where)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise LayoutError("{where}: unknown key {key!r}", where=where, key=unknown[0])
    return table


def parse_layout(data: dict[str, Any], source: str = "layout") -> LotLayout:
    """Validate a decoded layout; raise `LayoutError` naming the bad entry."""
    _check_keys(source, data, {"name", "levels"})
    levels = data.get("levels")
    if not isinstance(levels, list) or not levels:
        raise LayoutError("{source}: needs at least one [[levels]] table", source=source)
    spots: list[SpotSpec] = []
    seen: dict[str, str] = {}
    position = 0

    def add(
        where: str, label: str, level: str, order: int, size: Size, flags: dict[str, bool]
    ) -> None:
        nonlocal position
        if not _LABEL.match(label):
            raise LayoutError(
                "{where}: spot label {label!r} must be 1-32 letters, digits, . _ -",
                where=where,
                label=label,
            )
        if label in seen:
            raise LayoutError(
                "{where}: spot {label!r} is already defined at {at}",
                where=where,
                label=label,
                at=seen[label],
            )
        seen[label] = where
        position += 1
        spots.append(SpotSpec(label, level, order, position, size, **flags))

    level_names: set[str] = set()
    for order, level in enumerate(levels):
        where = f"{source}: levels[{order}]"
        _check_keys(where, level, {"name", "rows", "spots"})
        name = level.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 32:
            raise LayoutError(
                "{where}.name: each level needs a name of 1-32 characters", where=where
            )
        if name in level_names:
            raise LayoutError("{where}.name: level {name!r} appears twice", where=where, name=name)
        level_names.add(name)
        for index, row in enumerate(level.get("rows", [])):
            row_where = f"{where}.rows[{index}]"
            _check_keys(row_where, row, {"prefix", "count", "start", "size", *_FLAGS})
            prefix, count, start = row.get("prefix"), row.get("count"), row.get("start", 1)
            if not isinstance(prefix, str) or not prefix:
                raise LayoutError(
                    "{row_where}.prefix: needs a text prefix such as '1A'", row_where=row_where
                )
            if not isinstance(count, int) or not 1 <= count <= 2000:
                raise LayoutError(
                    "{row_where}.count: needs a whole number from 1 to 2000", row_where=row_where
                )
            if not isinstance(start, int) or start < 0:
                raise LayoutError(
                    "{row_where}.start: needs a whole number >= 0", row_where=row_where
                )
            size, flags = _size(row_where, row), _flags(row_where, row)
            digits = max(2, len(str(start + count - 1)))
            for number in range(start, start + count):
                add(row_where, f"{prefix}{number:0{digits}d}", name, order, size, flags)
        for index, spot in enumerate(level.get("spots", [])):
            spot_where = f"{where}.spots[{index}]"
            _check_keys(spot_where, spot, {"label", "size", *_FLAGS})
            label = spot.get("label")
            if not isinstance(label, str):
                raise LayoutError(
                    "{spot_where}.label: each spot needs a label", spot_where=spot_where
                )
            add(spot_where, label, name, order, _size(spot_where, spot), _flags(spot_where, spot))
    if not spots:
        raise LayoutError("{source}: the layout has no spots", source=source)
    name = data.get("name", "Lot")
    if not isinstance(name, str):
        raise LayoutError("{source}.name: must be text", source=source)
    return LotLayout(name, tuple(spots))


def read_layout(path: str | Path) -> LotLayout:
    """Read and validate a layout file; raise `LayoutError` with one clear line."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise LayoutError("layout file {path} does not exist", path=path) from None
    except OSError as exc:
        raise LayoutError(
            "cannot read layout file {path}: {reason}", path=path, reason=exc.strerror
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(
            "layout file {path} is not valid TOML: {reason}", path=path, reason=exc
        ) from None
    return parse_layout(data, path.name)
