"""Loading a lot layout into a site: add, update and remove spots by label,
idempotently, never stranding a car or a booking."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.domain import EventKind, LayoutResult
from core.errors import LayoutError
from core.layout import LotLayout, SpotSpec, read_layout
from core.services.claims import spots_with_live_claims
from core.services.events import record_event
from core.site import Site
from core.storage.database import Conflict, rows_touched
from core.storage.models import Spot

_FIELDS = ("level", "level_order", "position", "size", "accessible", "ev", "out_of_service")


def _values(spec: SpotSpec) -> dict[str, object]:
    return {
        "level": spec.level,
        "level_order": spec.level_order,
        "position": spec.position,
        "size": int(spec.size),
        "accessible": spec.accessible,
        "ev": spec.ev,
        "out_of_service": spec.out_of_service,
    }


def _problem(spot: Spot, spec: SpotSpec | None) -> str | None:
    """Why this change would strand a live claim on the spot, if it would."""
    if spec is None:
        return f"{spot.label} would be removed"
    if int(spec.size) < spot.size:
        return f"{spot.label} would shrink"
    if spec.out_of_service and not spot.out_of_service:
        return f"{spot.label} would go out of service"
    return None


def load_layout(site: Site, layout: LotLayout, source: str = "") -> LayoutResult:
    """Make the site's spots match `layout`. Spots are matched by label; a
    spot missing from the layout is retired (kept for history). Refused with
    `LayoutError`, changing nothing, if a spot that has a car, hold or
    reservation would be removed, shrunk or put out of service."""

    def work(session: Session) -> LayoutResult:
        now = site.clock.now()
        # Spots (with versions) first, then claims: a claim added in between
        # bumped its spot's version, and the conditional update below fails.
        existing = {
            s.label: s for s in session.scalars(select(Spot).where(Spot.site_id == site.id))
        }
        claimed = spots_with_live_claims(session, site.id, now)
        wanted = {spec.label: spec for spec in layout.spots}
        added: list[str] = []
        updated: list[str] = []
        removed: list[str] = []
        problems: list[str] = []
        changes: list[tuple[Spot, dict[str, object]]] = []
        for label, spot in existing.items():
            spec = wanted.get(label)
            if spec is None and spot.removed:
                continue
            values: dict[str, object] = _values(spec) if spec is not None else {"removed": True}
            if spec is not None and spot.removed:
                values["removed"] = False
            if all(getattr(spot, key) == value for key, value in values.items()):
                continue
            if spot.id in claimed and (problem := _problem(spot, spec)):
                problems.append(problem)
            changes.append((spot, values))
            (removed if spec is None else updated).append(label)
        if problems:
            shown = "; ".join(problems[:5])
            if len(problems) > 5:
                shown += f"; and {len(problems) - 5} more"
            raise LayoutError(
                "Layout not applied: these spots have a car or a booking: {shown}. "
                "Move or end those first.",
                shown=shown,
            )
        for spot, values in changes:
            touched = session.execute(
                update(Spot)
                .where(Spot.id == spot.id, Spot.version == spot.version)
                .values(version=Spot.version + 1, **values)
                .execution_options(synchronize_session=False)
            )
            if rows_touched(touched) != 1:
                raise Conflict(f"spot {spot.label} changed while loading the layout")
        for label, spec in wanted.items():
            if label not in existing:
                session.add(
                    Spot(site_id=site.id, label=label, version=0, removed=False, **_values(spec))
                )
                added.append(label)
        unchanged = len(wanted) - len(added) - len(updated)
        result = LayoutResult(tuple(added), tuple(updated), tuple(removed), unchanged)
        if result.changed:
            record_event(
                session,
                site.id,
                now,
                EventKind.LOT_LOADED,
                f"Layout '{layout.name}' loaded: {len(added)} added, {len(updated)} updated, "
                f"{len(removed)} removed",
                source=source,
                data={"added": len(added), "updated": len(updated), "removed": len(removed)},
            )
        return result

    result = site.db.write(work)
    site.forget_spots()
    return result


def load_layout_file(site: Site, path: str | Path, source: str = "") -> LayoutResult:
    """Read, validate and load a layout file (see `core.layout`)."""
    return load_layout(site, read_layout(path), source=source)
