"""Postgres at run time: the schema is checked, never changed; the embedded server's socket is private."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from session_assets.stores import postgres, sql
from session_assets.resources import PostgresResource


def _fresh_database(admin_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.ensure_database(admin_url, name)
    return postgres.with_database(admin_url, name)


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_run_time_code_refuses_an_unmigrated_database_and_creates_nothing(postgres_admin_url):
    url = _fresh_database(postgres_admin_url)
    with pytest.raises(postgres.SchemaNotReady) as raised:
        PostgresResource(url=url).pool()
    message = str(raised.value)
    assert "is not migrated" in message and f"this code needs {postgres.needed_version()}" in message
    assert "run `session-assets migrate`" in message
    assert _tables(url) == set()  # not even schema_migrations: run time runs no DDL


def test_run_time_code_names_the_version_it_found_and_the_one_it_needs(postgres_admin_url):
    url = _fresh_database(postgres_admin_url)
    with psycopg.connect(url) as conn:  # as an install from before the first migration left it
        conn.execute(sql.load("postgres/schema_migrations.sql"))
    needed = postgres.needed_version()
    assert needed >= 1
    with pytest.raises(postgres.SchemaNotReady, match=rf"is at version 0, this code needs {needed}: run `session-assets migrate`"):
        PostgresResource(url=url).pool()
    assert postgres.migrate(url)  # the fix the message names
    PostgresResource(url=url).pool()


def test_the_schema_is_checked_once_per_database_url(postgres_url):
    resource = PostgresResource(url=postgres_url)
    resource.pool()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("ALTER TABLE schema_migrations RENAME TO schema_migrations_aside")
    # Checked already in this process: no second query (it would now fail).
    with resource.pool().connection() as conn:
        assert conn.execute("SELECT count(*) FROM scanners").fetchone() == (0,)


# --- the embedded server's socket ------------------------------------------------


def _server_uid() -> int:
    # As root pgserver runs PostgreSQL as its `pgserver` system user (PostgreSQL refuses root).
    return pwd.getpwnam("pgserver").pw_uid if os.geteuid() == 0 else os.geteuid()


def _socket_dir(url: str) -> Path:
    with psycopg.connect(url) as conn:
        return Path(conn.info.host)


def _assert_private(folder: Path, url: str) -> None:
    info = os.lstat(folder)
    assert stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    assert info.st_uid == _server_uid()
    assert (folder / ".s.PGSQL.5432").is_socket()
    if os.geteuid() == 0:
        # Another local user, connecting as the server's superuser: the folder stops them.
        psql = Path(__import__("pgserver").__file__).parent / "pginstall" / "bin" / "psql"
        other = subprocess.run(
            ["runuser", "-u", "nobody", "--", str(psql), "-X", "-w", url, "-c", "SELECT 1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode != 0 and "Permission denied" in other.stderr, other.stdout + other.stderr


def _long_folder(tmp_path: Path) -> Path:
    folder = tmp_path / ("a-home-path-longer-than-a-unix-socket-path-may-be-" * 2)
    assert len(str(folder / "postgres")) > 100
    return folder / "postgres"


def test_the_embedded_socket_is_in_the_private_data_folder_when_its_path_fits(postgres_admin_url, stack_home):
    folder = _socket_dir(postgres_admin_url)
    assert folder == (stack_home / "postgres").resolve()
    _assert_private(folder, postgres_admin_url)


def test_with_a_long_home_the_embedded_socket_moves_to_a_short_private_folder(tmp_path):
    data_dir = _long_folder(tmp_path)
    try:
        url = postgres.embedded_server_url(data_dir, "postgres")
        folder = _socket_dir(url)
        assert folder == postgres.socket_folder(data_dir) and str(folder).startswith("/tmp/session-assets-pg-")
        _assert_private(folder, url)
        # pgserver would have opened it (mode 0777) and every folder above it (o+rx).
        assert stat.S_IMODE(os.stat(folder.parent).st_mode) & 0o1777 == 0o1777  # /tmp itself, unchanged
    finally:
        postgres.stop_embedded_server(data_dir)
        shutil.rmtree(postgres.socket_folder(data_dir), ignore_errors=True)


def test_a_socket_folder_open_to_others_is_refused_with_one_clear_error(tmp_path):
    data_dir = _long_folder(tmp_path)
    folder = postgres.socket_folder(data_dir)
    folder.mkdir(mode=0o700)
    folder.chmod(0o777)  # someone made it first, or loosened it
    if os.geteuid() == 0:
        os.chown(folder, _server_uid(), -1)
    try:
        with pytest.raises(postgres.PostgresUnavailable) as raised:
            postgres.embedded_server_url(data_dir, "postgres")
        message = str(raised.value)
        assert str(folder) in message and "mode 0777" in message and "remove the folder" in message
        assert not (folder / ".s.PGSQL.5432").exists()  # the server did not start there
    finally:
        postgres.stop_embedded_server(data_dir)
        shutil.rmtree(folder, ignore_errors=True)
