"""`sweep_sensor`: every 5 minutes, request the rollup and sweep runs that are due.

A thin wrapper: it reads bounded sets of records (the watched days' latest
materializations by explicit partition key, in-flight and recently failed
runs, the scanners table) and hands them to the pure `sweeps.plan_tick`.
It never opens ClickHouse: in embedded mode a run may be holding chDB.
"""

import dataclasses
import socket
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import psutil
from psycopg_pool import ConnectionPool

from session_assets import settings, sql, sweeps
from session_assets.assets import scanner_sweep, session_counter_rollups
from session_assets.batches import (
    BATCH_TAG,
    FAILURE_KEY,
    batch_partitions,
    batch_run_config,
    crash_suspect,
    processing_order,
    sweep_batch_job,
)
from session_assets.assets.scanning import OBSERVATION_BATCHES, earlier_watermark
from session_assets.records import RollupRecord, SweepRecord
from session_assets.observations import quota_period
from session_assets.partitions import daily_partitions_def, scanner_day_key, scanner_partitions_def
from session_assets.resources import PostgresResource
from session_assets.run_context import AS_OF_TAG, metadata_time
from session_assets.scanners import store as scanner_store

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
PARTITION_TAG = "dagster/partition"

# One job per partitions definition: a sensor target may not mix them.
rollups_job = dg.define_asset_job(
    "rollups_job",
    selection=dg.AssetSelection.assets(session_counter_rollups),
    description="Roll up one UTC day of events (the sweep sensor runs it for open days).",
)
sweep_job = dg.define_asset_job(
    "sweep_job",
    selection=dg.AssetSelection.assets(scanner_sweep),
    description=(
        "Sweep one (scanner, day) partition: candidates, observations, batch objects (hand backfills, "
        "and the sensor's retries of a partition that failed)."
    ),
)
WILL_RETRY_TAG = "dagster/will_retry"
MAX_RUNTIME_TAG = "dagster/max_runtime"
MAX_RUNTIME_SECONDS = 3600  # a sweep of one (scanner, day) takes seconds to minutes
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


def read_tick_state(instance: dg.DagsterInstance, pool: ConnectionPool, now: datetime) -> sweeps.TickState:
    start = daily_partitions_def.start.date()
    scanners = [
        sweeps.ScannerState(stored.id, stored.enabled, stored.start_at, int(stored.row["team_id"]))
        for stored in scanner_store.list_all(pool)
    ]
    days = sweeps.watched_days(now, start)
    sweep_keys = {
        (s.id, d): scanner_day_key(d, s.id) for s in scanners if s.enabled for d in sweeps.scanner_days(s, now, start)
    }
    in_flight, failures, stopped_batches = _run_states(instance, now)
    sweep_states = _partition_states(
        instance,
        OBSERVATION_BATCHES,
        sweep_keys,
        in_flight,
        failures,
        _failed_alone_in_batches(instance, sweep_keys.values()),
        stopped_batches,
    )
    # A scanner with no watermark in the watched days resumes from its last one before them.
    for n, s in enumerate(scanners):
        if s.enabled and not any(sweep_states[(s.id, d)].watermark for d in sweeps.scanner_days(s, now, start)):
            first = min(sweeps.scanner_days(s, now, start), default=now.date())
            resume = earlier_watermark(instance, s.id, s.start_at.date(), first)
            if resume is not None:
                scanners[n] = dataclasses.replace(s, resume_from=resume)
    # The rollup days the watched partitions' next sweeps read, and the watched days (and the one before).
    rollup_days = sweeps.rollup_days_needed(now, start, scanners, sweep_states)
    rollup_days.update(d for d in [days[0] - timedelta(days=1), *days] if d >= start)
    rollups = _partition_states(
        instance, session_counter_rollups.key, {d: d.isoformat() for d in sorted(rollup_days)}, in_flight, failures
    )
    return sweeps.TickState(
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
) -> dict[Any, sweeps.PartitionState]:
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
        states[ident] = sweeps.PartitionState(
            **parsed,
            in_flight=key in in_flight,
            failures=len({t for t, _ in failed}),
            last_failure_at=failed[-1][0] if failed else None,
            failed_alone=failed[-1][1] if failed else False,
        )
    return states


_PARSED_RECORDS_MAX = 50_000
_CACHE_ATTRIBUTE = "_session_assets_parsed_materializations"


def _parsed_records(instance: dg.DagsterInstance) -> dict[int, dict[str, Any]]:
    """Parsed materializations by storage id, kept on the instance (ids are per event log)."""
    cache = getattr(instance, _CACHE_ATTRIBUTE, None)
    if cache is None:
        cache = {}
        setattr(instance, _CACHE_ATTRIBUTE, cache)
    return cache


def _parse(record: Any) -> dict[str, Any]:
    metadata = record.asset_materialization.metadata
    rollup = RollupRecord.from_metadata(metadata)
    sweep = SweepRecord.from_metadata(metadata)
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


def _run_states(
    instance: dg.DagsterInstance, now: datetime
) -> tuple[set[str], dict[str, list[tuple[datetime, bool]]], list[tuple[datetime, list[str]]]]:
    """Partitions with a queued or running run; failure times per partition (recent, bounded);
    the failed batch runs (as-of, partitions in the order they sweep them)."""
    in_flight = set()
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT), limit=1000):
        run = record.dagster_run
        keys = _run_partitions(run)
        if not keys:
            continue
        if _worker_gone(run):
            # Fail it, so the partition is retried (with backoff) instead of waiting for ever.
            instance.report_run_failed(
                run, f"the process that executed this run ({run.tags[WORKER_TAG]}) is gone: killed mid-run"
            )
            continue
        in_flight.update(keys)
    failures: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    stopped_batches: list[tuple[datetime, list[str]]] = []
    recent = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE], created_after=now - timedelta(days=sweeps.CATCH_UP_DAYS + 1)
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
    return in_flight, failures, stopped_batches


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


def retry_backoff() -> timedelta:
    """The first retry delay of a failed partition (doubling after), from the environment."""
    return timedelta(seconds=settings.seconds_setting(settings.RETRY_BACKOFF_VAR, int(sweeps.RETRY_BACKOFF_BASE.total_seconds())))


def batches_per_tick() -> int:
    """Batch runs a tick launches: as many as runs may go at once (1 on the embedded stack)."""
    return settings.seconds_setting(settings.MAX_CONCURRENT_RUNS_VAR, 1)


def run_requests(plan: sweeps.TickPlan, now: datetime, source: str, batches: int = 1) -> list[dg.RunRequest]:
    requests = []
    for run in sweeps.runs(plan.requests, batches):
        tags = {
            AS_OF_TAG: now.isoformat(),
            sweeps.SWEEP_TAG: source,
            # The default run launcher cannot see a killed run worker: run monitoring
            # fails a run still going after this long, and the next tick retries it.
            MAX_RUNTIME_TAG: str(MAX_RUNTIME_SECONDS),
        }
        if isinstance(run, sweeps.Batch):
            requests.append(
                dg.RunRequest(
                    run_key=run.run_key(now),
                    job_name=sweep_batch_job.name,
                    run_config=batch_run_config(list(run.partitions)),
                    tags={**tags, BATCH_TAG: str(len(run.partitions))},
                )
            )
            continue
        requests.append(
            dg.RunRequest(
                run_key=run.run_key(now),
                job_name=rollups_job.name if run.asset == "rollups" else sweep_job.name,
                partition_key=run.partition_key,
                tags={**tags, sweeps.ATTEMPT_TAG: str(run.attempt)},
            )
        )
    return requests


@dg.sensor(
    name="sweep_sensor",
    description=(
        "Every 5 minutes: registers new scanners as partitions, re-rolls the open rollup days, and sweeps "
        "every enabled scanner's open or incomplete days in batch runs (longest-waiting first, at most "
        "2,000 partitions a tick); a partition that failed is retried in a run of its own, with a fresh run "
        "key and exponential backoff (5 min to 1 h)."
    ),
    # 300 s; shorter in tests and demos that want to watch retries happen.
    minimum_interval_seconds=settings.seconds_setting(settings.SWEEP_INTERVAL_VAR, 300),
    default_status=dg.DefaultSensorStatus.RUNNING,
    jobs=[rollups_job, sweep_job, sweep_batch_job],
)
def sweep_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource) -> dg.SensorResult:
    now = datetime.now(timezone.utc)
    plan = sweeps.plan_tick(read_tick_state(context.instance, postgres.pool(), now), retry_backoff=retry_backoff())
    for key, why in sorted(plan.waiting.items()):
        context.log.debug(f"{key}: {why}")
    if plan.deferred:
        context.log.info(f"{plan.deferred} partitions wait for the next tick (cap {sweeps.MAX_REQUESTS_PER_TICK})")
    ticks = int(context.cursor or 0) + 1
    return dg.SensorResult(
        run_requests=run_requests(plan, now, "sensor", batches_per_tick()),
        dynamic_partitions_requests=[scanner_partitions_def.build_add_request(plan.add_scanner_partitions)]
        if plan.add_scanner_partitions
        else None,
        cursor=str(ticks),  # a tick counter for the UI: decisions never depend on it
    )



def execute_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    pool: ConnectionPool,
    now: datetime,
    only_scanner: str | None = None,
    source: str = "cli",
) -> dict[str, Any]:
    """One tick computed exactly as the sensor does, its runs executed here, one after another."""
    plan = sweeps.plan_tick(read_tick_state(instance, pool, now), only_scanner=only_scanner, retry_backoff=retry_backoff())
    if plan.add_scanner_partitions:
        instance.add_dynamic_partitions(scanner_partitions_def.name, plan.add_scanner_partitions)
    return {
        "as_of": now.isoformat(),
        "added_scanners": plan.add_scanner_partitions,
        "runs": [
            summary
            for request in run_requests(plan, now, source, batches_per_tick())
            for summary in execute_request(defs, instance, request)
        ],
        "deferred": plan.deferred,
        "waiting": plan.waiting,
    }


def execute_request(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest) -> list[dict[str, Any]]:
    """Execute one of a tick's run requests in this process; a summary per partition of what it
    recorded (one for a partition's run, one per partition for a batch)."""
    run_id = str(uuid.uuid4())
    run_config = dict(request.run_config or {})
    result = defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_id=run_id,
        tags={
            **request.tags,
            "dagster/run_key": request.run_key,
            WORKER_TAG: worker_tag(run_id),
            # Nothing can re-execute an in-process run (it has no code location origin):
            # its failures are the ticks' to retry, with backoff, not Dagster's run retries.
            "dagster/max_retries": "0",
        },
        run_config={**run_config, "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    # In the order the run recorded them (a batch's partitions share quota: order matters).
    summaries: dict[str, dict[str, Any]] = {}

    def summary_of(partition: Any) -> dict[str, Any]:
        return summaries.setdefault(str(partition), {"partition": str(partition), "run_id": result.run_id, "success": result.success})

    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.step_materialization_data.materialization
            meta = materialization.metadata
            if materialization.asset_key == OBSERVATION_BATCHES:
                sweep = SweepRecord.from_metadata(meta)
                summary_of(materialization.partition).update(
                    success=True,
                    watermark_end=sweep.watermark.end.isoformat(),
                    watermark_session_id=sweep.watermark.session_id,
                    seen_until=sweep.watermark.seen_until.isoformat() if sweep.watermark.seen_until else None,
                    complete=sweep.complete,
                    observed=meta["observed"].value,
                    quota_skipped=meta["quota_skipped"].value,
                )
            elif materialization.asset_key == session_counter_rollups.key:
                rollup = RollupRecord.from_metadata(meta)
                summary_of(materialization.partition).update(covered_until=rollup.covered_until.isoformat(), complete=rollup.complete)
        elif event.event_type_value == "ASSET_OBSERVATION":
            observation = event.asset_observation_data.asset_observation
            if FAILURE_KEY in observation.metadata:
                summary_of(observation.partition).update(success=False, error=observation.metadata[FAILURE_KEY].value)
    for key in [request.partition_key] if request.partition_key else batch_partitions(result.dagster_run):
        summary_of(key)
    if not result.success and request.partition_key:
        failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
        summaries[request.partition_key]["error"] = _root_cause(failure.event_specific_data.error) if failure else "run failed"
    elif not result.success:
        # A batch that stopped as a whole (a bad as-of, a store down before any partition):
        # every partition it did not record is failed with the run's error.
        failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
        error = _root_cause(failure.event_specific_data.error) if failure else "run failed"
        for summary in summaries.values():
            if "watermark_end" not in summary and "error" not in summary:
                summary.update(success=False, error=error)
    return list(summaries.values())


def _root_cause(error: Any) -> str:
    """The first error under Dagster's wrappers (step execution, retries): the one our code
    raised, e.g. "ClickHouse at URL is unreachable: ...", not the socket error under it."""
    while getattr(error, "cause", None) is not None and (
        error.cls_name.startswith(("Dagster", "RetryRequested"))
    ):
        error = error.cause
    return error.message.strip()


def status_report(instance: dg.DagsterInstance, pool: ConnectionPool, now: datetime) -> dict[str, Any]:
    """What `session-assets status` shows, from the same records the sensor reads."""
    state = read_tick_state(instance, pool, now)
    period = now.date().replace(day=1)
    with pool.connection() as conn:
        observed = dict(conn.execute(sql.load("postgres/status_observations.sql")).fetchall())
        quotas = {row[0]: row[1:] for row in conn.execute(sql.load("postgres/status_quotas.sql"), {"period": period})}
    teams = {stored.id: stored.row["team_id"] for stored in scanner_store.list_all(pool)}
    scanners = []
    for scanner in state.scanners:
        days = sorted(d for (sid, d) in state.sweeps if sid == scanner.id)
        parts = [(d, state.sweeps[(scanner.id, d)]) for d in days]
        done = [p for _, p in parts if p.materialized_at is not None]
        newest = max(done, key=lambda p: (p.watermark_end or now, p.materialized_at)) if done else None
        limit, used = quotas.get(teams[scanner.id], (None, 0))
        scanners.append(
            {
                "id": scanner.id,
                "team_id": teams[scanner.id],
                "enabled": scanner.enabled,
                "start_at": scanner.start_at.isoformat(),
                "watermark_end": newest.watermark_end.isoformat() if newest and newest.watermark_end else None,
                "watermark_session_id": newest.watermark_session_id if newest else None,
                "frontier": newest.frontier.isoformat() if newest and newest.frontier else None,
                "incomplete": [d.isoformat() for d, p in parts if not p.complete],
                "failed": [d.isoformat() for d, p in parts if p.failures],
                "observations": int(observed.get(scanner.id, 0)),
                "quota_limit": limit,
                "quota_used": int(used),
            }
        )
    rollups = [
        {
            "day": day.isoformat(),
            "covered_until": p.covered_until.isoformat() if p.covered_until else None,
            "complete": p.complete,
            "failed": bool(p.failures),
        }
        for day, p in sorted(state.rollups.items())
        if p.materialized_at is not None or p.failures
    ]
    return {"as_of": now.isoformat(), "scanners": scanners, "rollups": rollups}
