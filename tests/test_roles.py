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
ROLES_UPGRADE_SQL = REPO / "sql" / "postgres" / "roles_upgrade.sql"
PSQL = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
DAY = at("2024-03-01T00:00:00").date()
SESSIONS = 20


def as_role(admin_url: str, role: str, database: str) -> str:
    """The URL of `role` on the same socket (pgserver trusts local connections: no password)."""
    return postgres.with_database(admin_url, database).replace("postgres:@", f"{role}:@", 1)


def test_the_docs_run_the_roles_files_this_test_runs():
    docs = (REPO / "docs" / "operations.md").read_text()
    assert "sql/postgres/roles.sql" in docs and "sql/postgres/roles_upgrade.sql" in docs and "tests/test_roles.py" in docs


def run_psql(url: str, sql_file: Path, **variables: str) -> None:
    flags = [arg for name, value in variables.items() for arg in ("-v", f"{name}={value}")]
    done = subprocess.run(
        [str(PSQL), "-X", url, "-v", "ON_ERROR_STOP=1", *flags, "-f", str(sql_file)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def table_owners(admin_url: str) -> dict[str, str]:
    with psycopg.connect(admin_url.replace("/postgres?", "/session_assets?")) as conn:
        owners = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall())
        owners["(database)"] = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'session_assets'"
        ).fetchone()[0]
    return owners


def sweep_as_app(
    app: PostgresResource, clickhouse_resource, local_object_store, instance: dg.DagsterInstance, scanner_id: str,
    seed: int | None = None,
) -> int:
    """A real sweep (rollups, then observations and batches) of a new match-all scanner with
    `app` as the app's Postgres, over new sessions when `seed` is given; checked against what
    the app role reads back."""
    if seed is not None:
        sessions = generate_sessions(SESSIONS, at("2024-03-01T09:00:00"), at("2024-03-01T11:00:00"), seed=seed, teams=(1,))
        insert_rows(clickhouse_resource, session_events(sessions))
    as_of = at("2024-03-01T12:00:00")
    add_scanner(instance, app, scanner_id=scanner_id)
    roll_for_sweeps(instance, clickhouse_resource, as_of, scanner_start="2024-02-28T00:00:00Z")
    resources = {"clickhouse": clickhouse_resource, "postgres": app, "object_store": local_object_store}
    result = sweep(instance, resources, scanner_id, DAY, as_of)
    assert result.success
    assert sweep_metadata(result)["observed"] == SESSIONS  # every session of the day, settled by `as_of`
    assert all(check.passed for check in result.get_asset_check_evaluations())
    with psycopg.connect(app.url) as conn:
        assert conn.execute("SELECT count(*) FROM observations WHERE scanner_id = %s", (scanner_id,)).fetchone() == (SESSIONS,)
        assert conn.execute("SELECT count(*) FROM observation_batches WHERE scanner_id = %s", (scanner_id,)).fetchone()[0] >= 1
    return SESSIONS


def assert_app_creates_nothing(app_url: str) -> None:
    with psycopg.connect(app_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema public"):
            conn.execute("CREATE TABLE planted (x int)")


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
    run_psql(admin_url, ROLES_SQL, **{name: secrets.token_hex(12) for name in ("owner_password", "app_password", "dagster_password")})
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
    owners = table_owners(admin_url)
    assert set(owners.values()) == {"session_assets_owner"}, owners
    assert {"scanners", "observations", "observation_batches", "team_quotas", "schema_migrations"} <= set(owners)

    # The app role: a real sweep, rollups and observation batches, runs stored by the dagster role.
    storage = {"storage": {"postgres": {"postgres_url": postgres.sqlalchemy_url(dagster_url)}}}
    with dg.instance_for_test(overrides=storage) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        sweep_as_app(PostgresResource(url=app_url), clickhouse_resource, local_object_store, instance, "errors", seed=5)
        run_count = len(instance.get_run_records())
    assert run_count == len(swept_days(at("2024-02-28T00:00:00"), at("2024-03-01T12:00:00"))) + 1  # rollup days, the sweep
    with psycopg.connect(dagster_url) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (run_count,)

    # The app role creates nothing, and never reaches Dagster's database.
    assert_app_creates_nothing(app_url)
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "dagster"'):
        psycopg.connect(as_role(admin_url, "session_assets", "dagster"))

    # The dagster role never reads the app's observations: it cannot even connect.
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "session_assets"'):
        with psycopg.connect(as_role(admin_url, "dagster", "session_assets")) as conn:
            conn.execute("SELECT count(*) FROM observations")


@pytest.mark.timeout(600)
def test_a_database_the_app_role_owned_moves_to_the_owner_role_and_keeps_its_data(
    tmp_path, clickhouse_resource, local_object_store
):
    """docs/operations.md's upgrade path, rehearsed: the app role made and migrated its own
    database (as this project's docs once said); sql/postgres/roles_upgrade.sql hands the
    database and every table to session_assets_owner. The data stays, the owner migrates,
    the app sweeps with DML only and creates nothing."""
    data_dir = tmp_path / "pg"
    admin_url = postgres.embedded_server_url(data_dir, "postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("CREATE ROLE session_assets LOGIN")
            conn.execute("CREATE DATABASE session_assets OWNER session_assets")
        app_url = as_role(admin_url, "session_assets", "session_assets")
        assert postgres.migrate(app_url)  # the old way: the app role owns and migrates
        app = PostgresResource(url=app_url)
        with dg.instance_for_test() as instance:
            sweep_as_app(app, clickhouse_resource, local_object_store, instance, "before", seed=6)
        postgres.close_pools()
        assert set(table_owners(admin_url).values()) == {"session_assets"}

        run_psql(admin_url.replace("/postgres?", "/session_assets?"), ROLES_UPGRADE_SQL, owner_password=secrets.token_hex(12))

        owners = table_owners(admin_url)
        assert set(owners.values()) == {"session_assets_owner"}, owners
        assert postgres.migrate(as_role(admin_url, "session_assets_owner", "session_assets")) == []
        with psycopg.connect(app_url) as conn:
            assert conn.execute("SELECT count(*) FROM observations WHERE scanner_id = 'before'").fetchone() == (SESSIONS,)
        assert_app_creates_nothing(app_url)
        # DML only, and enough: the app role sweeps a new scanner (new rows, sequences included).
        with dg.instance_for_test() as instance:
            sweep_as_app(app, clickhouse_resource, local_object_store, instance, "after")
    finally:
        postgres.close_pools()
        postgres.stop_embedded_server(data_dir)
