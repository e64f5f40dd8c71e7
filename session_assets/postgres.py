"""Postgres: the embedded pgserver, connection pools, and migrations.

Without `SESSION_ASSETS_POSTGRES_URL` the project starts (or reuses) a
PostgreSQL server from the `pgserver` package, listening on a Unix socket in
`$SESSION_ASSETS_HOME/postgres`. It holds two databases: `session_assets` for
the app's tables and `dagster` for the Dagster instance.
"""

from __future__ import annotations

import threading
import zlib
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from psycopg import sql as pg_sql
from psycopg_pool import ConnectionPool, PoolTimeout

from session_assets import sql
from session_assets.secrets import redact

APP_DATABASE = "session_assets"
DAGSTER_DATABASE = "dagster"


class PostgresUnavailable(RuntimeError):
    """Postgres could not be reached; the message says where."""


_servers: dict[Path, object] = {}
_servers_guard = threading.Lock()


def embedded_server_url(data_dir: Path, database: str = APP_DATABASE) -> str:
    """Start or reuse the pgserver in `data_dir`, create `database`, return its URL."""
    import pgserver  # imported here: it is only needed for the embedded stack

    data_dir = Path(data_dir).resolve()
    with _servers_guard:
        server = _servers.get(data_dir)
        if server is None:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                server = pgserver.get_server(data_dir)
            except Exception as error:  # pgserver raises plain exceptions with the log in them
                raise PostgresUnavailable(f"could not start the embedded Postgres in {data_dir}: {error}") from error
            _servers[data_dir] = server
    ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            try:
                conn.execute(pg_sql.SQL("CREATE DATABASE {}").format(pg_sql.Identifier(database)))
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # created concurrently by another process


def with_database(url: str, database: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/" + database))


def sqlalchemy_url(url: str) -> str:
    """The same server for dagster-postgres, which needs the psycopg2 driver named (DAGSTER_NOTES)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql+psycopg2://" + rest if sep else url


_pools: dict[str, ConnectionPool] = {}
_pools_guard = threading.Lock()


def get_pool(url: str, max_size: int = 8, timeout_s: float = 30.0) -> ConnectionPool:
    with _pools_guard:
        pool = _pools.get(url)
        if pool is None:
            pool = ConnectionPool(
                url, min_size=1, max_size=max_size, timeout=timeout_s, open=False, configure=_configure_connection
            )
            try:
                pool.open(wait=True, timeout=timeout_s)
            except PoolTimeout as error:
                pool.close()
                raise PostgresUnavailable(f"Postgres at {redact(url)} is unreachable (no connection in {timeout_s:g}s)") from error
            _pools[url] = pool
        return pool


def _configure_connection(conn: psycopg.Connection) -> None:
    # Timestamps come back in UTC whatever the server's or role's TimeZone: a
    # scanner's start day (`start_at.date()`) must be its UTC day.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


def close_pools() -> None:
    with _pools_guard:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def apply_migrations(pool: ConnectionPool) -> list[str]:
    """Apply `sql/postgres/NNN_*.sql` once each, recorded in `schema_migrations`."""
    applied = []
    lock_key = zlib.crc32(b"session_assets.migrations")
    with pool.connection() as conn:
        conn.execute(sql.load("postgres/schema_migrations.sql"))
        conn.commit()
        # Serialise concurrent starters; each migration commits with its record.
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
        try:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            conn.commit()
            for version, path in sql.migrations("postgres"):
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.load(path))
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
            conn.commit()
    return applied
