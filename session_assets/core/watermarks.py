"""The watermark contract (SPEC §5, §6) as pure functions.

A (scanner, day) partition's watermark is the keyset `(end, session_id)` of the
last session its sweeps handled, stored in the metadata of its latest
successful materialization, together with `seen_until`: the time up to which
every inserted event was visible to the sweep that wrote it (the rollups'
coverage, never later than its as-of time). A session whose events arrived after
`seen_until` is looked for again, behind the watermark, by the next sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from session_assets.core.days import SETTLE, VISIBILITY_LAG, day_end, day_start

# SDKs rotate session ids after 24 h; 2 h more for clock skew.
LOOKBACK = timedelta(hours=26)
# How long after the watermark passed it a session with late events is still considered.
LATENESS_HORIZON = timedelta(hours=48)


@dataclass(frozen=True)
class Watermark:
    end: datetime
    session_id: str = ""  # "": no session handled at `end` (compared on `end` alone, SPEC §6.1)
    seen_until: datetime | None = None  # None: nothing seen yet, so nothing can be late

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.end, self.session_id)


def passed(key: tuple[datetime, str], watermark: Watermark) -> bool:
    """Whether the watermark has passed a session's keyset (SPEC §6.1, the complement of "after it")."""
    if watermark.session_id == "":
        return key[0] <= watermark.end
    return key <= watermark.key


@dataclass(frozen=True)
class StartingPoint:
    watermark: Watermark
    source: str  # own partition | previous day | earlier day | scanner start | backfill


def starting_point(
    day: date,
    scanner_start: datetime,
    own: Watermark | None,
    previous_day: Watermark | None,
    backfill: bool,
    earlier: Watermark | None = None,
) -> StartingPoint:
    """Where a sweep of (scanner, day) resumes.

    Its own partition's watermark, else the previous day's, else the newest of
    the scanner's earlier days (a scanner re-enabled after a long pause resumes
    where it stopped), else the scanner's start. Never before the scanner's start
    (which `enable --from-now` moves forward). A backfill recomputes the partition
    from the day start and dedupes against what sweeps already wrote.
    """
    floor = Watermark(scanner_start)
    if backfill:
        return StartingPoint(max(Watermark(day_start(day)), floor, key=_end), "backfill")
    for found, source in ((own, "own partition"), (previous_day, "previous day"), (earlier, "earlier day")):
        if found is not None:
            if found.key >= floor.key:
                return StartingPoint(found, source)
            return StartingPoint(Watermark(floor.end, "", found.seen_until), "scanner start")
    return StartingPoint(floor, "scanner start")


@dataclass(frozen=True)
class Window:
    """The eligibility bounds of one sweep (SPEC §6), before its frontier is known."""

    watermark: Watermark
    min_start: datetime
    late_since: datetime | None
    late_floor: datetime
    late_min_start: datetime

    @property
    def window_start(self) -> datetime:
        """Earliest session start any branch accepts."""
        return min(self.min_start, self.late_min_start) if self.late_since else self.min_start

    def read_days(self, as_of: datetime) -> list[date]:
        """The rollup days a sweep as of `as_of` reads.

        From the day before the earliest accepted start (a session that began
        earlier then shows its true, too-early start and is excluded, never
        truncated) to the as-of day: a session's later days are read too, so a
        session that paused before the frontier and went on after it (across
        midnight, say) shows its true end and is not taken for finished.
        """
        first = self.window_start.date() - timedelta(days=1)
        last = max(first, as_of.date())
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def params(self, frontier_at: datetime) -> dict[str, Any]:
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        return {
            "watermark_end": self.watermark.end,
            "watermark_session_id": self.watermark.session_id,
            "window_start": self.window_start,
            "window_end": frontier_at,
            "min_start": self.min_start,
            "late_enabled": self.late_since is not None,
            "late_since": self.late_since or epoch,
            "late_floor": self.late_floor,
            "late_min_start": self.late_min_start,
        }


def window(watermark: Watermark, scanner_start: datetime) -> Window:
    """Bounds of one sweep; late data is never looked for before the scanner's start.

    Late means inserted after what the previous sweep saw, less the visibility
    lag: an event stamped just before it may only have become visible after it.
    """
    late_floor = max(watermark.end - LATENESS_HORIZON, scanner_start)
    return Window(
        watermark=watermark,
        min_start=watermark.end - LOOKBACK,
        late_since=watermark.seen_until - VISIBILITY_LAG if watermark.seen_until is not None else None,
        late_floor=late_floor,
        late_min_start=late_floor - LOOKBACK,
    )


def seen_until(as_of: datetime, rollups_coverage: datetime | None) -> datetime | None:
    """What a sweep sees: events inserted up to the rollups' coverage, never after its as-of time."""
    return None if rollups_coverage is None else min(as_of, rollups_coverage)


def frontier(day: date, seen: datetime | None) -> datetime | None:
    """Settle cutoff: `min(day end, min(as_of, covered_until) - settle)`; None without rollups."""
    if seen is None:
        return None
    return min(day_end(day), seen - SETTLE)


def next_watermark(
    previous: Watermark,
    frontier_at: datetime | None,
    last_handled: tuple[datetime, str] | None,
    stopped_at: tuple[datetime, str] | None,
    seen: datetime | None,
) -> Watermark:
    """The watermark to store after a sweep; its keyset never moves backwards.

    A finished walk (`stopped_at` None) handled every eligible session up to the
    frontier, so the keyset moves to the frontier even when nothing qualified.
    A walk stopped by quota stops at the last session it handled. What it saw
    moves on too, except when the walk stopped at a session the watermark had
    already passed (a late one): that session must still count as late next time.
    """
    if frontier_at is None or seen is None:
        return previous  # nothing was read: nothing moves, not even what was seen
    best = previous.key
    if last_handled is not None:
        best = max(best, last_handled)
    if stopped_at is None:
        best = max(best, (frontier_at, ""))
    keep_late_mark = stopped_at is not None and passed(stopped_at, previous) and previous.seen_until is not None
    return Watermark(best[0], best[1], previous.seen_until if keep_late_mark else max(seen, previous.seen_until or seen))


def is_complete(day: date, frontier_at: datetime | None, walk_finished: bool) -> bool:
    return walk_finished and frontier_at is not None and frontier_at >= day_end(day)


def _end(w: Watermark) -> datetime:
    return w.end
