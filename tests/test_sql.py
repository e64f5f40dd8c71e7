from __future__ import annotations

from session_assets import clickhouse, postgres, sql


def test_includes_expand_and_statements_split():
    text = sql.load("clickhouse/rollup_sessions.sql")
    assert "@include" not in text and "countIf(event = '$pageview')" in text
    assert len(sql.statements("CREATE TABLE a (x int);\n-- only a comment;\nCREATE TABLE b (y int);")) == 2


def test_clickhouse_schema_applies_once(clickhouse_resource):
    client = clickhouse_resource.client()  # first use applies every migration
    assert clickhouse.apply_schema(client, clickhouse_resource.table_params()) == []
    tables = {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}
    assert {"events", "session_counter_rollups", "sessions", "schema_migrations"} <= tables


def test_postgres_migrations_apply_once(postgres_url):
    pool = postgres.get_pool(postgres_url)
    first = postgres.apply_migrations(pool)
    assert first == [name for name, _ in sql.migrations("postgres")] and first
    assert postgres.apply_migrations(pool) == []
    with pool.connection() as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"scanners", "observations", "observation_batches", "team_quotas", "schema_migrations"} <= tables
