"""What a run knows about itself: its as-of time, whether it is a backfill, and
the metadata of a partition's last good materialization (the watermark store)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

import dagster as dg

AS_OF_TAG = "session_assets/as_of"
BACKFILL_TAG = "dagster/backfill"


class BadRunTag(ValueError):
    """A run tag this project reads holds a value it cannot use."""


def parse_as_of(tags: Mapping[str, str], now: datetime | None = None) -> datetime:
    """The run's as-of time T: the `session_assets/as_of` tag, else the clock (UTC)."""
    raw = tags.get(AS_OF_TAG)
    if not raw:
        return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRunTag(f"run tag {AS_OF_TAG}={raw!r} is not an ISO 8601 time, e.g. 2026-11-23T10:05:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


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
    values = {key: entry.value for key, entry in materialization.metadata.items()}
    return values, record.run_id


def metadata_time(value: Any) -> datetime | None:
    """A timestamp stored with `MetadataValue.timestamp` (float seconds) as a UTC datetime."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)
