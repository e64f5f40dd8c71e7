"""Demo data on the embedded stack: load it once, materialize what exists so far."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
from psycopg_pool import ConnectionPool

from session_assets.commands import demo_data
from session_assets.core.records import RollupRecord, ScannerDayRecord
from session_assets.core.run_context import AS_OF_TAG, metadata_values
from session_assets.partitions import (
    scanner_day_key,
    scanner_day_partition_key,
    scanner_partitions_def,
)
from session_assets.resources import ClickHouseResource
from session_assets.scanners import Scanner, load_scanners
from session_assets.scanners import store as scanner_store
from session_assets.stores.events_io import EVENT_COLUMNS, insert_events

EXAMPLE_SCANNERS = Path(__file__).resolve().parents[1] / "examples" / "scanners.yaml"
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

DEMO_SEED = 7
_BLOCK = 20_000


def events_table_is_empty(clickhouse: ClickHouseResource) -> bool:
    rows = clickhouse.client().query(
        "SELECT count() FROM {events_db:Identifier}.{events_table:Identifier}", parameters=clickhouse.events.params("events")
    ).result_rows
    return rows[0][0] == 0


def load_demo_events(clickhouse: ClickHouseResource, days: int, now: datetime) -> int:
    """Generate `days` of demo events up to `now` and insert them in idempotent blocks."""
    columns = demo_data.generate_events(days=days, now=now, seed=DEMO_SEED)
    total = len(columns["event"])
    client = clickhouse.client()
    for start in range(0, total, _BLOCK):
        block = {name: columns[name][start : start + _BLOCK] for name in EVENT_COLUMNS}
        token = hashlib.sha256(f"demo:{DEMO_SEED}:{days}:{now.isoformat()}:{start}".encode()).hexdigest()
        insert_events(client, clickhouse.events, block, dedup_token=token)
    return total


@dataclass(frozen=True)
class DayRollup:
    day: str
    sessions: int
    events: int
    complete: bool
    check_passed: bool | None  # None: no check ran


def demo_days(now: datetime, days: int) -> list[date]:
    first = (now - timedelta(days=days)).date()
    return [first + timedelta(days=i) for i in range((now.date() - first).days + 1)]


def materialize_rollups(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    days: list[date],
    as_of: datetime,
    progress: Callable[[DayRollup, int, int], None] | None = None,  # (day done, how many done, of)
) -> list[DayRollup]:
    """One run per day, as of `as_of`, through the code location's own job."""
    job = defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey("session_counter_rollups")]
    results = []
    for day in days:
        result = job.execute_in_process(
            instance=instance,
            partition_key=day.isoformat(),
            asset_selection=selection,
            tags={AS_OF_TAG: as_of.isoformat()},
            run_config=QUIET_LOGS,
        )
        (materialization,) = result.asset_materializations_for_node("session_counter_rollups")
        meta = metadata_values(materialization.metadata)
        checks = result.get_asset_check_evaluations()
        results.append(
            DayRollup(
                day=day.isoformat(),
                sessions=int(meta["sessions"]),
                events=int(meta["events"]),
                complete=RollupRecord.from_metadata(meta).complete,
                check_passed=all(c.passed for c in checks) if checks else None,
            )
        )
        if progress is not None:
            progress(results[-1], len(results), len(days))
    return results


def day_start_of(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def install_example_scanners(pool: ConnectionPool, instance: dg.DagsterInstance, start_at: datetime) -> list[Scanner]:
    """Save the example scanners (one per kind) unless scanners exist; they start at `start_at`."""
    if scanner_store.list_all(pool):
        return []
    examples = [s.model_copy(update={"start_at": start_at}) for s in load_scanners(EXAMPLE_SCANNERS)]
    for scanner in examples:
        scanner_store.save(pool, scanner)
    instance.add_dynamic_partitions(scanner_partitions_def.name, [s.id for s in examples])
    return examples


@dataclass(frozen=True)
class PartitionSweep:
    scanner_id: str
    day: str
    observed: int
    candidates: int
    quota_skipped: int
    watermark_end: datetime
    complete: bool
    checks_passed: bool


def sweep_partitions(
    defs: dg.Definitions, instance: dg.DagsterInstance, scanner_ids: list[str], days: list[date], as_of: datetime
) -> list[PartitionSweep]:
    """One run per (scanner, day), oldest day first, as of `as_of`."""
    job = defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey("scanner_candidate_windows"), dg.AssetKey("observation_batches")]
    done = []
    for day in days:
        for scanner_id in scanner_ids:
            result = job.execute_in_process(
                instance=instance,
                partition_key=scanner_day_partition_key(scanner_day_key(day, scanner_id)),
                asset_selection=selection,
                tags={AS_OF_TAG: as_of.isoformat()},
                run_config=QUIET_LOGS,
            )
            (event,) = [
                e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("observation_batches")
            ]
            meta = metadata_values(event.materialization.metadata)
            record = ScannerDayRecord.from_metadata(meta)
            done.append(
                PartitionSweep(
                    scanner_id=scanner_id,
                    day=day.isoformat(),
                    observed=int(meta["observed"]),
                    candidates=int(meta["candidates"]),
                    quota_skipped=int(meta["quota_skipped"]),
                    watermark_end=record.watermark.end,
                    complete=record.complete,
                    checks_passed=all(c.passed for c in result.get_asset_check_evaluations()),
                )
            )
    return done
