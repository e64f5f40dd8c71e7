"""`session_counter_rollups`: per-(team, session, day) counters, rolled up inside ClickHouse."""


import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, Mapping

import dagster as dg

from session_assets import settings
from session_assets.assets.events import events
from session_assets.assets.events import observation as events_observation
from session_assets.core.coverage import VISIBILITY_LAG, day_coverage, late_horizon
from session_assets.core.days import day_start, is_complete
from session_assets.core.records import RollupRecord
from session_assets.core.run_context import (
    is_backfill,
    latest_materializations,
    parse_as_of,
)
from session_assets.partitions import daily_partitions_def
from session_assets.resources import ClickHouseResource

# The latency goal, session end -> observation: 45 min (35 to settle, then a tick or two).
# A sweep materializes both assets every tick; one not updated for this long is stale.
LATENCY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=45), warn_window=timedelta(minutes=15))

# `entry_url` is the visitor's $current_url: unbounded, so the rollup keeps its first
# 2,048 characters (browsers' and CDNs' customary URL limit).
MAX_ENTRY_URL_CHARS = 2048
# `distinct_id` is set by the visitor's client too: the rollup keeps its first 1,024
# characters, five times PostHog's own limit (200), so every id PostHog stores stays whole.
MAX_DISTINCT_ID_CHARS = 1024

ROLLUP_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("team_id", "Int64", description="Owning team."),
        dg.TableColumn("day", "Date", description="UTC day of the events counted in this row."),
        dg.TableColumn("session_id", "String", description="The events' $session_id."),
        dg.TableColumn("distinct_id", "String", description="distinct_id of the day's first event, its first 1,024 characters."),
        dg.TableColumn("first_timestamp", "DateTime64(6, 'UTC')", description="First event of the session that day."),
        dg.TableColumn("last_timestamp", "DateTime64(6, 'UTC')", description="Last event of the session that day."),
        dg.TableColumn("event_count", "UInt64", description="All events."),
        dg.TableColumn("pageview_count", "UInt64", description="$pageview events."),
        dg.TableColumn("autocapture_count", "UInt64", description="$autocapture events."),
        dg.TableColumn("rageclick_count", "UInt64", description="$rageclick events."),
        dg.TableColumn("exception_count", "UInt64", description="$exception events."),
        dg.TableColumn("ai_generation_count", "UInt64", description="$ai_generation events (AI turns)."),
        dg.TableColumn("input_tokens", "UInt64", description="Sum of $ai_input_tokens."),
        dg.TableColumn("output_tokens", "UInt64", description="Sum of $ai_output_tokens."),
        dg.TableColumn("cost_usd", "Decimal(38, 12)", description="Sum of $ai_total_cost_usd, exact decimal."),
        dg.TableColumn("entry_url", "String", description="$current_url of the day's first $pageview, its first 2,048 characters."),
        dg.TableColumn("max_inserted_at", "DateTime64(6, 'UTC')", description="Newest inserted_at counted."),
        dg.TableColumn("computed_as_of", "DateTime64(6, 'UTC')", description="As-of time of the computation (row version)."),
    ]
)


@dataclass(frozen=True)
class RollupPlan:
    """What one materialization of a rollup day recomputes."""

    day: date
    as_of: datetime
    mode: Literal["full", "incremental"]
    since: datetime | None  # incremental: the day's keys with events inserted after this are re-rolled
    # Earlier days (rolled before) whose keys with events inserted after their own
    # `since` are re-rolled: late data. Every run does this pass, full ones too.
    late_since: Mapping[date, datetime] = field(default_factory=dict)

    @property
    def day_start(self) -> datetime:
        return day_start(self.day)

    @property
    def day_end(self) -> datetime:
        return day_start(self.day) + timedelta(days=1)

    @property
    def complete(self) -> bool:
        return is_complete(self.day, self.as_of)


def plan_rollup(
    day: date,
    as_of: datetime,
    records: Mapping[date, RollupRecord],
    backfill: bool,
    start_date: date,
) -> RollupPlan:
    """Full recompute for backfills, first runs and re-runs of the past; else incremental.

    `records` are the latest rollup records of the day and the 7 before it. Each
    read starts VISIBILITY_LAG before the coverage it continues, so an event
    stamped just before it but visible only after it is not missed.
    """
    late_since = {
        d: covered - VISIBILITY_LAG
        for d in late_horizon(day, start_date)
        if (covered := day_coverage(d, records)) is not None
    }
    own = records.get(day)
    if backfill or own is None or as_of <= own.covered_until:
        return RollupPlan(day, as_of, "full", None, late_since)
    return RollupPlan(day, as_of, "incremental", own.covered_until - VISIBILITY_LAG, late_since)


@dg.asset(
    description=(
        "Per-session counters for each UTC day: events, pageviews, autocaptures, rage clicks, "
        "exceptions, AI turns, tokens and cost, first/last timestamps and entry URL, one row per "
        "(team, session, day). Rolled up inside ClickHouse (`INSERT ... SELECT`). A sweep re-rolls only "
        "sessions that received events since the partition's `covered_until`, and re-rolls earlier "
        "days that received late events; a backfill recomputes the whole day. Rows replace, never add: "
        "counters always equal a fresh aggregation of raw events. The `sessions` view folds days together."
    ),
    partitions_def=daily_partitions_def,
    deps=[events],
    group_name="sessions",
    owners=["team:data-platform"],
    kinds={"clickhouse"},
    metadata={"dagster/column_schema": ROLLUP_SCHEMA, "dagster/table_name": f"{settings.clickhouse_database_name()}.session_counter_rollups_v2"},
    freshness_policy=LATENCY_FRESHNESS,
)
def session_counter_rollups(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource) -> dg.MaterializeResult:
    started = time.monotonic()
    missing = clickhouse.missing_events_table()
    if missing:
        # Configuration, not a blip: a retry would fail the same way.
        raise dg.Failure(description=f"cannot roll up: {missing}", allow_retries=False)
    day = date.fromisoformat(context.partition_key)
    tags = context.run.tags
    as_of = parse_as_of(tags)
    start_date = daily_partitions_def.start.date()
    records = read_rollup_records(context.instance, [*late_horizon(day, start_date), day])
    plan = plan_rollup(day, as_of, records, is_backfill(tags), start_date)
    since = plan.since.isoformat() if plan.since else "the start of the day"
    context.log.info(f"rolling up {day} as of {as_of.isoformat()} ({plan.mode}, since {since})")

    late_days: list[date] = []
    if plan.late_since:
        checked = sorted(plan.late_since)
        late_days = [
            row[0]
            for row in clickhouse.query(
                "rollup_late_days",
                late_days=checked,
                late_since=[plan.late_since[d] for d in checked],
                min_since=min(plan.late_since.values()),
                as_of=as_of,
                range_start=day_start(checked[0]),
                range_end=day_start(checked[-1]) + timedelta(days=1),
            ).result_rows
        ]
    incremental = {d: plan.late_since[d] for d in late_days}
    if plan.mode == "incremental":
        incremental[day] = plan.since
    clickhouse.command(
        "rollup_sessions", **rollup_params(as_of, full_days=[day] if plan.mode == "full" else [], incremental=incremental)
    )
    sessions, event_total, recomputed = clickhouse.query("rollup_partition_stats", day=day, as_of=as_of).result_rows[0]
    duration = time.monotonic() - started
    if late_days:
        context.log.info(f"re-rolled late events of {', '.join(map(str, late_days))}")
    if day == as_of.date():
        # The rollups read `events` every tick: the UI shows what they saw as its observation.
        context.log_event(events_observation(clickhouse))
    return dg.MaterializeResult(
        metadata={
            **RollupRecord(as_of, plan.complete, as_of, frozenset(plan.late_since)).to_metadata(),
            "mode": dg.MetadataValue.text(plan.mode),
            "rows": dg.MetadataValue.int(int(recomputed)),
            "sessions": dg.MetadataValue.int(int(sessions)),
            "events": dg.MetadataValue.int(int(event_total or 0)),
            "late_days": dg.MetadataValue.json([d.isoformat() for d in late_days]),
            "duration_s": dg.MetadataValue.float(round(duration, 3)),
            "dagster/row_count": dg.MetadataValue.int(int(sessions)),
        }
    )


def rollup_params(as_of: datetime, full_days: list[date], incremental: Mapping[date, datetime]) -> dict:
    """The parameters of `rollup_sessions.sql`: whole days, and days re-rolled from a `since` each."""
    days = sorted({*full_days, *incremental})
    return {
        "as_of": as_of,
        "max_url_chars": MAX_ENTRY_URL_CHARS,
        "max_distinct_id_chars": MAX_DISTINCT_ID_CHARS,
        "days": days,
        "full_days": sorted(full_days),
        "incremental_days": sorted(incremental),
        "incremental_since": [incremental[d] for d in sorted(incremental)],
        # Nothing incremental: a bound past every row, so the inner scan reads nothing.
        "min_since": min(incremental.values(), default=as_of),
        "range_start": day_start(days[0]),
        "range_end": day_start(days[-1]) + timedelta(days=1),
    }


def read_rollup_records(instance: dg.DagsterInstance, days: list[date]) -> dict[date, RollupRecord]:
    """The latest rollup record of each day that has one (two bounded queries)."""
    found = latest_materializations(instance, session_counter_rollups.key, [d.isoformat() for d in days])
    records = {date.fromisoformat(key): RollupRecord.from_metadata(values) for key, values in found.items()}
    return {d: r for d, r in records.items() if r is not None}
