"""How far the rollups are known to be whole: the coverage a sweep may rely on.

A materialization of rollup day X as of T records:
- `covered_until` T: every event of day X inserted up to T is rolled up;
- `late_covered_until` T and `late_covered_days`: its late pass re-rolled the
  earlier days listed (those of the 7 before X that had been rolled), so every
  event of them inserted up to T is rolled up too.

A day is covered up to the newest of its own `covered_until` and the
`late_covered_until` of any later day's record that lists it. A day never
rolled is not covered at all, whatever a later late pass says.

All of this holds under one stated assumption: an event is visible in the
events table at most VISIBILITY_LAG after its `inserted_at` stamp (a loader or
async insert stamps a whole batch when it starts). Every incremental read, of
the rollups and of the sweeps' late pass, starts that much before the coverage
it continues from.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping

from session_assets.core.days import VISIBILITY_LAG, is_complete
from session_assets.core.records import RollupRecord

__all__ = ["VISIBILITY_LAG", "RollupRecord", "after_rollups", "coverage", "day_coverage", "late_horizon", "missing_days"]
# How far back a rollup run re-rolls late events of earlier days. Older late
# data needs a hand backfill; the bound keeps the scan of `inserted_at` small.
LATE_HORIZON_DAYS = 7


def day_coverage(day: date, records: Mapping[date, RollupRecord]) -> datetime | None:
    """Up to when every event of `day` is rolled up; None if the day was never rolled."""
    own = records.get(day)
    if own is None:
        return None
    best = own.covered_until
    for later, record in records.items():
        if later > day and day in record.late_covered_days and record.late_covered_until is not None:
            best = max(best, record.late_covered_until)
    return best


def coverage(days: Iterable[date], records: Mapping[date, RollupRecord], first_day: date) -> datetime | None:
    """The coverage of a range of days: the oldest of theirs, None if any was never rolled.

    Days before the partitions' first day hold no data by definition and count as covered.
    """
    found = [day_coverage(d, records) for d in days if d >= first_day]
    if any(c is None for c in found):
        return None
    return min(found) if found else None  # type: ignore[type-var]


def missing_days(days: Iterable[date], records: Mapping[date, RollupRecord], first_day: date) -> list[date]:
    return [d for d in days if d >= first_day and d not in records]


def late_horizon(day: date, first_day: date) -> list[date]:
    """The earlier days a rollup run of `day` re-rolls late events for."""
    first = max(first_day, day - timedelta(days=LATE_HORIZON_DAYS))
    return [first + timedelta(days=n) for n in range((day - first).days)]


def after_rollups(
    records: Mapping[date, RollupRecord], rolled: Iterable[date], as_of: datetime, first_day: date
) -> dict[date, RollupRecord]:
    """The records as they will read once rollup runs of `rolled` days as of `as_of`
    succeed, oldest day first (the order the sensor requests them in)."""
    out = dict(records)
    for day in sorted(rolled):
        late_days = frozenset(d for d in late_horizon(day, first_day) if d in out)
        out[day] = replace(
            out.get(day, RollupRecord(as_of)),
            covered_until=as_of,
            complete=is_complete(day, as_of),
            late_covered_until=as_of,
            late_covered_days=late_days,
        )
    return out
