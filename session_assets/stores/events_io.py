"""Writing events into the events table, column-oriented, in idempotent blocks."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from clickhouse_connect.driver.client import Client

from session_assets.stores.clickhouse import TableRef

EVENT_COLUMNS: tuple[str, ...] = (
    "uuid",
    "event",
    "properties",
    "timestamp",
    "team_id",
    "distinct_id",
    "$session_id",
    "inserted_at",
)


def insert_events(
    client: Client,
    table: TableRef,
    columns: Mapping[str, Sequence[Any]],
    dedup_token: str | None = None,
) -> int:
    """Insert one block of events; returns its row count.

    With `dedup_token`, ClickHouse drops a block it has already seen under that
    token, so a retried load never doubles a batch.
    """
    data = [columns[name] for name in EVENT_COLUMNS]
    rows = len(data[0])
    if rows == 0:
        return 0
    settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
    client.insert(
        table.table,
        data,
        column_names=list(EVENT_COLUMNS),
        database=table.database,
        column_oriented=True,
        settings=settings,
    )
    return rows
