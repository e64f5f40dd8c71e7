"""`sweep_sensor` and the jobs it requests: every 5 minutes, the rollup and sweep runs that are due.

A thin wrapper: `tick_state.read_tick_state` reads bounded sets of records (it never
opens ClickHouse: in embedded mode a run may be holding chDB) and the pure
`tick_plan.plan_tick` decides; this module turns the plan into run requests.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg

from session_assets import settings
from session_assets.assets import scanner_observations, session_counter_rollups
from session_assets.batches import BATCH_TAG, batch_run_config, scanner_batch_job
from session_assets.core import tick_plan
from session_assets.core.run_context import AS_OF_TAG
from session_assets.partitions import scanner_partitions_def
from session_assets.resources import PostgresResource
from session_assets.tick_state import begin_tick

# One job per partitions definition: a sensor target may not mix them.
rollups_job = dg.define_asset_job(
    "rollups_job",
    selection=dg.AssetSelection.assets(session_counter_rollups),
    description="Roll up one UTC day of events (the sweep sensor runs it for open days).",
)
scanner_partition_job = dg.define_asset_job(
    "scanner_partition_job",
    selection=dg.AssetSelection.assets(scanner_observations),
    description=(
        "Sweep one (scanner, day) partition: candidates, observations, batch objects (hand backfills, "
        "and the sensor's retries of a partition that failed)."
    ),
)
MAX_RUNTIME_TAG = "dagster/max_runtime"
MAX_RUNTIME_SECONDS = 3600  # a sweep of one (scanner, day) takes seconds to minutes


def retry_backoff() -> timedelta:
    """The first retry delay of a failed partition (doubling after), from the environment."""
    return timedelta(seconds=settings.seconds_setting(settings.RETRY_BACKOFF_VAR, int(tick_plan.RETRY_BACKOFF_BASE.total_seconds())))


def batches_per_tick() -> int:
    """Batch runs a tick launches: as many as runs may go at once (1 on the embedded stack)."""
    return settings.seconds_setting(settings.MAX_CONCURRENT_RUNS_VAR, 1)


def run_requests(plan: tick_plan.TickPlan, now: datetime, source: str, batches: int = 1) -> list[dg.RunRequest]:
    requests = []
    for run in tick_plan.runs(plan.requests, batches):
        tags = {
            AS_OF_TAG: now.isoformat(),
            tick_plan.LAUNCHED_BY_TAG: source,
            # The default run launcher cannot see a killed run worker: run monitoring
            # fails a run still going after this long, and the next tick retries it.
            MAX_RUNTIME_TAG: str(MAX_RUNTIME_SECONDS),
        }
        if isinstance(run, tick_plan.Batch):
            requests.append(
                dg.RunRequest(
                    run_key=run.run_key(now),
                    job_name=scanner_batch_job.name,
                    run_config=batch_run_config(list(run.partitions)),
                    tags={**tags, BATCH_TAG: str(len(run.partitions))},
                )
            )
            continue
        requests.append(
            dg.RunRequest(
                run_key=run.run_key(now),
                job_name=rollups_job.name if run.asset == "rollups" else scanner_partition_job.name,
                partition_key=run.partition_key,
                tags={**tags, tick_plan.ATTEMPT_TAG: str(run.attempt)},
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
    jobs=[rollups_job, scanner_partition_job, scanner_batch_job],
)
def sweep_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource) -> dg.SensorResult:
    now = datetime.now(timezone.utc)
    state, failed = begin_tick(context.instance, postgres.pool(), now)
    for run_id in failed:
        context.log.warning(f"run {run_id} failed: the process executing it is gone")
    plan = tick_plan.plan_tick(state, retry_backoff=retry_backoff())
    for key, why in sorted(plan.waiting.items()):
        context.log.debug(f"{key}: {why}")
    if plan.deferred:
        context.log.info(f"{plan.deferred} partitions wait for the next tick (cap {tick_plan.MAX_REQUESTS_PER_TICK})")
    ticks = int(context.cursor or 0) + 1
    return dg.SensorResult(
        run_requests=run_requests(plan, now, "sensor", batches_per_tick()),
        dynamic_partitions_requests=[scanner_partitions_def.build_add_request(plan.add_scanner_partitions)]
        if plan.add_scanner_partitions
        else None,
        cursor=str(ticks),  # a tick counter for the UI: decisions never depend on it
    )
