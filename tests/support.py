"""Shared test helpers: building events, materializing partitions, and an
independent pandas aggregation to compare the rollups with."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

import dagster as dg
import pandas as pd

from session_assets.assets import events, session_counter_rollups
from session_assets.checks import rollup_counters_match_events
from session_assets.partitions import scanner_day_key
from session_assets.stores.events_io import EVENT_COLUMNS, insert_events
from session_assets.resources import ClickHouseResource
from session_assets.core.run_context import AS_OF_TAG, BACKFILL_TAG

UTC = timezone.utc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, port_hex = local.partition(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[n : n + 4][::-1] for n in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(words)))
    return found


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    """Poll a server's state until `predicate` is truthy, bounded by a deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def app_database(admin_url: str, name: str | None = None) -> str:
    """A new app database on `admin_url`'s server, migrated as `session-assets migrate` does; its URL."""
    from session_assets.stores import postgres

    name = name or f"t_{uuid.uuid4().hex[:12]}"
    postgres.ensure_database(admin_url, name)
    url = postgres.with_database(admin_url, name)
    postgres.migrate(url)
    return url


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a newcomer's shell: only SESSION_ASSETS_HOME set, no DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_ASSETS_") and k != "DAGSTER_HOME"}
    env["SESSION_ASSETS_HOME"] = str(home)
    return env


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event(
    name: str,
    ts: datetime,
    session_id: str,
    *,
    team_id: int = 1,
    distinct_id: str = "user-1",
    properties: Mapping[str, Any] | None = None,
    inserted_at: datetime | None = None,
) -> dict[str, Any]:
    props = {"$session_id": session_id, **(properties or {})}
    return {
        "uuid": uuid.uuid4(),
        "event": name,
        "properties": json.dumps(props),
        "timestamp": ts,
        "team_id": team_id,
        "distinct_id": distinct_id,
        "$session_id": session_id,
        "inserted_at": inserted_at or ts + timedelta(seconds=2),
    }


def insert_rows(clickhouse: ClickHouseResource, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    columns = {name: [row[name] for row in rows] for name in EVENT_COLUMNS}
    insert_events(clickhouse.client(), clickhouse.events, columns)


def materialize_rollup(
    instance: dg.DagsterInstance,
    clickhouse: ClickHouseResource,
    day: date | str,
    as_of: datetime,
    *,
    backfill: bool = False,
    with_check: bool = True,
) -> dg.ExecuteInProcessResult:
    tags = {AS_OF_TAG: as_of.isoformat()}
    if backfill:
        tags[BACKFILL_TAG] = "test-backfill"
    selection = [session_counter_rollups.key]
    assets: list[Any] = [events, session_counter_rollups]
    if with_check:
        assets.append(rollup_counters_match_events)
    result = dg.materialize(
        assets,
        selection=dg.AssetSelection.assets(*selection) | dg.AssetSelection.checks(rollup_counters_match_events)
        if with_check
        else dg.AssetSelection.assets(*selection),
        partition_key=str(day),
        resources={"clickhouse": clickhouse},
        instance=instance,
        tags=tags,
    )
    assert result.success
    return result


def swept_days(scanner_start: datetime, as_of: datetime) -> list[date]:
    """Every rollup day a sweep of a scanner starting at `scanner_start` reads up to `as_of`:
    from the day before its 26 h lookback to the as-of day (late data never reaches before
    the scanner's start)."""
    first = (scanner_start - timedelta(hours=26)).date() - timedelta(days=1)
    return [first + timedelta(days=n) for n in range((as_of.date() - first).days + 1)]


def roll_for_sweeps(
    instance: dg.DagsterInstance,
    clickhouse: ClickHouseResource,
    as_of: datetime,
    scanner_start: datetime | str = "2024-02-28T00:00:00Z",
    **kwargs: Any,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize every rollup day the test scanners' sweeps read, as of `as_of`."""
    start = scanner_start if isinstance(scanner_start, datetime) else datetime.fromisoformat(scanner_start.replace("Z", "+00:00"))
    return [materialize_rollup(instance, clickhouse, day, as_of, **kwargs) for day in swept_days(start, as_of)]


def rollup_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node("session_counter_rollups")
    return {key: value.value for key, value in materialization.metadata.items()}


def check_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


COUNTER_COLUMNS = [
    "event_count",
    "pageview_count",
    "autocapture_count",
    "rageclick_count",
    "exception_count",
    "ai_generation_count",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "first_timestamp",
    "last_timestamp",
    "max_inserted_at",
    "entry_url",
    "distinct_id",
]


def rollups_frame(clickhouse: ClickHouseResource, day: date | None = None) -> pd.DataFrame:
    """The rollup table as it reads now (FINAL), one row per (team, day, session)."""
    where = "WHERE day = {day:Date}" if day else ""
    result = clickhouse.client().query(
        f"SELECT team_id, day, session_id, {', '.join(COUNTER_COLUMNS)} FROM session_counter_rollups_v2 FINAL {where}",
        parameters={"day": day} if day else None,
    )
    frame = pd.DataFrame(result.result_rows, columns=result.column_names)
    return _normalise(frame)


def expected_rollups(rows: Iterable[Mapping[str, Any]], as_of: datetime, day: date | None = None) -> pd.DataFrame:
    """Counters computed in pandas from the raw event dicts, sharing no code with the package."""
    frame = pd.DataFrame(list(rows))
    frame = frame[frame["inserted_at"] <= as_of].copy()
    # A uuid stored twice is one event, as first inserted.
    frame = frame.sort_values("inserted_at", kind="stable").drop_duplicates(["team_id", "$session_id", "timestamp", "uuid"]).sort_index()
    frame["day"] = [ts.date() for ts in frame["timestamp"]]
    if day is not None:
        frame = frame[frame["day"] == day]
    props = [json.loads(p) for p in frame["properties"]]
    is_ai = frame["event"] == "$ai_generation"

    def number(key: str, cast):
        return [cast(p.get(key, 0)) if ai else cast(0) for p, ai in zip(props, is_ai)]

    frame["input_tokens"] = number("$ai_input_tokens", int)
    frame["output_tokens"] = number("$ai_output_tokens", int)
    frame["cost_usd"] = number("$ai_total_cost_usd", lambda v: Decimal(str(v)))
    # The rollup keeps a URL's first 2,048 characters (docs/bad-input.md).
    urls = [p.get("$current_url", "") for p in props]
    frame["url"] = [(u[:2048] if isinstance(u, str) else u) if e == "$pageview" else None for u, e in zip(urls, frame["event"])]
    out = []
    for (team_id, day_value, session_id), group in frame.groupby(["team_id", "day", "$session_id"], sort=True):
        group = group.sort_values("timestamp", kind="stable")
        pageviews = group[group["event"] == "$pageview"]
        out.append(
            {
                "team_id": team_id,
                "day": day_value,
                "session_id": session_id,
                "event_count": len(group),
                "pageview_count": int((group["event"] == "$pageview").sum()),
                "autocapture_count": int((group["event"] == "$autocapture").sum()),
                "rageclick_count": int((group["event"] == "$rageclick").sum()),
                "exception_count": int((group["event"] == "$exception").sum()),
                "ai_generation_count": int((group["event"] == "$ai_generation").sum()),
                "input_tokens": int(sum(group["input_tokens"])),
                "output_tokens": int(sum(group["output_tokens"])),
                "cost_usd": sum(group["cost_usd"], Decimal(0)),
                "first_timestamp": group["timestamp"].min(),
                "last_timestamp": group["timestamp"].max(),
                "max_inserted_at": group["inserted_at"].max(),
                "entry_url": pageviews["url"].iloc[0] if len(pageviews) else "",
                "distinct_id": group["distinct_id"].iloc[0],
            }
        )
    return _normalise(pd.DataFrame(out, columns=["team_id", "day", "session_id", *COUNTER_COLUMNS]))


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("first_timestamp", "last_timestamp", "max_inserted_at"):
        frame[column] = [_utc(v) for v in frame[column]]
    frame["cost_usd"] = [Decimal(v).quantize(Decimal("1e-9")) for v in frame["cost_usd"]]
    for column in COUNTER_COLUMNS:
        if column.endswith("_count") or column.endswith("_tokens"):
            frame[column] = frame[column].astype("int64")
    frame["team_id"] = frame["team_id"].astype("int64")
    return frame.sort_values(["team_id", "day", "session_id"]).reset_index(drop=True)


def _utc(value: Any) -> datetime:
    value = pd.Timestamp(value).to_pydatetime()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- scanners -------------------------------------------------------------------


def scanner_definition(scanner_id: str = "errors", team_id: int = 1, **overrides: Any) -> dict[str, Any]:
    definition = {
        "id": scanner_id,
        "team_id": team_id,
        "name": f"test scanner {scanner_id}",
        "kind": "match",
        "filter": {},
        "rule": {},
        "sample_rate": 1.0,
        "start_at": "2024-02-28T00:00:00Z",
    }
    definition.update(overrides)
    return definition


def add_scanner(instance: dg.DagsterInstance, postgres: Any, **definition: Any):
    from session_assets.partitions import scanner_partitions_def
    from session_assets.scanners import parse_scanner
    from session_assets.scanners import store

    scanner = parse_scanner(scanner_definition(**definition), source="test")
    store.save(postgres.pool(), scanner)
    instance.add_dynamic_partitions(scanner_partitions_def.name, [scanner.id])
    return scanner


def sweep(
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    scanner_id: str,
    day: date | str,
    as_of: datetime,
    *,
    backfill: bool = False,
    page_size: int = 1000,
    default_monthly_quota: int | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    from session_assets.assets import scanner_observations
    from session_assets.checks import (
        no_session_behind_watermark_unobserved,
        observations_behind_watermark,
        team_quota_not_exceeded,
        watermark_never_moves_backwards,
    )

    tags = {AS_OF_TAG: as_of.isoformat()}
    if backfill:
        tags[BACKFILL_TAG] = "test-backfill"
    config: dict[str, Any] = {"page_size": page_size}
    if default_monthly_quota is not None:
        config["default_monthly_quota"] = default_monthly_quota
    return dg.materialize(
        [
            session_counter_rollups,
            scanner_observations,
            no_session_behind_watermark_unobserved,
            observations_behind_watermark,
            team_quota_not_exceeded,
            watermark_never_moves_backwards,
        ],
        selection=dg.AssetSelection.assets(scanner_observations) | dg.AssetSelection.checks_for_assets(scanner_observations),
        partition_key=f"{day}|{scanner_id}",
        resources=dict(resources),
        instance=instance,
        tags=tags,
        run_config={"ops": {"scanner_observations": {"config": config}}},
        raise_on_error=raise_on_error,
    )


def sweep_metadata(result: dg.ExecuteInProcessResult, asset: str = "observation_batches") -> dict[str, Any]:
    found = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(asset)]
    (event,) = found
    return {k: v.value for k, v in event.materialization.metadata.items()}


def observed(postgres: Any, scanner_id: str) -> dict[str, dict[str, Any]]:
    with postgres.pool().connection() as conn:
        rows = conn.execute(
            "SELECT session_id, verdict, score, evidence, batch_key, created_at, day FROM observations "
            "WHERE scanner_id = %s ORDER BY session_id",
            (scanner_id,),
        ).fetchall()
    return {r[0]: {"verdict": r[1], "score": r[2], "evidence": r[3], "batch_key": r[4], "created_at": r[5], "day": r[6]} for r in rows}


# --- faults and concurrency (tests/test_faults.py, tests/test_concurrency.py) ------------

from dataclasses import dataclass  # noqa: E402 - helpers added below the existing ones

FAULT_DAY = date(2026, 11, 20)
FAULT_SCANNER_START = datetime(2026, 11, 20, tzinfo=UTC)
# Two scanners of two teams; every session with a pageview qualifies.
FAULT_SCANNERS = {"web": 1, "shop": 2}


@dataclass(frozen=True)
class GeneratedSession:
    team_id: int
    session_id: str
    start: datetime
    end: datetime
    pageview: bool


def generate_sessions(
    count: int, first_end: datetime, last_end: datetime, seed: int, prefix: str = "s", teams: tuple[int, ...] = (1, 2)
) -> list[GeneratedSession]:
    """Seeded sessions ending uniformly in [first_end, last_end); 9 in 10 have a pageview."""
    import random

    rng = random.Random(seed)
    span = int((last_end - first_end).total_seconds())
    sessions = []
    for n in range(count):
        end = first_end + timedelta(seconds=rng.randrange(span))
        start = end - timedelta(seconds=rng.randrange(1, 900))
        session_id = f"{prefix}-{n:05d}-{rng.getrandbits(32):08x}"
        sessions.append(GeneratedSession(teams[n % len(teams)], session_id, start, end, rng.random() < 0.9))
    return sessions


def session_events(sessions: Iterable[GeneratedSession]) -> list[dict[str, Any]]:
    rows = []
    for s in sessions:
        first = "$pageview" if s.pageview else "$autocapture"
        rows.append(event(first, s.start, s.session_id, team_id=s.team_id, properties={"$current_url": "https://x/"}))
        rows.append(event("$autocapture", s.end, s.session_id, team_id=s.team_id))
    return rows


def fault_scanner_definitions(scanners: Mapping[str, int] = FAULT_SCANNERS) -> list[dict[str, Any]]:
    return [
        scanner_definition(
            scanner_id,
            team_id,
            filter={"counters": {"pageview_count": {"gte": 1}}},
            start_at=FAULT_SCANNER_START.isoformat(),
        )
        for scanner_id, team_id in scanners.items()
    ]


def expected_observation_keys(
    sessions: Iterable[GeneratedSession], frontier: datetime, scanners: Mapping[str, int] = FAULT_SCANNERS
) -> set[tuple[str, str]]:
    """From the generated sessions alone: the (scanner, session) pairs an uninterrupted sweep
    observes up to `frontier` (ended after the scanner start, at or before the frontier)."""
    sessions = list(sessions)
    return {
        (scanner_id, s.session_id)
        for scanner_id, team_id in scanners.items()
        for s in sessions
        if s.team_id == team_id and s.pageview and FAULT_SCANNER_START < s.end <= frontier
    }


@dataclass(frozen=True)
class StoreState:
    """What the stores hold after a run of ticks, read without the package's code."""

    observations: dict[tuple[str, str], dict[str, Any]]
    batch_rows: dict[str, int]  # object key -> rows it says it carries
    batch_observations: dict[str, int]  # batch key -> observations that name it
    objects: set[str]
    quotas: dict[int, tuple[int, int]]  # team -> (limit, used)
    observed_per_team: dict[int, int]
    status: dict[str, Any]


def store_state(postgres_url: str, objects: Iterable[str], status: dict[str, Any]) -> StoreState:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT scanner_id, session_id, verdict, evidence FROM observations").fetchall()
        batches = dict(conn.execute("SELECT object_key, rows FROM observation_batches").fetchall())
        named = dict(conn.execute("SELECT batch_key, count(*) FROM observations GROUP BY batch_key").fetchall())
        quotas = {t: (limit, used) for t, limit, used in conn.execute("SELECT team_id, observation_limit, used FROM team_quotas")}
        per_team = dict(conn.execute("SELECT team_id, count(*) FROM observations GROUP BY team_id").fetchall())
    return StoreState(
        observations={(r[0], r[1]): {"verdict": r[2], "evidence": r[3]} for r in rows},
        batch_rows=batches,
        batch_observations=named,
        objects=set(objects),
        quotas=quotas,
        observed_per_team=per_team,
        status=status,
    )


def local_objects(folder: Path) -> set[str]:
    """Every file under an objects folder (temporary files included: a crash must leave none)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def assert_store_state(
    state: StoreState,
    expected: set[tuple[str, str]],
    frontier: datetime,
    sessions: Iterable[GeneratedSession] = (),
) -> None:
    """What every run of ticks must end with, faults or not: the observations of an
    uninterrupted run (one per (scanner, session); UNIQUE makes a second row impossible,
    so a double count would show as an extra or a leaked quota), batch objects and
    rows one-to-one, quota used = observations, watermarks at the frontier, nothing failed."""
    assert set(state.observations) == expected
    by_id = {s.session_id: s for s in sessions}
    for (_, session_id), row in state.observations.items():
        if session_id in by_id:
            assert row["evidence"]["session"]["end"] == by_id[session_id].end.isoformat()
            assert row["evidence"]["session"]["late"] is False
    assert state.objects == set(state.batch_rows), "batch objects without rows, or rows without objects"
    assert state.batch_rows == state.batch_observations
    for team_id, (limit, used) in state.quotas.items():
        assert used == state.observed_per_team.get(team_id, 0) <= limit, (team_id, limit, used)
    for scanner in state.status["scanners"]:
        assert scanner["failed"] == [], scanner
        assert scanner["watermark_end"] == frontier.isoformat(), scanner  # no gap: the frontier is reached
        assert scanner["frontier"] == frontier.isoformat(), scanner
    assert all(not rollup["failed"] for rollup in state.status["rollups"]), state.status["rollups"]


def lock_waiters(conn: Any) -> int:
    """Backends of this database waiting for a lock (a gate the test holds)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction, pg_stat_activity is read once
    return conn.execute(
        "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE NOT l.granted AND a.datname = current_database()"
    ).fetchone()[0]


def partition_gate(conn: Any, scanner_id: str, day: date) -> None:
    """Take the advisory lock every page write of (scanner, day) takes first (sql/postgres/partition_lock.sql)."""
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (scanner_day_key(day, scanner_id),))


# --- a running `session-assets dev` ----------------------------------------------

def _with_partitions(run: dict[str, Any]) -> dict[str, Any]:
    """A run with `partitions`: its partition tag, or the partitions a batch run was given."""
    import yaml

    from session_assets.batches import BATCH_TAG, OP_NAME

    if "dagster/partition" in run["tags"]:
        partitions = [run["tags"]["dagster/partition"]]
    elif BATCH_TAG in run["tags"]:
        config = yaml.safe_load(run.pop("runConfigYaml") or "{}") or {}
        partitions = list(config.get("ops", {}).get(OP_NAME, {}).get("config", {}).get("partitions", []))
    else:
        partitions = []
    run.pop("runConfigYaml", None)
    return {**run, "partitions": partitions}


class DevProcess:
    """`session-assets dev` on free ports in its own home, for end-to-end tests."""

    def __init__(self, home: Path, log_path: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        import signal
        import subprocess
        import sys

        from dagster_graphql import DagsterGraphQLClient

        self.home, self.log_path = home, log_path
        self.port = free_port()
        self.env = {**cli_env(home), **(env or {})}
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "session_assets.cli", "dev", "--port", str(self.port), *args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A shell's background job ignores SIGINT and its children inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=10)

    def log_tail(self, n: int = 5000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"dev exited with {self.process.returncode}:\n{self.log_tail()}")

    def wait_ready(self, timeout_s: float = 300) -> None:
        def ready():
            self.alive()
            try:
                return self.client._execute("{ version }")  # noqa: SLF001 - the public client has no ping
            except Exception:
                return None

        wait_until(ready, timeout_s, "the Dagster UI")

    def runs(self, tag_key: str, tag_value: str) -> list[dict[str, Any]]:
        """Runs with a tag, newest first; [] while the webserver is busy."""
        query = """query { runsOrError(filter: {tags: [{key: %s, value: %s}]}) { __typename
          ... on Runs { results { runId status startTime endTime runConfigYaml tags { key value } } } } }""" % (
            json.dumps(tag_key),
            json.dumps(tag_value),
        )
        try:
            result = self.client._execute(query)["runsOrError"]  # noqa: SLF001
        except Exception:
            return []
        assert result["__typename"] == "Runs", result
        return [_with_partitions({**r, "tags": {t["key"]: t["value"] for t in r["tags"]}}) for r in result["results"]]

    def cli(self, *args: str, timeout_s: float = 600) -> Any:
        import subprocess
        import sys

        return subprocess.run(
            [sys.executable, "-m", "session_assets.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip

    def stop(self, *, terminate_only_dev: bool = False) -> None:
        """Ctrl-C to its process group (a terminal), or SIGTERM to `session-assets dev` alone
        (what a script does to a dev it started in the background). Either way nothing it
        started may be left."""
        import signal
        import subprocess

        if terminate_only_dev:
            self.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()
        # Nothing dev started may outlive it (a code server once did, for hours).
        left = self.leftovers()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes outlived dev: {left}"

    def leftovers(self) -> list[int]:
        """Live processes with this dev's home in their environment."""
        mark = f"SESSION_ASSETS_HOME={self.home}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if mark in environ.split(b"\0"):
                found.append(int(entry.name))
        return found
