"""Asset checks an analyst sees in the UI.

Checks run with every sweep, so each costs a fraction of it: with the sweep
they compare only what that run recomputed; when a day completes, or when the
check is launched on its own, they compare the whole partition.
"""

from datetime import date, timedelta
from typing import Any

import dagster as dg

from session_assets.assets.rollups import session_counter_rollups
from session_assets.assets.scanning import OBSERVATION_BATCHES
from session_assets.core import records
from session_assets.core.coverage import VISIBILITY_LAG
from session_assets.core.days import day_start
from session_assets.core.run_context import latest_materialization, metadata_time
from session_assets.core.watermarks import LOOKBACK
from session_assets.partitions import (
    daily_partitions_def,
    scanner_day_partitions_def,
    split_scanner_day_key,
)
from session_assets.resources import ClickHouseResource, PostgresResource
from session_assets.scanners import ScannerError, compile_filter
from session_assets.scanners import store as scanner_store
from session_assets.stores import sql


def rollup_check_scope(materialized_by_this_run: bool, mode: str, complete: bool, was_complete: bool) -> str:
    """'full' or 'recomputed': which rows the counters check compares."""
    if not materialized_by_this_run:
        return "full"  # launched on demand
    if complete and not was_complete:
        return "full"  # the day just settled: verify it once, whole
    return "recomputed"


@dg.asset_check(
    asset=session_counter_rollups,
    partitions_def=daily_partitions_def,
    description=(
        "Rollup counters equal a fresh aggregation of the raw events (inserted up to the partition's "
        "covered_until). With a sweep, only the sessions that run recomputed are compared; when the day "
        "completes or when launched on its own, the whole day."
    ),
)
def rollup_counters_match_events(
    context: dg.AssetCheckExecutionContext, clickhouse: ClickHouseResource
) -> dg.AssetCheckResult:
    partition_key = context.partition_key
    day = date.fromisoformat(partition_key)
    latest = latest_materialization(context.instance, session_counter_rollups.key, partition_key)
    if latest is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "partition never materialized"})
    values, run_id = latest
    as_of = metadata_time(values[records.COVERED_UNTIL])
    scope = rollup_check_scope(
        materialized_by_this_run=run_id == context.run.run_id,
        mode=str(values.get("mode")),
        complete=bool(values.get(records.COMPLETE)),
        was_complete=_was_complete_before(context, partition_key, run_id),
    )
    compared, without_events, not_rolled_up, differ, examples = clickhouse.query(
        "rollup_check",
        day=day,
        day_start=day_start(day),
        day_end=day_start(day) + timedelta(days=1),
        as_of=as_of,
        full=scope == "full",
    ).result_rows[0]
    return dg.AssetCheckResult(
        passed=without_events == 0 and not_rolled_up == 0 and differ == 0,
        metadata={
            "scope": scope,
            "as_of": dg.MetadataValue.timestamp(as_of),
            "sessions_compared": int(compared),
            "counters_differ": int(differ),
            "rows_without_events": int(without_events),
            "sessions_not_rolled_up": int(not_rolled_up),
            "examples": dg.MetadataValue.json(list(examples)),
        },
    )


def _was_complete_before(context: dg.AssetCheckExecutionContext, partition_key: str, run_id: str) -> bool:
    """Whether the materialization before `run_id`'s already marked the day complete."""
    newest_two = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=session_counter_rollups.key, asset_partitions=[partition_key]), limit=2
    ).records
    earlier = [r for r in newest_two if r.run_id != run_id]
    if not earlier or earlier[0].asset_materialization is None:
        return False
    record = records.RollupRecord.from_metadata(earlier[0].asset_materialization.metadata)
    return record is not None and record.complete


@dg.asset_check(
    asset=OBSERVATION_BATCHES,
    partitions_def=scanner_day_partitions_def,
    description=(
        "Every observation the partition wrote is of a session that ended at or before its watermark: "
        "a sweep observes settled sessions only (end at or before its frontier)."
    ),
)
def observations_behind_watermark(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    return evaluate_observations_behind_watermark(context.instance, str(context.partition_key), postgres)


def evaluate_observations_behind_watermark(
    instance: dg.DagsterInstance, partition_key: str, postgres: PostgresResource
) -> dg.AssetCheckResult:
    scanner_id, day = _scanner_day(partition_key)
    latest = latest_materialization(instance, OBSERVATION_BATCHES, partition_key)
    watermark = records.watermark_of(latest[0]) if latest else None
    if watermark is None:
        return dg.AssetCheckResult(passed=True, metadata={"reason": "partition never swept"})
    with postgres.pool().connection() as conn:
        past, examples = conn.execute(
            sql.load("postgres/check_observations_past_watermark.sql"),
            {"scanner_id": scanner_id, "day": day, "watermark_end": watermark.end},
        ).fetchone()
    return dg.AssetCheckResult(
        passed=past == 0,
        metadata={
            "watermark_end": dg.MetadataValue.timestamp(watermark.end),
            "observations_past_watermark": int(past),
            "examples": dg.MetadataValue.json(list(examples)),
        },
    )


@dg.asset_check(
    asset=OBSERVATION_BATCHES,
    partitions_def=scanner_day_partitions_def,
    description=(
        "No session the watermark passed is unobserved: the eligibility rule is re-counted from the rollups "
        "over the partition's day (sessions of the team, ended after the day start or the scanner start and at "
        "or before the watermark, within the lookback, settled, sampled, passing the current filter) and each "
        "must have an observation. Runs when the day completes, or when launched on its own; open partitions "
        "are verified then."
    ),
)
def no_session_behind_watermark_unobserved(
    context: dg.AssetCheckExecutionContext, clickhouse: ClickHouseResource, postgres: PostgresResource
) -> dg.AssetCheckResult:
    return evaluate_no_session_behind_watermark_unobserved(
        context.instance, str(context.partition_key), context.run.run_id, clickhouse, postgres
    )


def evaluate_no_session_behind_watermark_unobserved(
    instance: dg.DagsterInstance,
    partition_key: str,
    this_run_id: str,
    clickhouse: ClickHouseResource,
    postgres: PostgresResource,
) -> dg.AssetCheckResult:
    scanner_id, day = _scanner_day(partition_key)
    latest = latest_materialization(instance, OBSERVATION_BATCHES, partition_key)
    if latest is None:
        return dg.AssetCheckResult(passed=True, metadata={"reason": "partition never swept"})
    values, run_id = latest
    watermark = records.watermark_of(values)
    swept_by_this_run = run_id == this_run_id
    if swept_by_this_run and not values.get(records.COMPLETE):
        return dg.AssetCheckResult(passed=True, metadata={"scope": "open: verified when the day completes"})
    if watermark is None or watermark.seen_until is None:
        return dg.AssetCheckResult(passed=True, metadata={"scope": "nothing seen yet"})
    pool = postgres.pool()
    stored = scanner_store.get(pool, scanner_id)
    try:
        scanner = stored.valid()
        compiled = compile_filter(scanner.filter)
    except ScannerError as error:
        return dg.AssetCheckResult(passed=False, metadata={"reason": f"scanner {scanner_id!r} is invalid: {error}"})
    lower = max(day_start(day), stored.start_at)
    query = sql.with_filter(sql.load("clickhouse/check_sessions_behind_watermark.sql"), compiled.sql)
    params = {
        **clickhouse.table_params(),
        **compiled.params,
        "scanner_id": scanner.id,
        "team_id": scanner.team_id,
        "sample_threshold": scanner.sample_threshold,
        "lower": lower,
        "watermark_end": watermark.end,
        "watermark_session_id": watermark.session_id,
        "settled_inserts": watermark.seen_until - VISIBILITY_LAG,
        "read_from": day - timedelta(days=2),
        "read_until": day + timedelta(days=2),
        # The filter's event conditions: the events the sweeps saw, in the sessions' span.
        "window_start": lower - LOOKBACK,
        "window_end": watermark.end,
        "seen_until": watermark.seen_until,
    }
    client = clickhouse.client()
    checked, unobserved = 0, []
    with client.query_row_block_stream(query, parameters=sql.bind(query, params)) as stream:
        for block in stream:
            ids = [row[0] for row in block]
            checked += len(ids)
            with pool.connection() as conn:
                unobserved += [
                    row[0]
                    for row in conn.execute(
                        sql.load("postgres/check_unobserved.sql"), {"session_ids": ids, "scanner_id": scanner.id}
                    )
                ]
    return dg.AssetCheckResult(
        passed=not unobserved,
        metadata={
            "scope": "day complete" if values.get(records.COMPLETE) else "up to the watermark",
            "sessions_checked": checked,
            "unobserved": len(unobserved),
            "examples": dg.MetadataValue.json(unobserved[:5]),
            "watermark_end": dg.MetadataValue.timestamp(watermark.end),
        },
    )


@dg.asset_check(
    asset=OBSERVATION_BATCHES,
    partitions_def=scanner_day_partitions_def,
    description="The scanner's team never used more observations than its monthly quota.",
)
def team_quota_not_exceeded(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    return evaluate_team_quota_not_exceeded(str(context.partition_key), postgres)


def evaluate_team_quota_not_exceeded(partition_key: str, postgres: PostgresResource) -> dg.AssetCheckResult:
    scanner_id, _ = _scanner_day(partition_key)
    pool = postgres.pool()
    team_id = scanner_store.get(pool, scanner_id).row["team_id"]
    with pool.connection() as conn:
        over = conn.execute(sql.load("postgres/check_quota.sql"), {"team_id": team_id}).fetchone()[0]
    return dg.AssetCheckResult(passed=over == 0, metadata={"team_id": int(team_id), "periods_over_limit": int(over)})


@dg.asset_check(
    asset=OBSERVATION_BATCHES,
    partitions_def=scanner_day_partitions_def,
    description="The partition's watermark (end, session_id) never moved backwards between materializations.",
)
def watermark_never_moves_backwards(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return evaluate_watermark_never_moves_backwards(context.instance, str(context.partition_key))


def evaluate_watermark_never_moves_backwards(instance: dg.DagsterInstance, partition_key: str) -> dg.AssetCheckResult:
    newest_two = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OBSERVATION_BATCHES, asset_partitions=[partition_key]), limit=2
    ).records
    marks = [records.watermark_of(r.asset_materialization.metadata) for r in newest_two if r.asset_materialization is not None]
    if len(marks) < 2 or None in marks:
        return dg.AssetCheckResult(passed=True, metadata={"compared": len(marks)})
    latest, before = marks
    return dg.AssetCheckResult(
        passed=latest.key >= before.key,
        metadata={
            "watermark": dg.MetadataValue.timestamp(latest.end),
            "previous_watermark": dg.MetadataValue.timestamp(before.end),
        },
    )


def _scanner_day(partition_key: Any) -> tuple[str, date]:
    day, scanner_id = split_scanner_day_key(partition_key)
    return scanner_id, day


def batch_check_results(
    instance: dg.DagsterInstance,
    partition_key: str,
    run_id: str,
    observed: int,
    completed: bool,
    clickhouse: ClickHouseResource,
    postgres: PostgresResource,
) -> list[tuple[str, dg.AssetCheckResult]]:
    """The checks a batch run evaluates for one partition it materialized: those about what
    it wrote when it observed something, the eligibility re-count when its day completed.
    (A partition's run evaluates all four every time; a batch of 1,000 partitions would
    spend most of its time on checks of partitions where nothing happened.)"""
    results = []
    if observed:
        results += [
            ("observations_behind_watermark", evaluate_observations_behind_watermark(instance, partition_key, postgres)),
            ("team_quota_not_exceeded", evaluate_team_quota_not_exceeded(partition_key, postgres)),
            ("watermark_never_moves_backwards", evaluate_watermark_never_moves_backwards(instance, partition_key)),
        ]
    if completed:
        results.append(
            (
                "no_session_behind_watermark_unobserved",
                evaluate_no_session_behind_watermark_unobserved(instance, partition_key, run_id, clickhouse, postgres),
            )
        )
    return results
