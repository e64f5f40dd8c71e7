"""What a tick knows: the records `tick_plan.plan_tick` decides from, read in bounded sets.

The watched days' latest materializations by explicit partition key (each parsed
once per instance), in-flight and recently failed runs, the scanners table and the
teams out of quota. Reads only, but for `begin_tick`, the sensor's and the CLI's first
step: it fails the runs of a vanished worker (`fail_runs_of_gone_workers`), then reads
the state with the runs still in flight.
"""

import dataclasses
import socket
import weakref
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import psutil
from psycopg_pool import ConnectionPool

from session_assets.assets import session_counter_rollups
from session_assets.assets.scanning import OBSERVATION_BATCHES, earlier_watermark
from session_assets.batches import (
    FAILURE_KEY,
    batch_partitions,
    crash_suspect,
    processing_order,
)
from session_assets.core import tick_plan
from session_assets.core.observations import quota_period
from session_assets.core.records import RollupRecord, ScannerDayRecord
from session_assets.core.run_context import AS_OF_TAG, metadata_time
from session_assets.partitions import (
    daily_partitions_def,
    scanner_day_key,
    scanner_partitions_def,
)
from session_assets.scanners import store as scanner_store
from session_assets.stores import sql

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
PARTITION_TAG = "dagster/partition"
WILL_RETRY_TAG = "dagster/will_retry"
# "<run id> <host> <pid> <process start>" of the process executing a run in-process
# (`session-assets sweep`), so that a tick can tell when that process is gone.
WORKER_TAG = "session_assets/worker"


def worker_tag(run_id: str) -> str:
    me = psutil.Process()
    return f"{run_id} {socket.gethostname()} {me.pid} {me.create_time():.2f}"


def _worker_gone(run: dg.DagsterRun) -> bool:
    """True when the run was executed in-process by a process of this host that no longer exists.

    A SIGKILLed or OOM-killed `session-assets sweep` leaves its run STARTED for ever
    (nothing monitors an in-process run), and the partition would wait for it
    for ever. Runs re-executed from such a run copy its tags: the run id in the
    tag tells them apart. Anything we cannot check from here counts as alive.
    """
    parts = run.tags.get(WORKER_TAG, "").split(" ")
    if len(parts) != 4 or parts[0] != run.run_id or parts[1] != socket.gethostname():
        return False
    try:
        process = psutil.Process(int(parts[2]))
        return f"{process.create_time():.2f}" != parts[3] or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, ValueError):
        return False


def in_flight_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The queued and running runs of partitions: read once a tick, by both steps below."""
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT), limit=1000)
    return [record.dagster_run for record in records if _run_partitions(record.dagster_run)]


def fail_runs_of_gone_workers(
    instance: dg.DagsterInstance, runs: list[dg.DagsterRun]
) -> tuple[list[dg.DagsterRun], list[str]]:
    """Fail the in-flight runs whose in-process worker is gone, so their partitions are
    retried (with backoff) instead of waiting for ever. The runs still in flight, and the
    ids of those failed."""
    alive, failed = [], []
    for run in runs:
        if _worker_gone(run):
            instance.report_run_failed(
                run, f"the process that executed this run ({run.tags[WORKER_TAG]}) is gone: killed mid-run"
            )
            failed.append(run.run_id)
        else:
            alive.append(run)
    return alive, failed


def begin_tick(instance: dg.DagsterInstance, pool: ConnectionPool, now: datetime) -> tuple[tick_plan.TickState, list[str]]:
    """A tick's first step, for the sensor and the CLI alike: fail the runs of vanished
    workers, then read the state with the runs still in flight (read once). The state,
    and the ids of the runs failed."""
    in_flight, failed = fail_runs_of_gone_workers(instance, in_flight_runs(instance))
    return read_tick_state(instance, pool, now, in_flight), failed


def read_tick_state(
    instance: dg.DagsterInstance, pool: ConnectionPool, now: datetime, in_flight: list[dg.DagsterRun] | None = None
) -> tick_plan.TickState:
    """What `plan_tick` decides from. `in_flight`: the runs `fail_runs_of_gone_workers` left
    (read here when not given), so a tick reads the in-flight runs once."""
    if in_flight is None:
        in_flight = in_flight_runs(instance)
    start = daily_partitions_def.start.date()
    scanners = [
        tick_plan.ScannerState(stored.id, stored.enabled, stored.start_at, int(stored.row["team_id"]))
        for stored in scanner_store.list_all(pool)
    ]
    days = tick_plan.watched_days(now, start)
    sweep_keys = {
        (s.id, d): scanner_day_key(d, s.id) for s in scanners if s.enabled for d in tick_plan.scanner_days(s, now, start)
    }
    in_flight_keys = {key for run in in_flight for key in _run_partitions(run)}
    failures, stopped_batches = _failed_runs(instance, now)
    sweep_states = _partition_states(
        instance,
        OBSERVATION_BATCHES,
        sweep_keys,
        in_flight_keys,
        failures,
        _failed_alone_in_batches(instance, sweep_keys.values()),
        stopped_batches,
    )
    # A scanner with no watermark in the watched days resumes from its last one before them.
    for n, s in enumerate(scanners):
        if s.enabled and not any(sweep_states[(s.id, d)].watermark for d in tick_plan.scanner_days(s, now, start)):
            first = min(tick_plan.scanner_days(s, now, start), default=now.date())
            resume = earlier_watermark(instance, s.id, s.start_at.date(), first)
            if resume is not None:
                scanners[n] = dataclasses.replace(s, resume_from=resume)
    # The rollup days the watched partitions' next sweeps read, and the watched days (and the one before).
    rollup_days = tick_plan.rollup_days_needed(now, start, scanners, sweep_states)
    rollup_days.update(d for d in [days[0] - timedelta(days=1), *days] if d >= start)
    rollups = _partition_states(
        instance, session_counter_rollups.key, {d: d.isoformat() for d in sorted(rollup_days)}, in_flight_keys, failures
    )
    return tick_plan.TickState(
        now=now,
        start_date=start,
        scanners=scanners,
        known_scanner_partitions=set(instance.get_dynamic_partitions(scanner_partitions_def.name)),
        rollups=rollups,
        sweeps=sweep_states,
        teams_out_of_quota=_teams_out_of_quota(pool, now),
    )


def _teams_out_of_quota(pool: ConnectionPool, now: datetime) -> frozenset[int]:
    with pool.connection() as conn:
        rows = conn.execute(sql.load("postgres/quota_exhausted.sql"), {"period": quota_period(now)}).fetchall()
    return frozenset(int(row[0]) for row in rows)


def _partition_states(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    keys: dict[Any, str],
    in_flight: set[str],
    failures: dict[str, list[tuple[datetime, bool]]],
    alone_at: dict[str, set[datetime]] | None = None,
    stopped_batches: list[tuple[datetime, list[str]]] = (),
) -> dict[Any, tick_plan.PartitionState]:
    latest_ids = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys.values())
    )
    # A stored materialization never changes: parse each one once per instance, so
    # a tick re-reads only the partitions that moved since the last tick.
    parsed_records = _parsed_records(instance)
    missing = [i for i in latest_ids.values() if i not in parsed_records]
    if missing:
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=missing), limit=len(missing)
        ).records
        if len(parsed_records) + len(found) > _PARSED_RECORDS_MAX:
            parsed_records.clear()  # a cache: dropping it costs one slower tick, never a wrong one
        for record in found:
            parsed_records[record.storage_id] = _parse(record)
    alone_at = {key: set(times) for key, times in (alone_at or {}).items()}
    parsed_by_key = {
        key: dict(parsed_records.get(latest_ids[key]) or {}) if key in latest_ids else {} for key in keys.values()
    }
    # Failures are timed on the tick clock (as-of), so the success they follow must be too:
    # with `sweep --now` in the past, the wall-clock materialization time is after every one.
    succeeded_at = {
        key: parsed.get("succeeded_as_of") or parsed.get("materialized_at") for key, parsed in parsed_by_key.items()
    }
    for failed_at, ordered in stopped_batches:
        # A batch that stopped as a whole: the partition it was sweeping is retried alone.
        settled = {
            key
            for key in ordered
            if key not in succeeded_at  # not watched any more
            or (succeeded_at[key] is not None and succeeded_at[key] >= failed_at)
            or failed_at in alone_at.get(key, ())
        }
        suspect = crash_suspect(ordered, settled)
        if suspect is not None:
            alone_at.setdefault(suspect, set()).add(failed_at)
    states = {}
    for ident, key in keys.items():
        parsed = parsed_by_key[key]
        succeeded = succeeded_at[key]
        failed = sorted({(t, alone or t in alone_at.get(key, ())) for t, alone in failures.get(key, []) if succeeded is None or t > succeeded})
        states[ident] = tick_plan.PartitionState(
            **parsed,
            in_flight=key in in_flight,
            failures=len({t for t, _ in failed}),
            last_failure_at=failed[-1][0] if failed else None,
            failed_alone=failed[-1][1] if failed else False,
        )
    return states


_PARSED_RECORDS_MAX = 50_000
# Parsed materializations by storage id, per instance (storage ids are per event log);
# gone with the instance.
_parsed_by_instance: weakref.WeakKeyDictionary[dg.DagsterInstance, dict[int, dict[str, Any]]] = weakref.WeakKeyDictionary()


def _parsed_records(instance: dg.DagsterInstance) -> dict[int, dict[str, Any]]:
    return _parsed_by_instance.setdefault(instance, {})


def _parse(record: Any) -> dict[str, Any]:
    metadata = record.asset_materialization.metadata
    rollup = RollupRecord.from_metadata(metadata)
    sweep = ScannerDayRecord.from_metadata(metadata)
    watermark = sweep.watermark if sweep else None
    return {
        "materialized_at": datetime.fromtimestamp(record.timestamp, tz=timezone.utc),
        "succeeded_as_of": (sweep.as_of if sweep else None) or (rollup.covered_until if rollup else None),
        "complete": (sweep or rollup).complete if (sweep or rollup) else False,
        "covered_until": rollup.covered_until if rollup else None,
        "late_covered_until": rollup.late_covered_until if rollup else None,
        "late_covered_days": rollup.late_covered_days if rollup else frozenset(),
        "frontier": sweep.frontier if sweep else None,
        "watermark_end": watermark.end if watermark else None,
        "watermark_session_id": watermark.session_id if watermark else "",
        "seen_until": watermark.seen_until if watermark else None,
        "quota_stopped": sweep.quota_stopped if sweep else False,
    }


def _failed_runs(
    instance: dg.DagsterInstance, now: datetime
) -> tuple[dict[str, list[tuple[datetime, bool]]], list[tuple[datetime, list[str]]]]:
    """Failure times per partition (recent, bounded); the failed batch runs (as-of, partitions
    in the order they sweep them)."""
    failures: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    stopped_batches: list[tuple[datetime, list[str]]] = []
    recent = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE], created_after=now - timedelta(days=tick_plan.CATCH_UP_DAYS + 1)
        ),
        limit=2000,
    )
    for record in recent:
        tags = record.dagster_run.tags
        keys = _run_partitions(record.dagster_run)
        if not keys or tags.get(WILL_RETRY_TAG) == "true":
            continue  # Dagster's run retries will relaunch it: do not double it
        # Measured on the tick clock (the run's as-of time) so that backoff and
        # `sweep --now` agree; for sensor runs it is the launch time.
        failed_at = metadata_time(tags.get(AS_OF_TAG)) if tags.get(AS_OF_TAG) else None
        if failed_at is None:
            ended = record.end_time or record.update_timestamp.timestamp()
            failed_at = datetime.fromtimestamp(ended, tz=timezone.utc)
        # A failed batch counts for each of its partitions; those it materialized have a
        # success as of the same time, which `_partition_states` does not count against.
        # A partition's own run failed it alone; a batch's failure is the partition's own
        # only where the batch recorded one for it (see `_failed_alone_in_batches`).
        alone = PARTITION_TAG in tags
        for key in keys:
            failures[key].append((failed_at, alone))
        if not alone:
            stopped_batches.append((failed_at, processing_order(keys)))
    return failures, stopped_batches


def _failed_alone_in_batches(instance: dg.DagsterInstance, keys: Any) -> dict[str, set[datetime]]:
    """{partition: as-of times} of the failures batches recorded for a partition of theirs
    (its latest one: two bounded queries)."""
    latest = instance.get_latest_storage_id_by_partition(
        OBSERVATION_BATCHES, dg.DagsterEventType.ASSET_OBSERVATION, partitions=set(keys)
    )
    if not latest:
        return {}
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=OBSERVATION_BATCHES, storage_ids=list(latest.values())), limit=len(latest)
    ).records
    found: dict[str, set[datetime]] = {}
    for record in records:
        observation = record.asset_observation
        if observation is None or FAILURE_KEY not in observation.metadata:
            continue
        failed_at = metadata_time(observation.metadata["as_of"].value)
        if failed_at is not None:
            found.setdefault(str(observation.partition), set()).add(failed_at)
    return found


def _run_partitions(run: dg.DagsterRun) -> list[str]:
    """The (scanner, day) or rollup partitions a run works on: its partition, or a batch's."""
    if PARTITION_TAG in run.tags:
        return [run.tags[PARTITION_TAG]]
    return batch_partitions(run)
