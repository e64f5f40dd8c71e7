"""Hand backfills of (scanner, day) partitions as real Dagster backfills.

The backfill daemon (`dagster dev`, or `dagster-daemon run` in production)
launches one run per partition; each run carries `dagster/backfill`, so the
sweep recomputes its whole partition and dedupes against live sweeps.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from session_assets.assets.scanning import CANDIDATE_WINDOWS, OBSERVATION_BATCHES
from session_assets.partitions import scanner_partitions_def


def partition_keys(scanner_id: str, start: date, end: date) -> list[str]:
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    if (end - start).days > 366:
        raise ValueError(f"--start {start} to --end {end} is over a year: split it")
    return [f"{(start + timedelta(days=n)).isoformat()}|{scanner_id}" for n in range((end - start).days + 1)]


def launch(defs: dg.Definitions, instance: dg.DagsterInstance, scanner_id: str, start: date, end: date) -> str:
    if scanner_id not in instance.get_dynamic_partitions(scanner_partitions_def.name):
        raise ValueError(f"scanner {scanner_id!r} is not a partition yet: add it with `session-assets scanners add`")
    keys = partition_keys(scanner_id, start, end)
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=keys,
        asset_selection=[CANDIDATE_WINDOWS, OBSERVATION_BATCHES],
        backfill_timestamp=time.time(),
        tags={"session_assets/sweep": "backfill"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"{scanner_id} {start}..{end}",
        description="session-assets backfill",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def progress(instance: dg.DagsterInstance, backfill_id: str) -> tuple[str, int, int, int]:
    """(status, runs succeeded, runs failed, runs in flight) of a backfill."""
    backfill = instance.get_backfill(backfill_id)
    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    by_status = [r.dagster_run.status for r in runs]
    done = sum(s == dg.DagsterRunStatus.SUCCESS for s in by_status)
    failed = sum(s in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED) for s in by_status)
    return backfill.status.value, done, failed, len(by_status) - done - failed


def finished(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    return instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED
