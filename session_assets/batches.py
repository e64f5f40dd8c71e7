"""`scanner_batch_job`: one run sweeps every (scanner, day) partition a tick found due.

A run per partition costs a process and Dagster's start-up (~7 s from launch
to exit against ~0.6 s of work): the run queue fell behind past a few dozen
scanners. A batch run sweeps many partitions in one process, the candidates
of each team and day in one pass over the rollups, and still records each
partition in its own materialization records: it logs the two assets'
materializations with the partition key and the partition's own watermark, as
soon as that partition's observations are durable. So a partition's watermark
lives where a per-partition run would have put it, the UI shows it per
partition, and a hand backfill (a per-partition run of the asset) resumes from it.

A partition that fails does not stop the others: its failure is logged as an
observation of `observation_batches` for that partition, and the run fails at
its end naming the failed partitions. The sensor counts a failure for every
partition of a failed batch that the batch did not materialize, and retries
those as runs of their own, with backoff.
"""


import time
from typing import Any, Iterator

import dagster as dg

from session_assets.assets.scanning import (
    CANDIDATE_WINDOWS,
    OBSERVATION_BATCHES,
    ScannerRunConfig,
    SweepOutcome,
    SweepRecords,
    plan_sweep,
    sweep_plans,
)
from session_assets.checks import batch_check_results
from session_assets.core.failpoints import failpoint
from session_assets.core.run_context import BadRunTag, parse_as_of
from session_assets.partitions import scanner_day_partition_key, split_scanner_day_key
from session_assets.resources import (
    ClickHouseResource,
    ObjectStoreResource,
    PostgresResource,
)
from session_assets.scanners import ScannerError
from session_assets.scanners import store as scanner_store

BATCH_TAG = "session_assets/batch"  # the number of partitions a batch run sweeps
OP_NAME = "sweep_partitions"
FAILURE_KEY = "sweep_failed"  # metadata of a partition's failure observation


class SweepBatchConfig(ScannerRunConfig):
    """The partitions one batch run sweeps ("<day>|<scanner id>"), and the sweep settings."""

    partitions: list[str]


def batch_run_config(partitions: list[str]) -> dict[str, Any]:
    return {"ops": {OP_NAME: {"config": {"partitions": partitions}}}}


def batch_partitions(run: dg.DagsterRun) -> list[str]:
    """The partitions a batch run was given (none for any other run)."""
    if BATCH_TAG not in run.tags:
        return []
    config = (run.run_config or {}).get("ops", {}).get(OP_NAME, {}).get("config", {})
    return [str(key) for key in config.get("partitions", [])]


def processing_order(keys: list[str]) -> list[str]:
    """The order a batch sweeps its partitions: day by day, oldest first, each day's in the
    order given (the sensor gives a team's partitions together: they share a candidates pass)."""
    return sorted(dict.fromkeys(keys), key=lambda key: split_scanner_day_key(key)[0])


def crash_suspect(ordered_keys: list[str], settled: set[str]) -> str | None:
    """The partition a batch that stopped as a whole (its process killed, a crash) was
    sweeping: the first one, in processing order, it neither materialized nor recorded a
    failure for. Retried alone, it cannot take the others down with it again; a store outage
    costs one partition a run of its own."""
    return next((key for key in ordered_keys if key not in settled), None)


def _event_tags(key: dg.MultiPartitionKey) -> dict[str, str]:
    # The tags a partitioned run puts on its events: the UI filters a multi-partitioned
    # asset's events by dimension with them.
    return {f"dagster/partition/{name}": value for name, value in key.keys_by_dimension.items()}


@dg.op(
    name=OP_NAME,
    out={},
    description=(
        "Sweep every (scanner, day) partition in the run config: each team and day's candidates in one "
        "pass over the rollups, each partition's observations, then its own materializations of "
        "scanner_candidate_windows and observation_batches (with its watermark). A failed partition is "
        "logged and named, and never stops the others."
    ),
)
def sweep_partitions(
    context: dg.OpExecutionContext,
    config: SweepBatchConfig,
    clickhouse: ClickHouseResource,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
) -> Iterator[Any]:
    clickhouse.prefer_memory_to_speed()
    started, started_cpu = time.monotonic(), time.process_time()
    try:
        as_of = parse_as_of(context.run.tags)
    except BadRunTag as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    keys = list(dict.fromkeys(config.partitions))
    known = set(context.instance.get_dynamic_partitions("scanners"))
    records = SweepRecords(context.instance)
    records.prefetch([k for k in keys if split_scanner_day_key(k)[1] in known])
    stored = {s.id: s for s in scanner_store.list_all(postgres.pool())}
    failed: dict[str, str] = {}

    def failure(key: str, error: BaseException | str) -> dg.AssetObservation:
        message = str(error).strip() or type(error).__name__
        failed[key] = message
        context.log.error(f"{key}: {message}")
        multi = scanner_day_partition_key(key)
        return dg.AssetObservation(
            asset_key=OBSERVATION_BATCHES,
            partition=multi,
            tags=_event_tags(multi),
            metadata={
                FAILURE_KEY: dg.MetadataValue.text(message),
                "as_of": dg.MetadataValue.timestamp(as_of),
                "run_id": dg.MetadataValue.text(context.run.run_id),
            },
        )

    def recorded(outcome: SweepOutcome) -> Iterator[Any]:
        """The partition's events: its failure, or its two materializations and its checks."""
        key = outcome.plan.partition_key
        multi = scanner_day_partition_key(key)
        if outcome.error is not None:
            yield failure(key, outcome.error)
            return
        failpoint("before_materialization")
        candidates, batches = outcome.metadata(object_store)
        for asset_key, metadata in ((CANDIDATE_WINDOWS, candidates), (OBSERVATION_BATCHES, batches)):
            yield dg.AssetMaterialization(asset_key=asset_key, partition=multi, tags=_event_tags(multi), metadata=metadata)
        records.recorded(key, outcome.new_watermark)
        try:
            results = batch_check_results(
                context.instance, key, context.run.run_id, outcome.walk.observed, outcome.metadata_complete, clickhouse, postgres
            )
        except Exception as error:  # noqa: BLE001 - a check that cannot run fails itself, never the sweep
            context.log.warning(f"{key}: checks could not run: {error}")
            return
        for name, result in results:
            yield dg.AssetCheckEvaluation(
                asset_key=OBSERVATION_BATCHES, check_name=name, passed=result.passed, metadata=result.metadata, partition=multi
            )

    # Day by day, oldest first: a scanner's next day resumes from the watermark this batch
    # just recorded for the day before, as it would in a run after that day's run. Each
    # partition's events are yielded (stored) as soon as its observations are durable.
    ordered = processing_order(keys)
    for day in sorted({split_scanner_day_key(key)[0] for key in ordered}):
        plans = []
        for key in (k for k in ordered if split_scanner_day_key(k)[0] == day):
            scanner_id = split_scanner_day_key(key)[1]
            if scanner_id not in stored or scanner_id not in known:
                yield failure(key, scanner_store.UnknownScanner(scanner_id))
                continue
            try:
                plans.append(plan_sweep(records, key, stored[scanner_id], as_of))
            except (ScannerError, ValueError) as error:
                yield failure(key, error)
        # One quick retry of a partition for a blip, as the asset's RetryPolicy gives a partition's run.
        for outcome in sweep_plans(context.log, clickhouse, postgres, object_store, plans, config, retries=1):
            yield from recorded(outcome)
    context.log.info(
        f"swept {len(keys) - len(failed)} of {len(keys)} partitions as of {as_of.isoformat()} in "
        f"{time.monotonic() - started:.2f} s, {time.process_time() - started_cpu:.2f} CPU-s"
    )
    if failed:
        listed = "; ".join(f"{key}: {message}" for key, message in sorted(failed.items())[:10])
        more = f" (and {len(failed) - 10} more)" if len(failed) > 10 else ""
        raise dg.Failure(
            description=f"{len(failed)} of {len(keys)} partitions failed, the others are materialized: {listed}{more}",
            metadata={"failed_partitions": dg.MetadataValue.json(sorted(failed))},
            allow_retries=False,
        )


@dg.job(
    name="scanner_batch_job",
    description=(
        "Sweep many (scanner, day) partitions in one run (what the sweep sensor launches each tick); each "
        "partition is materialized on its own, with its own watermark."
    ),
)
def scanner_batch_job() -> None:
    sweep_partitions()
