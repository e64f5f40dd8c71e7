"""UTC days and when they settle: shared by the rollups, the watermarks and the sensor."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

# A session is over after 30 min of inactivity; events reach ClickHouse within
# 5 min more. Until then a session (or a day) may still grow (SPEC §6).
SETTLE = timedelta(minutes=35)
# An event is visible in the events table at most this long after its `inserted_at`
# stamp (a loader or async insert stamps a whole batch when it starts): every
# incremental read starts that much before the coverage it continues from.
VISIBILITY_LAG = timedelta(minutes=5)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def day_end(day: date) -> datetime:
    return day_start(day) + timedelta(days=1)


def is_complete(day: date, as_of: datetime) -> bool:
    """A day is complete once it is over and settled as of `as_of`."""
    return as_of >= day_end(day) + SETTLE
