"""Environment variables and their embedded defaults (SPEC §3).

Read once, at definitions load or CLI start-up; resources carry the values from
there on. Defaults derive from `SESSION_ASSETS_HOME` so that one folder holds
the whole embedded stack.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote, urlsplit

from session_assets.stores.secrets import redact

HOME_VAR = "SESSION_ASSETS_HOME"
CLICKHOUSE_URL_VAR = "SESSION_ASSETS_CLICKHOUSE_URL"
CLICKHOUSE_DATABASE_VAR = "SESSION_ASSETS_CLICKHOUSE_DATABASE"
EVENTS_TABLE_VAR = "SESSION_ASSETS_EVENTS_TABLE"
POSTGRES_URL_VAR = "SESSION_ASSETS_POSTGRES_URL"
DAGSTER_POSTGRES_URL_VAR = "SESSION_ASSETS_DAGSTER_POSTGRES_URL"
OBJECT_STORE_URL_VAR = "SESSION_ASSETS_OBJECT_STORE_URL"
START_DATE_VAR = "SESSION_ASSETS_START_DATE"
MAX_CONCURRENT_RUNS_VAR = "SESSION_ASSETS_MAX_CONCURRENT_RUNS"
SWEEP_INTERVAL_VAR = "SESSION_ASSETS_SWEEP_INTERVAL_SECONDS"
RETRY_BACKOFF_VAR = "SESSION_ASSETS_RETRY_BACKOFF_SECONDS"
POSTHOG_URL_VAR = "SESSION_ASSETS_POSTHOG_URL"  # e.g. https://us.posthog.com: links to session replays
# The time limit of a sweep's candidates query (ClickHouse's max_execution_time), in seconds.
CANDIDATE_QUERY_SECONDS_VAR = "SESSION_ASSETS_CANDIDATE_QUERY_SECONDS"
DEFAULT_CANDIDATE_QUERY_SECONDS = 120.0

DEFAULT_START_DATE = "2024-01-01"


@dataclass(frozen=True)
class Settings:
    home: Path
    clickhouse_url: str
    clickhouse_database: str
    events_table: str
    postgres_url: str  # empty: the embedded pgserver in home/postgres
    object_store_url: str
    start_date: date

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_url.startswith("chdb:")

    @property
    def embedded_postgres(self) -> bool:
        return not self.postgres_url

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def postgres_data_dir(self) -> Path:
        return self.home / "postgres"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    home = Path(env.get(HOME_VAR) or "./.session_assets").expanduser().resolve()
    return Settings(
        home=home,
        clickhouse_url=env.get(CLICKHOUSE_URL_VAR) or f"chdb://{home / 'clickhouse'}",
        clickhouse_database=clickhouse_database_name(env),
        events_table=env.get(EVENTS_TABLE_VAR) or "events",
        postgres_url=env.get(POSTGRES_URL_VAR) or "",
        # as_uri() escapes what a URL would misread in a home path ('#', '?', '%').
        object_store_url=check_object_store_url(env.get(OBJECT_STORE_URL_VAR) or (home / "objects").as_uri()),
        start_date=start_date(env),
    )


def start_date(environ: Mapping[str, str] | None = None) -> date:
    """The partitions' first day: SESSION_ASSETS_START_DATE, else DEFAULT_START_DATE."""
    env = os.environ if environ is None else environ
    text = env.get(START_DATE_VAR) or DEFAULT_START_DATE
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{START_DATE_VAR}={text[:40]!r} is not a date (expected YYYY-MM-DD)") from None


def check_object_store_url(url: str) -> str:
    """`url` if it is `file:///absolute/path` (host empty or `localhost`) or `s3://bucket/prefix`."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        # urlsplit sets a query and a fragment apart, and the key prefix is the path alone:
        # `s3://b/p?x=1#f` silently wrote under `p/`. A bucket is required.
        if not parts.netloc or "?" in url or "#" in url:
            raise ValueError(
                f"{OBJECT_STORE_URL_VAR}={redact(url)!r} is not an S3 folder URL: use s3://bucket/prefix "
                "(a bucket, then a key prefix; no query or fragment)"
            )
        return url
    if parts.scheme != "file":
        raise ValueError(f"{OBJECT_STORE_URL_VAR}={redact(url)!r}: expected file:///absolute/path or s3://bucket/prefix")
    # `file://./objects` is host '.' and path '/objects': it once wrote to /objects.
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or "?" in url or "#" in url \
            or "\0" in unquote(parts.path):
        raise ValueError(
            f"{OBJECT_STORE_URL_VAR}={redact(url)!r} is not a local folder URL: use file:///absolute/path "
            "(three slashes, an absolute path; escape '#', '?' and '%' in it as %23, %3F, %25)"
        )
    return url


def object_store_folder(url: str) -> Path:
    """The folder of a checked `file://` URL (its path percent-decoded, as file URLs are)."""
    return Path(unquote(urlsplit(check_object_store_url(url)).path))


def seconds_setting(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A positive whole number of seconds from the environment (the sensor's cadence, its backoff)."""
    env = os.environ if environ is None else environ
    text = env.get(name) or str(default)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r} is not a positive whole number of seconds")
    return int(text)


def candidate_query_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The candidates query's time limit: a positive number of seconds (fractions allowed)."""
    env = os.environ if environ is None else environ
    text = env.get(CANDIDATE_QUERY_SECONDS_VAR) or str(DEFAULT_CANDIDATE_QUERY_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{CANDIDATE_QUERY_SECONDS_VAR}={text[:120]!r} is not a positive number of seconds")
    return seconds


def clickhouse_database_name(environ: Mapping[str, str] | None = None) -> str:
    """The ClickHouse database the tables live in, for the assets' fully qualified table names."""
    env = os.environ if environ is None else environ
    return env.get(CLICKHOUSE_DATABASE_VAR) or "session_assets"


def events_table_name(environ: Mapping[str, str] | None = None) -> str:
    """The events table, fully qualified (SESSION_ASSETS_EVENTS_TABLE may name another database)."""
    env = os.environ if environ is None else environ
    table = env.get(EVENTS_TABLE_VAR) or "events"
    return table if "." in table else f"{clickhouse_database_name(env)}.{table}"


def posthog_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The PostHog app the flagged-session previews link to; None when unset or not http(s)."""
    from urllib.parse import urlsplit

    env = os.environ if environ is None else environ
    url = (env.get(POSTHOG_URL_VAR) or "").strip().rstrip("/")
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc and not parts.query and not parts.fragment else None


START_DATE_FILE = "start_date"  # in SESSION_ASSETS_HOME: the first day of the demo data `dev`/`demo` loaded


def adopt_remembered_start_date(environ: dict[str, str] | None = None) -> None:
    """Unless SESSION_ASSETS_START_DATE is set, take the start date the embedded stack
    remembered when it loaded its demo data: the UI's partitions then begin where the data
    does (not years before it, all empty). Called before the partitions module is imported."""
    env = os.environ if environ is None else environ
    if env.get(START_DATE_VAR):
        return
    remembered = Path(env.get(HOME_VAR) or "./.session_assets").expanduser() / START_DATE_FILE
    try:
        text = remembered.read_text().strip()
        date.fromisoformat(text)
    except (OSError, ValueError):
        return
    env[START_DATE_VAR] = text


def remember_start_date(home: Path, first_day: date, environ: dict[str, str] | None = None) -> None:
    """Record the first day of freshly loaded demo data as the stack's start date (unless one is set)."""
    env = os.environ if environ is None else environ
    if env.get(START_DATE_VAR):
        return
    (home / START_DATE_FILE).write_text(first_day.isoformat() + "\n")
    env[START_DATE_VAR] = first_day.isoformat()
