"""The CLI's ticks and status: a tick planned exactly as `sweep_sensor` plans it, its runs
executed in this process (`session-assets sweep`, tests, benchmarks); and the report
`session-assets status` prints, from the same records."""

import uuid
from datetime import datetime
from typing import Any

import dagster as dg
from psycopg_pool import ConnectionPool

from session_assets.assets import session_counter_rollups
from session_assets.assets.scanning import OBSERVATION_BATCHES
from session_assets.batches import FAILURE_KEY, batch_partitions
from session_assets.core import tick_plan
from session_assets.core.records import RollupRecord, ScannerDayRecord
from session_assets.partitions import scanner_partitions_def
from session_assets.scanners import store as scanner_store
from session_assets.sensors import batches_per_tick, retry_backoff, run_requests
from session_assets.stores import sql
from session_assets.tick_state import WORKER_TAG, begin_tick, read_tick_state, worker_tag


def execute_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    pool: ConnectionPool,
    now: datetime,
    only_scanner: str | None = None,
    source: str = "cli",
) -> dict[str, Any]:
    """One tick computed exactly as the sensor does, its runs executed here, one after another."""
    state, _ = begin_tick(instance, pool, now)
    plan = tick_plan.plan_tick(state, only_scanner=only_scanner, retry_backoff=retry_backoff())
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
                sweep = ScannerDayRecord.from_metadata(meta)
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
