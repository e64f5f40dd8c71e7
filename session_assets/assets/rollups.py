"""`session_counter_rollups`: per-(team, session, day) counters, rolled up inside ClickHouse."""


import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import dagster as dg

from session_assets.assets.events import events
from session_assets.days import day_start, is_complete
from session_assets.partitions import daily_partitions_def
from session_assets.resources import ClickHouseResource
from session_assets.run_context import is_backfill, latest_materialization, metadata_time, parse_as_of

# Re-read a little before the previous as-of time: an event stamped just before
# it may only have become visible just after.
INCREMENTAL_OVERLAP = timedelta(minutes=5)
# How far back a sweep looks for late events of earlier days. Older late data
# needs a hand backfill; the bound keeps the scan of `inserted_at` small.
LATE_HORIZON = timedelta(days=7)

ROLLUP_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("team_id", "Int64", description="Owning team."),
        dg.TableColumn("day", "Date", description="UTC day of the events counted in this row."),
        dg.TableColumn("session_id", "String", description="The events' $session_id."),
        dg.TableColumn("distinct_id", "String", description="distinct_id of the day's first event."),
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
        dg.TableColumn("entry_url", "String", description="$current_url of the day's first $pageview."),
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
    since: datetime | None  # incremental: events inserted after this are re-rolled
    late_horizon_start: datetime | None  # incremental: earliest day checked for late events

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
    previous_covered_until: datetime | None,
    backfill: bool,
    start_date: date,
) -> RollupPlan:
    """Full recompute for backfills, first runs and re-runs of the past; else incremental."""
    if backfill or previous_covered_until is None or as_of <= previous_covered_until:
        return RollupPlan(day, as_of, "full", None, None)
    horizon = max(day_start(start_date), day_start(day) - LATE_HORIZON)
    return RollupPlan(day, as_of, "incremental", previous_covered_until - INCREMENTAL_OVERLAP, horizon)


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
    metadata={"dagster/column_schema": ROLLUP_COLUMNS, "dagster/table_name": "session_counter_rollups_v2"},
)
def session_counter_rollups(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource) -> dg.MaterializeResult:
    started = time.monotonic()
    day = date.fromisoformat(context.partition_key)
    tags = context.run.tags
    as_of = parse_as_of(tags)
    previous = latest_materialization(context.instance, context.asset_key, context.partition_key)
    previous_covered_until = metadata_time(previous[0].get("covered_until")) if previous else None
    plan = plan_rollup(day, as_of, previous_covered_until, is_backfill(tags), daily_partitions_def.start.date())
    context.log.info(f"rolling up {day} as of {as_of.isoformat()} ({plan.mode}, since {plan.since})")

    late_days: list[date] = []
    if plan.mode == "incremental":
        late_days = [
            row[0]
            for row in clickhouse.query(
                "rollup_late_days",
                since=plan.since,
                as_of=as_of,
                horizon_start=plan.late_horizon_start,
                day_start=plan.day_start,
            ).result_rows
        ]
    days = sorted({day, *late_days})
    clickhouse.command(
        "rollup_sessions",
        full=plan.mode == "full",
        since=plan.since or plan.as_of,
        as_of=as_of,
        days=days,
        range_start=day_start(days[0]),
        range_end=day_start(days[-1]) + timedelta(days=1),
    )
    sessions, event_total, recomputed = clickhouse.query("rollup_partition_stats", day=day, as_of=as_of).result_rows[0]
    duration = time.monotonic() - started
    if late_days:
        context.log.info(f"re-rolled late events of {', '.join(map(str, late_days))}")
    return dg.MaterializeResult(
        metadata={
            "covered_until": dg.MetadataValue.timestamp(as_of),
            "complete": dg.MetadataValue.bool(plan.complete),
            "mode": dg.MetadataValue.text(plan.mode),
            "rows": dg.MetadataValue.int(int(recomputed)),
            "sessions": dg.MetadataValue.int(int(sessions)),
            "events": dg.MetadataValue.int(int(event_total or 0)),
            "late_days": dg.MetadataValue.json([d.isoformat() for d in late_days]),
            "duration_s": dg.MetadataValue.float(round(duration, 3)),
            "dagster/row_count": dg.MetadataValue.int(int(sessions)),
        }
    )
