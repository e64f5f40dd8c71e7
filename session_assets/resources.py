"""Dagster resources for the three stores, configured from the environment (SPEC §3)."""


import os
import tempfile
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import dagster as dg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult
from dagster_aws.s3 import S3Resource
from psycopg_pool import ConnectionPool

from session_assets import settings
from session_assets.stores import clickhouse, postgres, sql


def _env_or(name: str, default: str) -> Any:
    """`dg.EnvVar(name)` when the variable is set, else the embedded default.

    Secrets then reach Dagster only as variable names; defaults are plain paths.
    """
    return dg.EnvVar(name) if os.environ.get(name) else default


class ClickHouseResource(dg.ConfigurableResource):
    """Events, rollups and candidates: a ClickHouse server, or chDB in-process."""

    url: str
    database: str = "session_assets"
    events_table: str = "events"
    lock_timeout_seconds: float = 120.0
    # A sweep's candidates pass stops past this (SESSION_ASSETS_CANDIDATE_QUERY_SECONDS).
    candidate_query_seconds: float = settings.DEFAULT_CANDIDATE_QUERY_SECONDS

    def client(self) -> Client:
        """The client, once the schema is checked (read-only): run time needs no DDL rights."""
        client = clickhouse.get_client(self.url, self.database, self.lock_timeout_seconds)
        clickhouse.check_schema(client, self.url, self.database)
        return client

    def migrate(self) -> list[str]:
        """Create the database and apply the migrations it lacks (`session-assets migrate`); return them."""
        client = clickhouse.get_client(self.url, self.database, self.lock_timeout_seconds, create_database=True)
        return clickhouse.migrate(client, self.url, self.database, self.table_params())

    @property
    def events(self) -> clickhouse.TableRef:
        return clickhouse.TableRef.parse(self.events_table, self.database)

    def table_params(self) -> dict[str, str]:
        return {**self.events.params("events"), "db": self.database}

    @property
    def embedded(self) -> bool:
        """chDB in this process: its memory is the run's memory."""
        return clickhouse.chdb_path(self.url) is not None

    def prefer_memory_to_speed(self) -> None:
        """For chDB not yet loaded in this process: a leaner allocator (see clickhouse.py)."""
        if self.embedded:
            clickhouse.prefer_memory_to_speed()

    def query(self, name: str, **params: Any) -> QueryResult:
        """Run `sql/clickhouse/<name>.sql` with bound parameters."""
        text = sql.load(f"clickhouse/{name}.sql")
        return self.client().query(text, parameters=sql.bind(text, {**self.table_params(), **params}))

    def command(self, name: str, **params: Any) -> Any:
        text = sql.load(f"clickhouse/{name}.sql")
        return self.client().command(text, parameters=sql.bind(text, {**self.table_params(), **params}))

    def missing_events_table(self) -> str | None:
        """Why the events table cannot be read (it does not exist), naming it and its variable; None when it exists."""
        if self.query("events_table_exists").result_rows[0][0]:
            return None
        table = self.events
        return (
            f"the events table {table.database}.{table.table} does not exist: {settings.EVENTS_TABLE_VAR}="
            f"{self.events_table!r} names no table (unset it to use {self.database}.events, or create the table first)"
        )


class PostgresResource(dg.ConfigurableResource):
    """Scanners, observations, batches and quotas. Empty `url`: the embedded pgserver."""

    url: str = ""
    home: str = ""
    pool_max_size: int = 8

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return postgres.embedded_server_url(Path(self.home or settings.load_settings().home) / "postgres")

    def pool(self) -> ConnectionPool:
        """The pool, once the schema is checked (read-only): run time needs no DDL rights."""
        url = self.resolved_url()
        pool = postgres.get_pool(url, max_size=self.pool_max_size)
        postgres.check_schema(pool, url)
        return pool


class ObjectStoreResource(dg.ConfigurableResource):
    """Where observation batch objects go: a local folder or an S3 prefix, one class per
    backend (`object_store_for` picks it from the URL's scheme). Assets ask for this type."""

    url: str

    def location(self, key: str) -> str:
        """Where `key` lives, as a URL an operator can paste."""
        return f"{self.url.rstrip('/')}/{key}"

    def put(self, key: str, body: bytes) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        raise NotImplementedError


class LocalObjectStore(ObjectStoreResource):
    """Objects as files under `file:///absolute/folder`, durable before `put` returns."""

    def put(self, key: str, body: bytes) -> None:
        path = self._path(key)
        _make_folders(path.parent)
        # Write then rename: a reader never sees half an object, a retry overwrites.
        # A batch row will point at the object once put returns: the bytes, then the
        # rename, must be on disk by then, or a power loss leaves an empty object.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".tmp-") as handle:
            try:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            except BaseException:
                handle.close()
                os.unlink(handle.name)
                raise
        os.replace(handle.name, path)
        _fsync_directory(path.parent)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        base = self._path("")
        for path in sorted(base.rglob("*")):
            key = path.relative_to(base).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".tmp-"):
                yield key

    def _path(self, key: str) -> Path:
        return settings.object_store_folder(self.url) / key


class S3ObjectStore(ObjectStoreResource):
    """Objects under `s3://bucket/prefix`, through dagster-aws's S3 resource."""

    s3: dg.ResourceDependency[S3Resource]

    def put(self, key: str, body: bytes) -> None:
        bucket, prefix = self._bucket_prefix()
        self.s3.get_client().put_object(Bucket=bucket, Key=prefix + key, Body=body)

    def get(self, key: str) -> bytes:
        bucket, prefix = self._bucket_prefix()
        return self.s3.get_client().get_object(Bucket=bucket, Key=prefix + key)["Body"].read()

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        bucket, root = self._bucket_prefix()
        paginator = self.s3.get_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=root + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(root) :]

    def _bucket_prefix(self) -> tuple[str, str]:
        parsed = urlparse(settings.check_object_store_url(self.url))
        prefix = parsed.path.strip("/")
        return parsed.netloc, (prefix + "/" if prefix else "")


def object_store_for(url: str, s3: S3Resource | None = None, configured_url: Any = None) -> ObjectStoreResource:
    """The object store `url` names, checked now (ValueError naming the variable and value).
    `configured_url`: what the resource is configured with instead (a `dg.EnvVar`), so a
    secret in the URL reaches Dagster only as a variable name."""
    scheme = urlparse(settings.check_object_store_url(url)).scheme
    if scheme == "s3":
        return S3ObjectStore(url=configured_url or url, s3=s3 or S3Resource())
    return LocalObjectStore(url=configured_url or url)


def _make_folders(folder: Path) -> None:
    """`mkdir -p`, with each new folder's entry synced into its parent."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync_directory(new.parent)


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_resources(deferred: bool = True) -> dict[str, Any]:
    """The resources of the code location, from `SESSION_ASSETS_*` variables.

    `deferred`: name set variables as `dg.EnvVar` (resolved in each run); else
    use their values now, for code that calls the resources outside a run.
    """
    s = settings.load_settings()
    env_or = _env_or if deferred else (lambda name, default: os.environ.get(name) or default)
    return {
        "clickhouse": ClickHouseResource(
            url=env_or(settings.CLICKHOUSE_URL_VAR, s.clickhouse_url),
            database=env_or(settings.CLICKHOUSE_DATABASE_VAR, s.clickhouse_database),
            events_table=env_or(settings.EVENTS_TABLE_VAR, s.events_table),
            # A number, not a secret: its value is checked here, when the code location loads.
            candidate_query_seconds=settings.candidate_query_seconds(),
        ),
        "postgres": PostgresResource(url=env_or(settings.POSTGRES_URL_VAR, ""), home=str(s.home)),
        # The backend follows the URL's scheme, read now (the code location loads with the runs' environment).
        "object_store": object_store_for(s.object_store_url, S3Resource(), env_or(settings.OBJECT_STORE_URL_VAR, s.object_store_url)),
    }
