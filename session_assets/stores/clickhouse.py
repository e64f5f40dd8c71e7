"""ClickHouse clients: a server over HTTP(S), or chDB in-process (`chdb://PATH`).

chDB lets one process at a time open a data path, and a second opener gets an
opaque engine error. We take an advisory lock on `PATH.lock` first, so a second
process waits a bounded time and then fails naming the process that holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from session_assets.stores import sql
from session_assets.stores.sql import SchemaNotReady
from session_assets.stores.secrets import redact

# chDB carries its own jemalloc, which reads JE_MALLOC_CONF once, when chDB loads in
# a process (on its first chdb:// client). Returning freed pages at once lowers a
# sweep's peak; it also makes chDB's work 1.5-1.7x slower (docs/performance.md).
LEAN_MALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"


class ClickHouseUnavailable(RuntimeError):
    """ClickHouse could not be opened or reached; the message says why and where."""


MIGRATE_HINT = "run `session-assets migrate` as a user that may create tables (docs/operations.md, section 3)"


@dataclass(frozen=True)
class TableRef:
    database: str
    table: str

    @classmethod
    def parse(cls, name: str, default_database: str) -> TableRef:
        database, _, table = name.rpartition(".")
        if not table or (database == "" and "." in name):
            raise ValueError(f"events table {name!r} is not 'table' or 'database.table'")
        return cls(database or default_database, table)

    def params(self, prefix: str) -> dict[str, str]:
        return {f"{prefix}_db": self.database, f"{prefix}_table": self.table}


def chdb_path(url: str) -> Path | None:
    """The data path of a `chdb://` URL, or None for a server URL."""
    parsed = urlparse(url)
    if parsed.scheme != "chdb":
        return None
    raw = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
    if raw in ("", "memory", ":memory:"):
        raise ValueError(f"{redact(url)!r}: session_assets needs an on-disk chDB path, e.g. chdb:///var/lib/session_assets/clickhouse")
    return Path(raw).expanduser().resolve()


class _EngineLock:
    """Process-wide, reference-counted flock on `<chdb path>.lock`."""

    _guard = threading.Lock()
    _held: dict[Path, tuple[int, int]] = {}  # path -> (fd, count)

    @classmethod
    def acquire(cls, path: Path, timeout_s: float) -> None:
        with cls._guard:
            if path in cls._held:
                fd, count = cls._held[path]
                cls._held[path] = (fd, count + 1)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _open_lock_file(path.with_name(path.name + ".lock"))
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
                        os.close(fd)
                        raise ClickHouseUnavailable(
                            f"the embedded ClickHouse at {path} is held by {holder}; waited {timeout_s:g}s. "
                            "chDB allows one process per data path: wait for that process to finish, stop it, "
                            "or point SESSION_ASSETS_CLICKHOUSE_URL at a ClickHouse server."
                        ) from None
                    time.sleep(0.2)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({_cmdline()})".encode(), 0)
            cls._held[path] = (fd, 1)

    @classmethod
    def release(cls, path: Path) -> None:
        with cls._guard:
            fd, count = cls._held[path]
            if count > 1:
                cls._held[path] = (fd, count - 1)
                return
            del cls._held[path]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _open_lock_file(lock_file: Path) -> int:
    """Open (or create) the lock file itself: never through a symlink, never another
    file's hard link, so locking and rewriting it cannot touch a file elsewhere."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ClickHouseUnavailable(
                f"the chDB lock file {lock_file} is a symbolic link; session_assets will not follow it: "
                "remove it (it is recreated as a plain file)"
            ) from None
        raise ClickHouseUnavailable(f"could not open the chDB lock file {lock_file}: {error.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise ClickHouseUnavailable(
            f"the chDB lock file {lock_file} is not a plain file of its own (a device, a pipe or a hard link); "
            "remove it (it is recreated as a plain file)"
        )
    return fd


def _cmdline() -> str:
    try:
        raw = Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
        return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:300]
    except OSError:
        return "?"


class _Clients:
    """One client per (url, database) per process; chDB clients keep the engine lock.

    Clients return timezone-aware UTC datetimes (`tz_mode="aware"`).
    """

    _guard = threading.Lock()
    _open: dict[tuple[str, str], Client] = {}

    @classmethod
    def get(cls, url: str, database: str, lock_timeout_s: float, create_database: bool) -> Client:
        key = (url, database)
        with cls._guard:
            client = cls._open.get(key)
            if client is None:
                client = _connect(url, database, lock_timeout_s, create_database)
                cls._open[key] = client
            return client

    @classmethod
    def close_all(cls) -> None:
        with cls._guard:
            for (url, _), client in cls._open.items():
                client.close()
                path = chdb_path(url)
                if path is not None:
                    _EngineLock.release(path)
            cls._open.clear()


def _connect(url: str, database: str, lock_timeout_s: float, create_database: bool) -> Client:
    path = chdb_path(url)
    if path is not None:
        _EngineLock.acquire(path, lock_timeout_s)
        try:
            _ensure_database(clickhouse_connect.get_client(dsn=f"chdb://{path}"), database, create_database, str(path))
            return clickhouse_connect.get_client(dsn=f"chdb://{path}", database=database, tz_mode="aware")
        except SchemaNotReady:
            _EngineLock.release(path)
            raise
        except Exception as error:
            _EngineLock.release(path)
            raise ClickHouseUnavailable(f"could not open the embedded ClickHouse at {path}: {error}") from error
    try:
        # No HTTP session id: one client serves several threads, and sessions lock per query.
        options = {"connect_timeout": 10, "autogenerate_session_id": False, "tz_mode": "aware"}
        _ensure_database(clickhouse_connect.get_client(dsn=url, **options), database, create_database, redact(url))
        return clickhouse_connect.get_client(dsn=url, database=database, **options)
    except SchemaNotReady:
        raise
    except Exception as error:
        # The driver's message may repeat the URL: mask the whole line.
        raise ClickHouseUnavailable(redact(f"ClickHouse at {url} is unreachable: {error}")) from error


def _ensure_database(bootstrap: Client, database: str, create: bool, where: str) -> None:
    """Fail naming the database unless it exists; `create` (migrations only) creates it instead."""
    try:
        if bootstrap.command(sql.load("clickhouse/database_exists.sql"), parameters={"db": database}):
            return
        if not create:
            raise SchemaNotReady(f"the ClickHouse database {database!r} does not exist at {where}: {MIGRATE_HINT}")
        bootstrap.command(sql.load("clickhouse/database_create.sql"), parameters={"db": database})
    finally:
        bootstrap.close()


def prefer_memory_to_speed() -> bool:
    """Before chDB loads in this process, have its allocator return freed pages at once.

    A sweep's candidates INSERT and the walk after it would otherwise hold both peaks
    (a 1M-candidate sweep: ~520 instead of ~615 MB). An operator's JE_MALLOC_CONF wins.
    False when chDB is already loaded here, so the setting can no longer take effect.
    """
    if "chdb" in sys.modules:
        return False
    os.environ.setdefault("JE_MALLOC_CONF", LEAN_MALLOC_CONF)
    return True


def get_client(url: str, database: str, lock_timeout_s: float = 120.0, create_database: bool = False) -> Client:
    """The process's client for (url, database). The database must exist unless `create_database`."""
    return _Clients.get(url, database, lock_timeout_s, create_database)


def close_clients() -> None:
    """Close every client of this process and release chDB paths for other processes."""
    _Clients.close_all()
    with _schema_checked_guard:
        _schema_checked.clear()  # a closed chDB path may be replaced before it is opened again


def _applied(client: Client) -> set[str] | None:
    """The recorded migrations; None when there is no `schema_migrations` table yet."""
    if not client.command(sql.load("clickhouse/schema_migrations_exists.sql")):
        return None
    return {row[0] for row in client.query(sql.load("clickhouse/schema_versions.sql")).result_rows}


def _missing(applied: set[str] | None) -> list[str]:
    return [name for name, _ in sql.migrations("clickhouse") if name not in (applied or set())]


_schema_checked: set[tuple[str, str]] = set()
_schema_checked_guard = threading.Lock()


def check_schema(client: Client, url: str, database: str) -> None:
    """Fail unless the database has every migration this code knows. Read-only; once per (URL, database) per process."""
    if (url, database) in _schema_checked:
        return
    missing = _missing(_applied(client))
    if missing:
        raise SchemaNotReady(
            f"the ClickHouse database {database!r} at {redact(url)} lacks {len(missing)} migration(s) "
            f"(first: {missing[0]}): {MIGRATE_HINT}"
        )
    with _schema_checked_guard:
        _schema_checked.add((url, database))


def migrate(client: Client, url: str, database: str, params: dict[str, Any]) -> list[str]:
    """Run `sql/clickhouse/NNN_*.sql` not yet recorded in `schema_migrations`; return what ran.

    Only this changes the schema. An up-to-date database is only read (no DDL), so a
    user without CREATE rights passes it, as `load-events` on a prepared store does.
    """
    applied: list[str] = []
    done = _applied(client)
    if _missing(done):
        if done is None:
            client.command(sql.load("clickhouse/schema_migrations.sql"))
            done = set()
        for name, path in sql.migrations("clickhouse"):
            if name in done:
                continue
            for statement in sql.statements(sql.load(path)):
                client.command(statement, parameters=sql.bind(statement, params) or None)
            client.insert("schema_migrations", [[name]], column_names=["name"])
            applied.append(name)
    with _schema_checked_guard:
        _schema_checked.add((url, database))
    return applied


__all__ = [
    "ClickHouseError",
    "ClickHouseUnavailable",
    "SchemaNotReady",
    "TableRef",
    "chdb_path",
    "check_schema",
    "close_clients",
    "get_client",
    "migrate",
]
