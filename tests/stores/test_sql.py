from __future__ import annotations

import uuid

import clickhouse_connect
import pytest

from session_assets.stores import clickhouse, postgres, sql


def test_includes_expand_and_statements_split():
    text = sql.load("clickhouse/rollup_sessions.sql")
    assert "@include" not in text and "countIf(event = '$pageview')" in text
    assert len(sql.statements("CREATE TABLE a (x int);\n-- only a comment;\nCREATE TABLE b (y int);")) == 2


def test_clickhouse_schema_applies_once(clickhouse_resource):
    client = clickhouse_resource.client()  # the fixture migrated it
    assert clickhouse_resource.migrate() == []
    tables = {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}
    assert {"events", "session_counter_rollups_v2", "sessions", "schema_migrations"} <= tables
    assert "session_counter_rollups" not in tables  # copied into _v2, then dropped (007, 008)



def test_run_time_clients_only_read_the_clickhouse_schema_and_name_the_fix(chdb_url):
    """A database nobody migrated, or one behind this code, fails at the first client with one
    line naming the database and `session-assets migrate`; nothing is created on the way."""
    from session_assets.resources import ClickHouseResource

    fresh = ClickHouseResource(url=chdb_url, database=f"t_{uuid.uuid4().hex[:12]}")
    with pytest.raises(clickhouse.SchemaNotReady, match=rf"database '{fresh.database}' does not exist.*session-assets migrate"):
        fresh.client()
    admin = clickhouse.get_client(chdb_url, "default")
    assert not admin.command("SELECT count() FROM system.databases WHERE name = {db:String}", parameters={"db": fresh.database})

    assert fresh.migrate()  # every migration, the database first
    behind = ClickHouseResource(url=chdb_url, database=f"t_{uuid.uuid4().hex[:12]}")
    behind.migrate()
    newest = sql.migrations("clickhouse")[-1][0]
    clickhouse.close_clients()  # a new process: nothing checked yet
    clickhouse.get_client(chdb_url, behind.database).command(
        "DELETE FROM schema_migrations WHERE name = {name:String}", parameters={"name": newest}
    )
    with pytest.raises(clickhouse.SchemaNotReady, match=rf"lacks 1 migration\(s\) \(first: {newest}\).*session-assets migrate"):
        behind.client()
    assert behind.migrate() == [newest]
    behind.client()


def test_migrating_an_up_to_date_clickhouse_database_runs_no_ddl(clickhouse_resource):
    """`load-events` migrates before it loads: on a prepared store a user without CREATE rights passes."""
    # readonly=2: settings may change, nothing may be created or written.
    client = clickhouse_connect.get_client(
        dsn=clickhouse_resource.url, database=clickhouse_resource.database, settings={"readonly": 2}
    )
    with pytest.raises(Exception, match="readonly"):
        client.command("CREATE TABLE refused (x Int8) ENGINE = Memory")
    assert clickhouse.migrate(client, clickhouse_resource.url, clickhouse_resource.database, clickhouse_resource.table_params()) == []


ROLLUP_COLUMNS = (
    "team_id, day, session_id, distinct_id, first_timestamp, last_timestamp, event_count, pageview_count, "
    "autocapture_count, rageclick_count, exception_count, ai_generation_count, input_tokens, output_tokens, "
    "cost_usd, entry_url, max_inserted_at, computed_as_of"
)
OLD_ROLLUP_ROWS = (
    # (team, day offset, session, computed_as_of offset in hours): s1 crosses midnight;
    # s2 has two computations of one day, the later one counts.
    (1, 0, "s1", 1), (1, 1, "s1", 1), (1, 0, "s2", 1), (1, 0, "s2", 2), (2, 0, "s1", 1),
)


def _old_rollup_rows(client) -> None:
    client.command(
        f"INSERT INTO session_counter_rollups ({ROLLUP_COLUMNS}) "
        "SELECT t.1, toDate('2024-03-01') + t.2, t.3, 'd', toDateTime64('2024-03-01 10:00:00', 6, 'UTC') + toIntervalDay(t.2), "
        "toDateTime64('2024-03-01 10:30:00', 6, 'UTC') + toIntervalDay(t.2), 10 * t.4, 1, 0, 0, 0, 0, 0, 0, toDecimal128('0.5', 12), "
        "'https://x/', toDateTime64('2024-03-02 00:00:00', 6, 'UTC'), toDateTime64('2024-03-03 00:00:00', 6, 'UTC') + toIntervalHour(t.4) "
        "FROM (SELECT arrayJoin({rows:Array(Tuple(Int64, Int64, String, Int64))}) AS t)",
        parameters={"rows": list(OLD_ROLLUP_ROWS)},
    )


def test_rollups_move_to_the_session_ordered_table_and_every_row_comes_along(clickhouse_resource):
    """A database at migration 006 (day-ordered rollups with rows in them) upgrades:
    007 copies every row into session_counter_rollups_v2 and repoints `sessions`,
    008 drops the old table. 007 may run again after an interruption: nothing doubles,
    and a rollup written to the new table in between keeps its newer computation."""
    client = clickhouse_resource.client()
    later = [name for name, _ in sql.migrations("clickhouse") if name >= "007"]
    # Back to the state before 007: the old table and view, 007 and 008 not recorded.
    client.command("DROP TABLE session_counter_rollups_v2")
    client.command("DROP VIEW sessions")
    for name in ("clickhouse/002_session_counter_rollups.sql", "clickhouse/003_sessions_view.sql"):
        for statement in sql.statements(sql.load(name)):
            client.command(statement)
    client.command("DELETE FROM schema_migrations WHERE name >= '007'")
    _old_rollup_rows(client)
    old = client.query(f"SELECT {ROLLUP_COLUMNS} FROM session_counter_rollups FINAL ORDER BY ALL").result_rows
    assert len(old) == 4

    # An interrupted first attempt: 007 ran (twice), not recorded; then team 2's s1 is rolled up again.
    for _ in range(2):
        for statement in sql.statements(sql.load(f"clickhouse/{later[0]}.sql")):
            client.command(statement)
    recomputed = ROLLUP_COLUMNS.replace("event_count", "99").replace("computed_as_of", "computed_as_of + toIntervalHour(5)")
    client.command(
        f"INSERT INTO session_counter_rollups_v2 ({ROLLUP_COLUMNS}) SELECT {recomputed} FROM session_counter_rollups FINAL WHERE team_id = 2"
    )
    assert clickhouse_resource.migrate() == later

    tables = {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}
    assert "session_counter_rollups" not in tables
    [(key, partition)] = client.query(
        "SELECT sorting_key, partition_key FROM system.tables WHERE database = currentDatabase() AND name = 'session_counter_rollups_v2'"
    ).result_rows
    assert (key, partition) == ("team_id, session_id, day", "day")
    new = client.query(f"SELECT {ROLLUP_COLUMNS} FROM session_counter_rollups_v2 FINAL ORDER BY ALL").result_rows
    kept = [row for row in old if row[0] == 1]
    assert [row for row in new if row[0] == 1] == kept
    (team2,) = [row for row in new if row[0] == 2]
    assert team2[6] == 99  # the newer computation won over the copy
    sessions = client.query("SELECT team_id, session_id, event_count, days FROM sessions ORDER BY ALL").result_rows
    assert sessions == [(1, "s1", 20, 2), (1, "s2", 20, 1), (2, "s1", 99, 1)]


def test_postgres_migrations_apply_once(postgres_admin_url):
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.ensure_database(postgres_admin_url, name)
    url = postgres.with_database(postgres_admin_url, name)
    first = postgres.migrate(url)
    assert first == [name for name, _ in sql.migrations("postgres")] and first
    assert postgres.migrate(url) == []
    with postgres.get_pool(url).connection() as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"scanners", "observations", "observation_batches", "team_quotas", "schema_migrations"} <= tables
