"""Postgres: the embedded pgserver, connection pools, migrations and the schema check.

Without `SESSION_ASSETS_POSTGRES_URL` the project starts (or reuses) a
PostgreSQL server from the `pgserver` package, listening on a Unix socket only
(no TCP) in a folder no other local user can enter (`socket_folder`). Its data
is in `$SESSION_ASSETS_HOME/postgres`; it holds two databases: `session_assets`
for the app's tables and `dagster` for the Dagster instance.

Migrations change the schema and need the database's owner: they run from
`session-assets migrate` (and the embedded stack's start-up, which owns its
server). Run-time code only reads `schema_migrations` (`check_schema`), so the
app's role needs no more than DML (docs/operations.md, section 3).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from psycopg import sql as pg_sql
from psycopg_pool import ConnectionPool, PoolTimeout

from session_assets.stores import sql
from session_assets.stores.sql import SchemaNotReady
from session_assets.stores.secrets import redact

APP_DATABASE = "session_assets"
DAGSTER_DATABASE = "dagster"


class PostgresUnavailable(RuntimeError):
    """Postgres could not be reached; the message says where."""


_servers: dict[Path, object] = {}
_servers_guard = threading.Lock()


def embedded_server_url(data_dir: Path, database: str = APP_DATABASE) -> str:
    """Start or reuse the pgserver in `data_dir`, create `database`, return its URL."""
    server = _embedded_server(data_dir)
    ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


def _embedded_server(data_dir: Path):
    data_dir = Path(data_dir).resolve()
    with _servers_guard:
        server = _servers.get(data_dir)
        if server is None:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                server = _start_private_server(data_dir)
            except PostgresUnavailable:
                raise
            except Exception as error:  # pgserver raises plain exceptions with the log in them
                raise PostgresUnavailable(f"could not start the embedded Postgres in {data_dir}: {error}") from error
            _servers[data_dir] = server
    return server


def stop_embedded_server(data_dir: Path) -> None:
    """Let go of the pgserver in `data_dir`: it stops once no process holds it (pgserver counts them)."""
    data_dir = Path(data_dir).resolve()
    with _servers_guard:
        server = _servers.pop(data_dir, None)
    if server is not None:
        server.cleanup()


# A Unix socket's path must fit in sun_path: 108 bytes on Linux, 104 on macOS.
SOCKET_PATH_MAX = 100


def socket_folder(data_dir: Path) -> Path:
    """Where the embedded server's socket goes: its data folder, which initdb makes mode 0700,
    when the socket's path fits; else a short folder of our own under /tmp, one per data folder."""
    data_dir = Path(data_dir).resolve()
    if len(os.fsencode(data_dir / ".s.PGSQL.5432")) <= SOCKET_PATH_MAX:
        return data_dir
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return Path("/tmp") / f"session-assets-pg-{digest}"


def check_private_folder(folder: Path, owner_uid: int) -> None:
    """The server trusts every local connection (pgserver's initdb uses `trust`): whoever can
    reach its socket is its superuser. So the socket's folder must be a real folder (not a link),
    owned by the server's user, that no one else may enter."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        raise PostgresUnavailable(f"the embedded Postgres socket folder {folder} is missing") from None
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder (a link or a file)"
    elif info.st_uid != owner_uid:
        problem = f"is owned by uid {info.st_uid}, not by the server's user (uid {owner_uid})"
    elif info.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}, open to other users"
    if problem:
        raise PostgresUnavailable(
            f"the embedded Postgres socket folder {folder} {problem}: other local users could connect as "
            "its superuser. Stop the server using it, remove the folder, and start again"
        )


def _private_socket_folder(data_dir: Path, owner_uid: int, owner_gid: int) -> Path:
    folder = socket_folder(data_dir)
    if folder != data_dir:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass  # ours from an earlier start, checked below; someone else's fails the check
        else:
            if owner_uid != os.geteuid():  # root: the server runs as pgserver's system user
                os.chown(folder, owner_uid, owner_gid)
    check_private_folder(folder, owner_uid)
    return folder


def _server_user(system_user: str | None) -> tuple[int, int]:
    """uid and gid the server runs as: ours, or pgserver's system user when we are root
    (PostgreSQL refuses to run as root)."""
    if system_user is None:
        return os.geteuid(), os.getegid()
    import pwd

    entry = pwd.getpwnam(system_user)
    return entry.pw_uid, entry.pw_gid


def _start_private_server(data_dir: Path):
    """pgserver's server, with the socket in a private folder.

    pgserver (0.1.x) puts a socket whose path would be too long in a runtime
    folder; as root it opens that folder to everyone (mode 0777, and every parent
    o+rx) so that its `pgserver` system user can write there. With trust
    authentication any local user could then connect as superuser. This subclass
    replaces only the start: same data folder, same pg_ctl, our socket folder.
    """
    from pgserver import pg_ctl
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import PostmasterInfo

    class PrivateSocketServer(PostgresServer):
        def ensure_postgres_running(self) -> None:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is None or not info.is_running():
                folder = _private_socket_folder(self.pgdata, *_server_user(self.system_user))
                # -h "": no TCP listener at all; the path is hex digits and ours (pg_ctl uses a shell).
                args = ["-w", "-o", '-h ""', "-o", f"-k {folder}", "-l", str(self.log), "start"]
                try:
                    pg_ctl(args, pgdata=self.pgdata, user=self.system_user, timeout=30)
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                    log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                    raise PostgresUnavailable(f"could not start the embedded Postgres in {self.pgdata}: {error}\n{log}") from error
                deadline = time.monotonic() + 30
                while not (info and info.is_running() and info.status == "ready"):
                    if time.monotonic() > deadline:
                        raise PostgresUnavailable(f"the embedded Postgres in {self.pgdata} did not become ready in 30 s (log: {self.log})")
                    time.sleep(0.2)
                    info = PostmasterInfo.read_from_pgdata(self.pgdata)
            self._postmaster_info = info

    # pgserver's own cache of servers by data folder, as its get_server reads it.
    server = PostgresServer._instances.get(data_dir)
    if server is None:
        data_dir.mkdir(exist_ok=True)
        try:
            server = PrivateSocketServer(data_dir, cleanup_mode="stop")
        except BaseException:
            PostgresServer._instances.pop(data_dir, None)  # its constructor cached it before starting
            raise
    # Also for a server another process started (an older version may have used /tmp).
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise PostgresUnavailable(f"the embedded Postgres in {data_dir} listens on TCP, not on a private socket: stop it")
    check_private_folder(info.socket_dir, _server_user(server.system_user)[0])
    return server


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


MIGRATE_HINT = "run `session-assets migrate` with the URL of the database's owner role (docs/operations.md, section 3)"


def _number(version: str) -> int:
    return int(version[:3])


def needed_version() -> int:
    """The schema version this code needs: its newest `sql/postgres/NNN_*.sql`."""
    return max((_number(version) for version, _ in sql.migrations("postgres")), default=0)


def _applied(conn: psycopg.Connection) -> set[str] | None:
    """The recorded migrations; None when there is no `schema_migrations` yet. Ends its transaction."""
    try:
        rows = conn.execute(sql.load("postgres/schema_versions.sql")).fetchall()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return None
    except psycopg.errors.InsufficientPrivilege as error:
        conn.rollback()
        raise SchemaNotReady(
            f"role {conn.info.user!r} may not read schema_migrations in database {conn.info.dbname!r}: grant it "
            f"SELECT as sql/postgres/roles.sql does ({error.diag.message_primary})"
        ) from error
    conn.commit()
    return {row[0] for row in rows}


def _missing(applied: set[str] | None) -> list[str]:
    return [version for version, _ in sql.migrations("postgres") if version not in (applied or set())]


_schema_checked: set[str] = set()
_schema_checked_guard = threading.Lock()


def check_schema(pool: ConnectionPool, url: str) -> None:
    """Fail unless the database has every migration this code knows. Read-only; once per URL per process."""
    if url in _schema_checked:
        return
    with pool.connection() as conn:
        applied = _applied(conn)
    missing = _missing(applied)
    if missing:
        at = max((_number(v) for v in applied), default=0) if applied else 0
        state = f"is at version {at}" if applied is not None else "is not migrated (no schema_migrations table)"
        raise SchemaNotReady(
            f"the Postgres schema of {redact(url)} {state}, this code needs {needed_version()}: {MIGRATE_HINT}"
        )
    with _schema_checked_guard:
        _schema_checked.add(url)


def migrate(url: str) -> list[str]:
    """Apply `sql/postgres/NNN_*.sql` not yet recorded in `schema_migrations`, once each; return them.

    Only this changes the schema, so only the role that runs it needs DDL rights.
    An up-to-date database is left untouched: no statement but a SELECT runs.
    """
    try:
        conn = psycopg.connect(url, connect_timeout=30)
    except psycopg.OperationalError as error:
        raise PostgresUnavailable(f"Postgres at {redact(url)} is unreachable: {redact(str(error))}") from error
    with conn:
        if not _missing(_applied(conn)):
            applied: list[str] = []
        else:
            try:
                applied = _apply_migrations(conn)
            except psycopg.errors.InsufficientPrivilege as error:
                raise SchemaNotReady(
                    f"role {conn.info.user!r} may not change the schema of database {conn.info.dbname!r} "
                    f"({error.diag.message_primary}): {MIGRATE_HINT}"
                ) from error
    with _schema_checked_guard:
        _schema_checked.add(url)
    return applied


def _apply_migrations(conn: psycopg.Connection) -> list[str]:
    applied = []
    lock_key = zlib.crc32(b"session_assets.migrations")
    conn.execute(sql.load("postgres/schema_migrations.sql"))
    conn.commit()
    # Serialise concurrent migrators; each migration commits with its record.
    conn.execute(sql.load("postgres/migrations_lock.sql"), {"key": lock_key})
    try:
        done = _applied(conn) or set()
        for version, path in sql.migrations("postgres"):
            if version in done:
                continue
            with conn.transaction():
                conn.execute(sql.load(path))
                conn.execute(sql.load("postgres/schema_migration_record.sql"), {"version": version})
            applied.append(version)
    finally:
        conn.rollback()  # a failed migration leaves the transaction aborted: end it before unlocking
        conn.execute(sql.load("postgres/migrations_unlock.sql"), {"key": lock_key})
        conn.commit()
    return applied
