"""Partition definitions, module-level constants (their identity hashes their repr)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from session_assets import settings

# UTC days from the configured start, today included while it is open (end_offset=1).
daily_partitions_def = dg.DailyPartitionsDefinition(
    start_date=settings.start_date().isoformat(),
    timezone="UTC",
    end_offset=1,
)

# One key per scanner id ([a-z0-9-] only: `|` breaks multi keys, commas break UI selection).
scanner_partitions_def = dg.DynamicPartitionsDefinition(name="scanners")

# Keys look like "2026-11-23|checkout-errors" (dimensions sort by name).
scanner_day_partitions_def = dg.MultiPartitionsDefinition(
    {"date": daily_partitions_def, "scanner": scanner_partitions_def}
)


def scanner_day_key(day: date | str, scanner_id: str) -> str:
    """The (scanner, day) partition's key, as Dagster writes it: "2026-11-23|checkout-errors"."""
    return f"{day.isoformat() if isinstance(day, date) else day}|{scanner_id}"


def split_scanner_day_key(key: str | dg.MultiPartitionKey) -> tuple[date, str]:
    """(day, scanner id) of a (scanner, day) partition key, given as a string or a MultiPartitionKey."""
    if isinstance(key, dg.MultiPartitionKey):
        dimensions = key.keys_by_dimension
        return date.fromisoformat(dimensions["date"]), dimensions["scanner"]
    day, separator, scanner_id = str(key).partition("|")
    try:
        if separator and scanner_id:
            return date.fromisoformat(day), scanner_id
    except ValueError:
        pass
    raise ValueError(f"not a (scanner, day) partition key: {key!r} (expected 'YYYY-MM-DD|scanner-id')")


def scanner_day_partition_key(key: str) -> dg.MultiPartitionKey:
    """The MultiPartitionKey Dagster's APIs take for a (scanner, day) key string."""
    day, scanner_id = split_scanner_day_key(key)
    return dg.MultiPartitionKey({"date": day.isoformat(), "scanner": scanner_id})
