"""What a run knows about itself: its as-of time, whether it is a backfill, and
the metadata of a partition's last good materialization (the watermark store)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

import dagster as dg

AS_OF_TAG = "session_assets/as_of"
BACKFILL_TAG = "dagster/backfill"
# How far ahead of this machine's clock an as-of time may be (clocks of hosts drift).
MAX_CLOCK_SKEW = timedelta(minutes=2)


class BadRunTag(ValueError):
    """A run tag this project reads holds a value it cannot use."""


def parse_as_of(tags: Mapping[str, str], now: datetime | None = None) -> datetime:
    """The run's as-of time T: the `session_assets/as_of` tag, else the clock (UTC).

    A T later than the clock is refused: a sweep as of a time that has not come
    yet would mark days complete and move watermarks past sessions still to happen.
    """
    clock = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    raw = tags.get(AS_OF_TAG)
    if not raw:
        return clock
    try:
        value = parse_utc(raw)
    except ValueError:
        raise BadRunTag(f"run tag {AS_OF_TAG}={raw!r} is not an ISO 8601 time, e.g. 2026-11-23T10:05:00Z") from None
    return not_in_the_future(value, f"run tag {AS_OF_TAG}={raw!r}", clock)


def parse_utc(text: str) -> datetime:
    """An ISO 8601 time (`Z` or an offset; none means UTC) as a UTC datetime; ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def not_in_the_future(as_of: datetime, what: str, now: datetime | None = None) -> datetime:
    """`as_of`, or a clear error when it is later than the clock (plus a small skew)."""
    clock = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if as_of > clock + MAX_CLOCK_SKEW:
        raise BadRunTag(
            f"{what} is {as_of - clock} ahead of the clock ({clock.isoformat(timespec='seconds')}): "
            "an as-of time in the future would pass sessions that have not happened yet"
        )
    return as_of


def is_backfill(tags: Mapping[str, str]) -> bool:
    return BACKFILL_TAG in tags


def latest_materialization(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str
) -> tuple[dict[str, Any], str] | None:
    """(metadata values, run id) of the partition's newest materialization, or None.

    Reads one bounded record (`fetch_materializations` with an explicit partition),
    so the cost does not grow with history.
    """
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    )
    if not result.records:
        return None
    record = result.records[0]
    materialization = record.asset_materialization
    if materialization is None:
        return None
    values = metadata_values(materialization.metadata)
    return values, record.run_id


def latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """{partition key: metadata values} of each partition's newest materialization.

    Two bounded queries whatever the history: the newest storage id of each named
    partition, then those records.
    """
    keys = set(partition_keys)
    if not keys:
        return {}
    latest = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=keys
    )
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(latest.values())), limit=len(latest)
    ).records
    by_id = {r.storage_id: r for r in records}
    out = {}
    for key, storage_id in latest.items():
        record = by_id.get(storage_id)
        if record is not None and record.asset_materialization is not None:
            out[key] = metadata_values(record.asset_materialization.metadata)
    return out


def metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """{key: plain value} of a materialization's metadata (timestamps as float seconds); plain values pass."""
    return {key: entry.value if isinstance(entry, dg.MetadataValue) else entry for key, entry in metadata.items()}


def metadata_time(value: Any) -> datetime | None:
    """A timestamp stored with `MetadataValue.timestamp` (float seconds) as a UTC datetime."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    return parse_utc(str(value))
