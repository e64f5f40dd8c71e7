"""The production roles of docs/operations.md, rehearsed on a pgserver of this test's own:
sql/postgres/roles.sql as the docs tell an operator to run it, `session-assets migrate` as
the owner, a sweep as the app role with Dagster's storage on the dagster role, and what
each role is refused."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pgserver
import psycopg
import pytest
from dagster_postgres import PostgresRunStorage

from session_assets.stores import postgres
from session_assets.resources import PostgresResource
from tests.support import (
    add_scanner,
    at,
    cli_env,
    generate_sessions,
    insert_rows,
    roll_for_sweeps,
    session_events,
    sweep,
    sweep_metadata,
    swept_days,
)

REPO = Path(__file__).resolve().parent.parent
ROLES_SQL = REPO / "sql" / "postgres" / "roles.sql"
PSQL = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
DAY = at("2024-03-01T00:00:00").date()


def as_role(admin_url: str, role: str, database: str) -> str:
    """The URL of `role` on the same socket (pgserver trusts local connections: no password)."""
    return postgres.with_database(admin_url, database).replace("postgres:@", f"{role}:@", 1)


def test_the_docs_run_the_roles_file_this_test_runs():
    docs = (REPO / "docs" / "operations.md").read_text()
    assert "sql/postgres/roles.sql" in docs and "tests/test_roles.py" in docs


@pytest.mark.timeout(600)
def test_the_app_role_sweeps_with_dml_only_and_each_role_is_kept_out_of_the_other_database(
    tmp_path, clickhouse_resource, local_object_store
):
    data_dir = tmp_path / "pg"
    admin_url = postgres.embedded_server_url(data_dir, "postgres")
    try:
        _rehearse(tmp_path, admin_url, clickhouse_resource, local_object_store)
    finally:
        postgres.close_pools()
        postgres.stop_embedded_server(data_dir)


def _rehearse(tmp_path, admin_url, clickhouse_resource, local_object_store) -> None:
    passwords = {name: secrets.token_hex(12) for name in ("owner_password", "app_password", "dagster_password")}
    variables = [arg for name, value in passwords.items() for arg in ("-v", f"{name}={value}")]
    created = subprocess.run(
        [str(PSQL), "-X", admin_url, "-v", "ON_ERROR_STOP=1", *variables, "-f", str(ROLES_SQL)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    owner_url = as_role(admin_url, "session_assets_owner", "session_assets")
    app_url = as_role(admin_url, "session_assets", "session_assets")
    dagster_url = as_role(admin_url, "dagster", "dagster")

    # Before the owner migrates: the app's run-time code says what to do, and the app role
    # cannot do it itself.
    with pytest.raises(postgres.SchemaNotReady, match="is not migrated.*run `session-assets migrate`"):
        PostgresResource(url=app_url).pool()
    with pytest.raises(postgres.SchemaNotReady, match="role 'session_assets' may not change the schema"):
        postgres.migrate(app_url)

    env = cli_env(tmp_path / "home") | {"SESSION_ASSETS_POSTGRES_URL": owner_url}
    migrated = subprocess.run(
        [sys.executable, "-m", "session_assets.cli", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "schemas are up to date" in migrated.stdout
    with psycopg.connect(admin_url.replace("/postgres?", "/session_assets?")) as conn:
        owners = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall())
    assert owners and set(owners.values()) == {"session_assets_owner"}, owners
    assert {"scanners", "observations", "observation_batches", "team_quotas", "schema_migrations"} <= set(owners)

    # The app role: a real sweep, rollups and observation batches, runs stored by the dagster role.
    app = PostgresResource(url=app_url)
    sessions = generate_sessions(20, at("2024-03-01T09:00:00"), at("2024-03-01T11:00:00"), seed=5, teams=(1,))
    insert_rows(clickhouse_resource, session_events(sessions))
    as_of = at("2024-03-01T12:00:00")
    storage = {"storage": {"postgres": {"postgres_url": postgres.sqlalchemy_url(dagster_url)}}}
    with dg.instance_for_test(overrides=storage) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        add_scanner(instance, app)
        roll_for_sweeps(instance, clickhouse_resource, as_of, scanner_start="2024-02-28T00:00:00Z")
        resources = {"clickhouse": clickhouse_resource, "postgres": app, "object_store": local_object_store}
        result = sweep(instance, resources, "errors", DAY, as_of)
        assert result.success
        assert sweep_metadata(result)["observed"] == len(sessions)
        assert all(check.passed for check in result.get_asset_check_evaluations())
        run_count = len(instance.get_run_records())
    assert run_count == len(swept_days(at("2024-02-28T00:00:00"), as_of)) + 1  # rollup days, and the sweep
    with psycopg.connect(app_url) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone() == (len(sessions),)
        assert conn.execute("SELECT count(*) FROM observation_batches").fetchone()[0] >= 1
    with psycopg.connect(dagster_url) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (run_count,)

    # The app role creates nothing, and never reaches Dagster's database.
    with psycopg.connect(app_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema public"):
            conn.execute("CREATE TABLE planted (x int)")
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "dagster"'):
        psycopg.connect(as_role(admin_url, "session_assets", "dagster"))

    # The dagster role never reads the app's observations: it cannot even connect.
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "session_assets"'):
        with psycopg.connect(as_role(admin_url, "dagster", "session_assets")) as conn:
            conn.execute("SELECT count(*) FROM observations")
