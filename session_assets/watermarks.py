"""The watermark contract (SPEC §5, §6) as pure functions.

A (scanner, day) partition's watermark is the keyset `(end, session_id)` of the
last session its sweeps handled, stored in the metadata of its latest
successful materialization together with the as-of time of that sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

from session_assets.days import SETTLE, day_start
from session_assets.run_context import metadata_time

# SDKs rotate session ids after 24 h; 2 h more for clock skew.
LOOKBACK = timedelta(hours=26)
# How long after the watermark passed it a session with late events is still considered.
LATENESS_HORIZON = timedelta(hours=48)


@dataclass(frozen=True, order=True)
class Watermark:
    end: datetime
    session_id: str = ""  # "" sorts before every real (1..128 character) id
    as_of: datetime | None = None  # as-of time of the sweep that wrote it

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.end, self.session_id)

    def metadata(self) -> dict[str, Any]:
        return {"watermark_end": self.end, "watermark_session_id": self.session_id}

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any]) -> Watermark | None:
        end = metadata_time(values.get("watermark_end"))
        if end is None:
            return None
        return cls(end, str(values.get("watermark_session_id") or ""), metadata_time(values.get("as_of")))


@dataclass(frozen=True)
class StartingPoint:
    watermark: Watermark
    source: str  # own partition | previous day | scanner start | backfill


def starting_point(
    day: date,
    scanner_start: datetime,
    own: Watermark | None,
    previous_day: Watermark | None,
    backfill: bool,
) -> StartingPoint:
    """Where a sweep of (scanner, day) resumes.

    Never before the scanner's start (which `enable --from-now` moves forward).
    A backfill recomputes the partition from the day start and dedupes against
    what sweeps already wrote.
    """
    floor = Watermark(scanner_start)
    if backfill:
        return StartingPoint(max(Watermark(day_start(day)), floor, key=_key), "backfill")
    for found, source in ((own, "own partition"), (previous_day, "previous day")):
        if found is not None:
            if _key(found) >= _key(floor):
                return StartingPoint(found, source)
            return StartingPoint(Watermark(floor.end, "", found.as_of), "scanner start")
    return StartingPoint(floor, "scanner start")


def frontier(day: date, as_of: datetime, rollups_covered_until: datetime | None) -> datetime | None:
    """Settle cutoff: `min(day end, min(as_of, covered_until) - settle)`; None without rollups."""
    if rollups_covered_until is None:
        return None
    day_end = day_start(day) + timedelta(days=1)
    return min(day_end, min(as_of, rollups_covered_until) - SETTLE)


@dataclass(frozen=True)
class Window:
    """The eligibility bounds of one sweep (SPEC §6)."""

    watermark: Watermark
    frontier: datetime
    min_start: datetime
    late_since: datetime | None
    late_floor: datetime
    late_min_start: datetime

    @property
    def window_start(self) -> datetime:
        """Earliest session start any branch accepts."""
        return min(self.min_start, self.late_min_start) if self.late_since else self.min_start

    def params(self) -> dict[str, Any]:
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        return {
            "watermark_end": self.watermark.end,
            "watermark_session_id": self.watermark.session_id,
            "window_start": self.window_start,
            "window_end": self.frontier,
            "min_start": self.min_start,
            "late_enabled": self.late_since is not None,
            "late_since": self.late_since or epoch,
            "late_floor": self.late_floor,
            "late_min_start": self.late_min_start,
        }


def window(watermark: Watermark, frontier_at: datetime, scanner_start: datetime) -> Window:
    """Bounds of one sweep; late data is never looked for before the scanner's start."""
    late_floor = max(watermark.end - LATENESS_HORIZON, scanner_start)
    return Window(
        watermark=watermark,
        frontier=frontier_at,
        min_start=watermark.end - LOOKBACK,
        late_since=watermark.as_of,
        late_floor=late_floor,
        late_min_start=late_floor - LOOKBACK,
    )


def next_watermark(
    previous: Watermark,
    frontier_at: datetime | None,
    last_handled: tuple[datetime, str] | None,
    walk_finished: bool,
    as_of: datetime,
) -> Watermark:
    """The keyset to store after a sweep; it never moves backwards.

    A finished walk handled every eligible session up to the frontier, so the
    watermark moves to the frontier even when nothing qualified. A walk stopped
    early (quota) stops at the last session it handled, so nothing is skipped.
    """
    best = previous.key
    if last_handled is not None:
        best = max(best, last_handled)
    if walk_finished and frontier_at is not None:
        best = max(best, (frontier_at, ""))
    return Watermark(best[0], best[1], as_of)


def is_complete(day: date, frontier_at: datetime | None, walk_finished: bool) -> bool:
    return walk_finished and frontier_at is not None and frontier_at >= day_start(day) + timedelta(days=1)


def _key(w: Watermark) -> tuple[datetime, str]:
    return w.key
