"""`scanner_candidate_windows` and `observation_batches`: one sweep of one scanner over one day.

Both are materialized by one step, at its end, only on success: the new
watermark is recorded once the observations it covers are durable, and a
failed run records nothing, so the next run resumes from the last good one.
"""

import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg

from session_assets import observations, sql, watermarks
from session_assets.failpoints import failpoint
from session_assets.assets.rollups import read_rollup_records, session_counter_rollups
from session_assets.coverage import coverage, missing_days
from session_assets.partitions import daily_partitions_def, scanner_day_partitions_def
from session_assets.resources import ClickHouseResource, ObjectStoreResource, PostgresResource
from session_assets.run_context import BadRunTag, is_backfill, latest_materialization, latest_materializations, parse_as_of
from session_assets.scanners import ScannerError, compile_filter
from session_assets.scanners import store as scanner_store



class SweepConfig(dg.Config):
    """Run configuration of a sweep (the defaults suit production)."""

    page_size: int = 1000  # candidates per Postgres transaction and batch object
    # For teams without a quota row yet; 1..MAX_MONTHLY_QUOTA, checked with the run config.
    default_monthly_quota: observations.MonthlyQuota = observations.DEFAULT_MONTHLY_QUOTA

CANDIDATE_WINDOWS = dg.AssetKey("scanner_candidate_windows")
OBSERVATION_BATCHES = dg.AssetKey("observation_batches")

CANDIDATE_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("scanner_id", "String"),
        dg.TableColumn("team_id", "Int64"),
        dg.TableColumn("day", "Date", description="The (scanner, day) partition that found the session."),
        dg.TableColumn("session_id", "String"),
        dg.TableColumn("session_start", "DateTime64(6, 'UTC')"),
        dg.TableColumn("session_end", "DateTime64(6, 'UTC')", description="Keyset with session_id."),
        dg.TableColumn("duration_s", "Int64"),
        dg.TableColumn("event_count … cost_usd", "counters", description="The session counters the verdict used."),
        dg.TableColumn("late", "UInt8", description="Found again because its events arrived late."),
        dg.TableColumn("sampled", "UInt8", description="Passed the scanner's deterministic sample."),
        dg.TableColumn("window_id", "String", description="The sweep attempt that wrote the row."),
        dg.TableColumn("window_as_of", "DateTime64(6, 'UTC')", description="As-of time of that sweep."),
    ]
)
OBSERVATION_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("id", "bigint"),
        dg.TableColumn("team_id", "bigint"),
        dg.TableColumn("scanner_id", "text"),
        dg.TableColumn("session_id", "text", description="Unique per scanner: exactly one observation."),
        dg.TableColumn("day", "date"),
        dg.TableColumn("verdict", "text", description="The scanner kind's label, e.g. flagged / ok / match."),
        dg.TableColumn("score", "double precision"),
        dg.TableColumn("evidence", "jsonb"),
        dg.TableColumn("batch_key", "text", description="Object holding this observation (gzipped JSONL)."),
        dg.TableColumn("created_at", "timestamptz", description="Never changed by a retry."),
    ]
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CANDIDATE_WINDOWS,
            description=(
                "For each (scanner, day): the sessions of the scanner's team that ended after its watermark and "
                "went quiet (end at or before the frontier = min(day end, min(as-of, rollups' covered_until) - 35 "
                "min)), started within 26 h of the watermark, have a 1..128-character id, pass the filter, and the "
                "deterministic sample; plus sessions whose events arrived late (48 h horizon). Stored in the "
                "ClickHouse table `scanner_candidates`."
            ),
            deps=[session_counter_rollups],
            partitions_def=scanner_day_partitions_def,
            group_name="scanning",
            owners=["team:data-platform"],
            kinds={"clickhouse"},
            metadata={"dagster/column_schema": CANDIDATE_COLUMNS, "dagster/table_name": "scanner_candidates"},
        ),
        dg.AssetSpec(
            OBSERVATION_BATCHES,
            description=(
                "Exactly one observation per (scanner, session) in Postgres `observations`, written page by page "
                "in one transaction each (quota reserved in one conditional statement, ON CONFLICT DO NOTHING), "
                "each page also saved as a gzipped JSONL object "
                "observations/team=<t>/scanner=<s>/date=<d>/<seq>.jsonl.gz and listed in `observation_batches`. "
                "Its metadata holds the partition's watermark."
            ),
            deps=[CANDIDATE_WINDOWS],
            partitions_def=scanner_day_partitions_def,
            group_name="scanning",
            owners=["team:data-platform"],
            kinds={"postgres", "s3"},
            metadata={"dagster/column_schema": OBSERVATION_COLUMNS, "dagster/table_name": "observations"},
        ),
    ],
    can_subset=False,
    # Transient store errors (a page rolls back whole); invalid scanners raise non-retryable.
    # One quick retry for a blip; a longer outage is the sweep sensor's to retry, with backoff.
    retry_policy=dg.RetryPolicy(max_retries=1, delay=1),
)
def scanner_sweep(
    context: dg.AssetExecutionContext,
    config: SweepConfig,
    clickhouse: ClickHouseResource,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
):
    started = time.monotonic()
    # A sweep's process holds chDB's peaks (its INSERT, then the walk): before chDB
    # loads, ask it to return freed memory at once. Rollup runs keep the faster default.
    clickhouse.prefer_memory_to_speed()
    keys = context.partition_key.keys_by_dimension
    day, scanner_id = date.fromisoformat(keys["date"]), keys["scanner"]
    try:
        as_of = parse_as_of(context.run.tags)
    except BadRunTag as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    backfill = is_backfill(context.run.tags)
    pool = postgres.pool()

    stored = scanner_store.get(pool, scanner_id)
    try:
        scanner = stored.valid()
        compiled = compile_filter(scanner.filter)
    except ScannerError as error:
        # A definition that no longer validates will not start validating on retry.
        raise dg.Failure(description=f"scanner {scanner_id!r} is invalid: {error}", allow_retries=False) from error

    start = _starting_point(context, day, stored.start_at, backfill)
    bounds = watermarks.window(start.watermark, stored.start_at)
    read_days = bounds.read_days(as_of)
    records = read_rollup_records(context.instance, read_days)
    first_day = daily_partitions_def.start.date()
    seen = watermarks.seen_until(as_of, coverage(read_days, records, first_day))
    frontier = watermarks.frontier(day, seen)
    context.log.info(
        f"sweeping {scanner_id} for {day} as of {as_of.isoformat()}: from {_iso(start.watermark.end)} "
        f"{start.watermark.session_id!r} ({start.source}), rollups {read_days[0]}..{read_days[-1]} seen until "
        f"{_iso(seen)}, frontier {_iso(frontier)}"
    )

    counts = {"candidates": 0, "sampled_out": 0, "late_candidates": 0}
    walk = observations.WalkResult()
    window_started = time.monotonic()
    if frontier is not None:
        window_id = uuid.uuid4().hex  # this attempt's rows only: a retry never walks a failed one's
        params = candidate_params(clickhouse, bounds, frontier, seen, read_days, compiled, scanner, day, as_of, window_id)
        client = clickhouse.client()
        insert = sql.with_filter(sql.load("clickhouse/candidates_insert.sql"), compiled.sql)
        # In-process chDB shares the run's memory and cores with Postgres and Python:
        # on one thread the INSERT peaked ~45 MB lower over 1M sessions, no slower on
        # two cores. A server keeps its own threads.
        client.command(insert, parameters=sql.bind(insert, params), settings={"max_threads": 1} if clickhouse.embedded else None)
        failpoint("after_candidates_insert")
        window_seconds = time.monotonic() - window_started
        walk_sql = sql.load("clickhouse/candidates_walk.sql")
        with client.query_row_block_stream(
            walk_sql, parameters=sql.bind(walk_sql, params), settings={"max_block_size": config.page_size}
        ) as stream:
            rows = (row for block in stream for row in block)
            walk = observations.walk(
                pool,
                object_store,
                scanner,
                day,
                as_of,
                observations.pages(rows, config.page_size),
                config.default_monthly_quota,
            )
        # Counted after the walk: by then background merges have folded the window's
        # many small parts, which a FINAL read would otherwise hold at once (+60-80 MB
        # at 1M candidates, the sweep's peak when it ran before the walk).
        stats_started = time.monotonic()
        stats = clickhouse.query("candidates_stats", scanner_id=scanner.id, team_id=scanner.team_id, day=day, window_id=window_id)
        counts = dict(zip(("candidates", "sampled_out", "late_candidates"), map(int, stats.result_rows[0])))
        window_seconds += time.monotonic() - stats_started
    else:
        window_seconds = 0.0
        missing = missing_days(read_days, records, first_day)
        context.log.warning(
            f"rollups of {', '.join(map(str, missing))} are not materialized yet: nothing to sweep, watermark kept"
        )

    failpoint("before_materialization")
    new_watermark = watermarks.next_watermark(start.watermark, frontier, walk.last_handled, walk.stopped_at, seen)
    complete = watermarks.is_complete(day, frontier, walk.finished)
    quota_skipped = counts["candidates"] - walk.handled if not walk.finished else 0
    shared = {
        "watermark_end": dg.MetadataValue.timestamp(new_watermark.end),
        "watermark_session_id": dg.MetadataValue.text(new_watermark.session_id),
        "seen_until": dg.MetadataValue.timestamp(new_watermark.seen_until)
        if new_watermark.seen_until
        else dg.MetadataValue.text("nothing seen yet"),
        "frontier": dg.MetadataValue.timestamp(frontier) if frontier else dg.MetadataValue.text("no rollups yet"),
        "complete": dg.MetadataValue.bool(complete),
        "quota_stopped": dg.MetadataValue.bool(not walk.finished),
        "as_of": dg.MetadataValue.timestamp(as_of),
        "resumed_from": dg.MetadataValue.text(f"{start.source}: {start.watermark.end.isoformat()} {start.watermark.session_id}".strip()),
        "scanner": dg.MetadataValue.text(f"{scanner.id} (team {scanner.team_id}, {scanner.kind})"),
    }
    yield dg.MaterializeResult(
        asset_key=CANDIDATE_WINDOWS,
        metadata={
            **shared,
            **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
            "window_duration_s": dg.MetadataValue.float(round(window_seconds, 3)),
            "dagster/row_count": dg.MetadataValue.int(counts["candidates"]),
        },
    )
    yield dg.MaterializeResult(
        asset_key=OBSERVATION_BATCHES,
        metadata={
            **shared,
            "observed": dg.MetadataValue.int(walk.observed),
            "deduplicated": dg.MetadataValue.int(walk.deduplicated),
            "quota_skipped": dg.MetadataValue.int(quota_skipped),
            "sampled_out": dg.MetadataValue.int(counts["sampled_out"]),
            "candidates": dg.MetadataValue.int(counts["candidates"]),
            "batches": dg.MetadataValue.int(len(walk.batch_keys)),
            "batch_keys": dg.MetadataValue.json([object_store.location(k) for k in walk.batch_keys]),
            "last_batch": dg.MetadataValue.path(object_store.location(walk.batch_keys[-1])) if walk.batch_keys else dg.MetadataValue.text("none"),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        },
    )


def candidate_params(
    clickhouse: ClickHouseResource,
    bounds: watermarks.Window,
    frontier: datetime,
    seen: datetime,
    read_days: list[date],
    compiled: Any,
    scanner: Any,
    day: date,
    as_of: datetime,
    window_id: str,
) -> dict[str, Any]:
    """The bound parameters of one window's candidates INSERT, walk and stats: what the sweep
    saw (`seen`, the events its rollups cover) bounds the events its filter looks at too."""
    return {
        **clickhouse.table_params(),
        **bounds.params(frontier),
        **compiled.params,
        "read_from": read_days[0],
        "read_until": read_days[-1],
        "scanner_id": scanner.id,
        "team_id": scanner.team_id,
        "day": day,
        "sample_threshold": scanner.sample_threshold,
        "as_of": as_of,
        "seen_until": seen,
        "window_id": window_id,
    }


def _starting_point(context: dg.AssetExecutionContext, day: date, scanner_start: datetime, backfill: bool):
    own = previous = earlier = None
    scanner_id = context.partition_key.keys_by_dimension["scanner"]
    if not backfill:
        own = _watermark(context.instance, context.partition_key)
        if own is None:
            previous = _watermark(context.instance, dg.MultiPartitionKey({"date": (day - timedelta(days=1)).isoformat(), "scanner": scanner_id}))
        if own is None and previous is None:
            earlier = earlier_watermark(context.instance, scanner_id, scanner_start.date(), day - timedelta(days=1))
    return watermarks.starting_point(day, scanner_start, own, previous, backfill, earlier)


# How far back a partition without a watermark of its own or of the day before looks for
# the scanner's last one (a scanner re-enabled after a long pause resumes where it stopped).
RESUME_LOOKBACK_DAYS = 400


def earlier_watermark(
    instance: dg.DagsterInstance, scanner_id: str, first_day: date, before: date
) -> watermarks.Watermark | None:
    """The newest watermark of the scanner's partitions of days before `before` (two bounded queries)."""
    first = max(first_day, before - timedelta(days=RESUME_LOOKBACK_DAYS))
    keys = [f"{(first + timedelta(days=n)).isoformat()}|{scanner_id}" for n in range((before - first).days)]
    found = [watermarks.Watermark.from_metadata(values) for values in latest_materializations(instance, OBSERVATION_BATCHES, keys).values()]
    marks = [m for m in found if m is not None]
    return max(marks, key=lambda m: m.key) if marks else None


def _watermark(instance: dg.DagsterInstance, partition_key: str) -> watermarks.Watermark | None:
    found = latest_materialization(instance, OBSERVATION_BATCHES, partition_key)
    return watermarks.Watermark.from_metadata(found[0]) if found else None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "none"
