"""`events`: the PostHog-shaped events table, an observable source."""


from datetime import datetime, timedelta, timezone

import dagster as dg

from session_assets.resources import ClickHouseResource

EVENTS_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("uuid", "UUID", description="Event id."),
        dg.TableColumn("event", "String", description="Event name: $pageview, $autocapture, $ai_generation, ..."),
        dg.TableColumn("properties", "String", description="JSON object of event properties."),
        dg.TableColumn("timestamp", "DateTime64(6, 'UTC')", description="When the event happened."),
        dg.TableColumn("team_id", "Int64", description="Owning team (project)."),
        dg.TableColumn("distinct_id", "String", description="The person's distinct id."),
        dg.TableColumn("$session_id", "String", description="Session id from the SDK; 1 to 128 characters."),
        dg.TableColumn("inserted_at", "DateTime64(6, 'UTC')", description="When the event reached ClickHouse."),
    ]
)

# Observing the whole table would scan a column of all history; recent activity is what moves.
OBSERVATION_WINDOW = timedelta(days=2)


@dg.observable_source_asset(
    description=(
        "Raw product-analytics events in ClickHouse, PostHog's `events` shape "
        "(SESSION_ASSETS_EVENTS_TABLE; by default `events` in the project's database). "
        "Observing it records the newest `inserted_at` as the data version."
    ),
    group_name="sessions",
    owners=["team:data-platform"],
    kinds={"clickhouse"},
    metadata={"dagster/column_schema": EVENTS_COLUMNS},
)
def events(clickhouse: ClickHouseResource) -> dg.ObserveResult:
    since = datetime.now(timezone.utc) - OBSERVATION_WINDOW
    recent_events, newest_inserted_at = clickhouse.query("events_recent", since=since).result_rows[0]
    return dg.ObserveResult(
        data_version=dg.DataVersion(str(newest_inserted_at or "empty")),
        metadata={
            "table": dg.MetadataValue.text(f"{clickhouse.events.database}.{clickhouse.events.table}"),
            "events_last_2_days": dg.MetadataValue.int(int(recent_events)),
            "newest_inserted_at": dg.MetadataValue.text(str(newest_inserted_at) if newest_inserted_at else "none"),
        },
    )
