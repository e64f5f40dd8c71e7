"""`events`: the PostHog-shaped events table, an observable source."""


from datetime import datetime, timedelta, timezone

import dagster as dg

from session_assets import settings
from session_assets.resources import ClickHouseResource

EVENTS_SCHEMA = dg.TableSchema(
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


EVENTS = dg.AssetSpec(
    "events",
    description=(
        "Raw product-analytics events in ClickHouse, PostHog's `events` shape "
        "(SESSION_ASSETS_EVENTS_TABLE; by default `events` in the project's database). "
        "Observed by every rollup run (and by Observe in the UI): its events of the last two "
        "days and the newest `inserted_at`, the data version."
    ),
    group_name="sessions",
    owners=["team:data-platform"],
    kinds={"clickhouse"},
    metadata={"dagster/column_schema": EVENTS_SCHEMA, "dagster/table_name": settings.events_table_name()},
)


def observation_metadata(clickhouse: ClickHouseResource) -> tuple[dg.DataVersion, dict[str, dg.MetadataValue]]:
    since = datetime.now(timezone.utc) - OBSERVATION_WINDOW
    recent_events, newest_inserted_at = clickhouse.query("events_recent", since=since).result_rows[0]
    newest = newest_inserted_at.replace(tzinfo=timezone.utc) if newest_inserted_at else None
    return dg.DataVersion(newest.isoformat() if newest else "empty"), {
        "dagster/table_name": dg.MetadataValue.text(f"{clickhouse.events.database}.{clickhouse.events.table}"),
        "events_last_2_days": dg.MetadataValue.int(int(recent_events)),
        "newest_inserted_at": dg.MetadataValue.timestamp(newest) if newest else dg.MetadataValue.text("none"),
    }


def observation(clickhouse: ClickHouseResource) -> dg.AssetObservation:
    """What a rollup run logs of `events`."""
    version, metadata = observation_metadata(clickhouse)
    return dg.AssetObservation(asset_key=EVENTS.key, metadata=metadata, tags={"dagster/data_version": version.value})


@dg.multi_observable_source_asset(specs=[EVENTS])
def events(clickhouse: ClickHouseResource) -> dg.ObserveResult:
    missing = clickhouse.missing_events_table()
    if missing:
        raise dg.Failure(description=f"cannot observe events: {missing}", allow_retries=False)
    version, metadata = observation_metadata(clickhouse)
    return dg.ObserveResult(asset_key=EVENTS.key, data_version=version, metadata=metadata)
