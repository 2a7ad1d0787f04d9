"""Lot layout files and loading them into a site."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SiteFactory, make_layout

from core import services as lk
from core.domain import Size
from core.errors import LayoutError
from core.layout import parse_layout, read_layout
from core.site import Site


def test_layout_file_with_rows_and_single_spots(tmp_path: Path) -> None:
    path = tmp_path / "lot.toml"
    path.write_text(
        'name = "Corner lot"\n'
        '[[levels]]\nname = "Ground"\n'
        '[[levels.rows]]\nprefix = "G"\ncount = 3\nsize = "small"\nev = true\n'
        '[[levels.spots]]\nlabel = "G-VAN"\nsize = "large"\naccessible = true\n'
    )
    layout = read_layout(path)
    assert layout.name == "Corner lot"
    assert [(s.label, s.size, s.ev, s.accessible) for s in layout.spots] == [
        ("G01", Size.SMALL, True, False),
        ("G02", Size.SMALL, True, False),
        ("G03", Size.SMALL, True, False),
        ("G-VAN", Size.LARGE, False, True),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"levels": []}, "at least one"),
        (
            {"levels": [{"name": "A", "rows": [{"prefix": "A", "count": 2, "size": "huge"}]}]},
            r"levels\[0\].rows\[0\].size: 'huge' is not small, medium or large",
        ),
        (
            {"levels": [{"name": "A", "spots": [{"label": "X", "size": "small"}] * 2}]},
            "'X' is already defined",
        ),
        (
            {"levels": [{"name": "A", "rows": [{"prefix": "A", "count": 0, "size": "small"}]}]},
            "count",
        ),
        ({"levels": [{"name": "A", "colour": "red"}]}, "unknown key 'colour'"),
        ({"levels": [{"name": "A", "spots": [{"label": "a b", "size": "small"}]}]}, "label"),
    ],
)
def test_bad_layout_is_refused_naming_the_entry(data: dict[str, object], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        parse_layout(data, "lot.toml")


def test_missing_or_broken_file_gets_one_line(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="does not exist"):
        read_layout(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("levels = [")
    with pytest.raises(LayoutError, match="not valid TOML"):
        read_layout(broken)


def test_loading_is_idempotent(site: Site) -> None:
    layout = make_layout(small=2, medium=3, large=1)
    result = lk.load_layout(site, layout)
    assert not result.changed and result.unchanged == 6
    loaded = [e for e in lk.recent_events(site).events if e.kind == "lot_loaded"]
    assert len(loaded) == 1


def test_update_adds_grows_and_removes_free_spots(site: Site) -> None:
    result = lk.load_layout(site, make_layout(small=1, medium=3, large=3))
    assert result.added == ("1L02", "1L03")
    assert result.removed == ("1S02",)
    assert lk.availability(site).total == 7


def test_removed_spot_comes_back(site: Site) -> None:
    lk.load_layout(site, make_layout(small=1, medium=3, large=1))
    result = lk.load_layout(site, make_layout(small=2, medium=3, large=1))
    assert "1S02" in result.updated and result.added == () and result.removed == ()
    assert lk.availability(site).for_size("small").total == 2


@pytest.mark.parametrize(
    ("layout", "problem"),
    [
        (make_layout(small=2, medium=3), "1L01 would be removed"),
        (
            parse_layout(
                {
                    "levels": [
                        {
                            "name": "Level 1",
                            "rows": [
                                {"prefix": "1S", "count": 2, "size": "small"},
                                {"prefix": "1M", "count": 3, "size": "medium"},
                                {"prefix": "1L", "count": 1, "size": "small"},
                            ],
                        }
                    ]
                }
            ),
            "1L01 would shrink",
        ),
    ],
)
def test_spot_with_a_car_cannot_be_removed_or_shrunk(
    site: Site, layout: object, problem: str
) -> None:
    ticket = lk.enter(site, "large")
    with pytest.raises(LayoutError, match=problem):
        lk.load_layout(site, layout)  # type: ignore[arg-type]
    assert lk.availability(site).total == 6  # nothing changed
    lk.exit(site, ticket.code)
    assert lk.load_layout(site, layout).changed  # type: ignore[arg-type]


def test_cli_style_load_of_a_file(make_site: SiteFactory, tmp_path: Path) -> None:
    site = make_site()
    path = tmp_path / "lot.toml"
    path.write_text(
        '[[levels]]\nname = "A"\n[[levels.rows]]\nprefix = "A"\ncount = 4\nsize = "medium"\n'
    )
    assert lk.load_layout_file(site, path).added == ("A01", "A02", "A03", "A04")
