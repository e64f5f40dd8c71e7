"""Partition definitions, module-level constants (their identity hashes their repr)."""

from __future__ import annotations

import os

import dagster as dg

from session_assets.settings import DEFAULT_START_DATE, START_DATE_VAR

# UTC days from the configured start, today included while it is open (end_offset=1).
daily_partitions_def = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(START_DATE_VAR) or DEFAULT_START_DATE,
    timezone="UTC",
    end_offset=1,
)

# One key per scanner id ([a-z0-9-] only: `|` breaks multi keys, commas break UI selection).
scanner_partitions_def = dg.DynamicPartitionsDefinition(name="scanners")

# Keys look like "2026-11-23|checkout-errors" (dimensions sort by name).
scanner_day_partitions_def = dg.MultiPartitionsDefinition(
    {"date": daily_partitions_def, "scanner": scanner_partitions_def}
)
