"""End-to-end benchmark of the sweep on the embedded stack: chDB + pgserver + a local object store.

Everything lives in one temp folder and runs in this process: chDB
(`ClickHouseResource(url="chdb://<tmp>/clickhouse")`), one pgserver holding the
app database and the Dagster instance's database (the project's dagster.yaml,
`DagsterInstance.from_config`, as `session-assets` sets it up), and
`file://<tmp>/objects` for the batch objects. Runs go through
`execute_tick(defs, instance, pool, now)`: the sweep sensor's plan,
then each requested run with `execute_in_process`, one after another (what
`session-assets sweep --now T` does).

Figures:

* throughput (info). One UTC day of `--events` events (default 10,000,000),
  generated with `bulk_events.generate_bulk_events` one team at a time (`--teams`,
  default 4; converted for insert as benchmarks/rollups.py does), loaded and
  merged, then rolled up (`rollups_job` for the days a first tick would
  request for these scanners, "today" excepted, as of T = day end + settle
  (35 min); timed, info). Then `--scanners` scanners
  (default 20: match / threshold / ai_cost, filters from "every session" to
  ~2% of sessions, counter, duration and event-presence filters, sample rates
  1, 0.5, 0.25, 0.1; spread over the teams; all starting at the day start)
  are swept for that day two ways, in this order:
    - raw SQL: for each scanner, the candidates `INSERT ... SELECT` of
      sql/clickhouse/candidates_insert.sql with the scanner's compiled filter,
      bound exactly as the asset binds it for a first sweep (watermark = scanner
      start, frontier = day end), then sql/clickhouse/candidates_walk.sql, a
      plain SELECT streaming those candidates into Python. No Postgres, no Dagster.
    - asset path: `execute_tick(now=T)` repeated until a tick requests no
      sweep (one tick does it: 20 sweeps fit under the 40-run cap). A tick also
      re-rolls "today" (the day after, empty) as the sensor always does.
  `scanner_candidates` is truncated before each (untimed); one untimed raw pass
  warms the caches first. Rate = candidates handled / wall seconds, where
  candidates are the sampled sessions each sweep found (its `candidates`
  metadata; the raw pass counts the rows its SELECT read: they must be equal,
  and equal to the observations in Postgres).
  **ratio = asset rate / raw SQL rate = raw seconds / asset seconds**, for
  one repetition's raw and asset passes (run back to back); the figure is the
  median over repetitions. It is the share of raw ClickHouse speed the whole
  product path keeps (1.0 = no cost on top of the candidate queries; it cannot
  be above ~1: the asset runs the same queries and writes every observation to
  Postgres and an object). No goal: info. `--repeat R` (default 3): R
  repetitions, each with fresh scanner ids and a fresh app database; the chDB
  data, the rollups and the Dagster instance are shared. The rates are
  medians.
  Where the asset time goes (info): ClickHouse = the candidates INSERT and
  stats (`window_duration_s`) + pulling the candidate rows from the chDB
  stream; Postgres = `observations.write_page` (lock, dedupe, quota, INSERT,
  batch row, commit) minus its object writes, + the final flush; object store
  = `ObjectStoreResource.put`; rest of the sweep bodies = their `duration_s`
  minus those (scanner and watermark reads from Postgres and the Dagster
  instance, waiting for the verdict thread); outside the bodies = the ticks'
  wall minus the bodies (Dagster: planning, run set-up, event log writes,
  asset checks; today's rollup run). Timed by wrapping those functions.
* cost growth: the same throughput measurement at `--events` / 10 on another
  day (same stack): both days are loaded first, then each repetition sweeps
  N and then N/10 (raw pass, asset pass each). Figure: the median over
  repetitions of time(N) / time(N/10) of the asset path's sweep, goal <= 10
  (linear or better); the raw SQL ratio (of medians) is printed beside it.
* latency: `--latency-hours` (default 2) of sessions on a third day: the
  sessions of a generated day (`--latency-events`, default 2,000,000) that
  start and end inside [10:00, 10:00 + hours), one match-everything scanner per
  team. Simulated 5-minute cadence: for T = 10:05, 10:10, ...: insert the events
  with inserted_at in (T - 5 min, T] (inserted_at = timestamp + 0.5-10 s, from
  the generator), run `execute_tick(now=T)`, then read which (scanner, session)
  pairs are in Postgres. Latency of a session = (T of the first tick after
  which it is observed) - (session end = its last event's timestamp). Goal:
  max <= settle (35 min) + 10 min. Ticks stop once every session is observed
  (or 60 min after the last one settled: the rest count as missed, MISS).

The sensor's tick cost versus history is benchmarks/sensor.py's figure
(benchmarks/run_all.py prints it with these).

`--quick`: 200,000 events, 6 scanners, 30 minutes of latency sessions, one
repetition: 1-2.5 minutes on this project's 2-core machine (quiet / busy); the
full default takes 10-14 minutes there.
Explicit flags override the preset: `--quick --events 20000 --scanners 3 --teams 1
--latency-events 20000 --latency-hours 0.25` is tests/test_benchmarks.py's run.

    python benchmarks/e2e.py [--quick] [--events N] [--scanners S] [--teams T] [--repeat R]
                             [--latency-events N] [--latency-hours H] [--path DIR]
    python -m benchmarks.e2e [same options]

Prints the figure lines again under "## figures" at the end. Exit code 0
whatever the goals; 1 when a correctness check fails (counts differ, a run
failed, a session was never observed).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

if __package__ in (None, ""):  # `python benchmarks/e2e.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import dagster as dg  # noqa: E402

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from dagster_aws.s3 import S3Resource  # noqa: E402

from benchmarks.bulk_events import generate_bulk_events  # noqa: E402
from benchmarks.rollups import insert_chunked, insertable  # noqa: E402
from session_assets.stores import clickhouse as ch  # noqa: E402
from session_assets.core import observations, tick_plan, watermarks  # noqa: E402
from session_assets import sensors, tick_state  # noqa: E402
from session_assets.stores import sql  # noqa: E402
from session_assets.commands import stack  # noqa: E402
from session_assets.commands.ticks import execute_tick  # noqa: E402
from session_assets.stores import postgres as pg  # noqa: E402
from session_assets.assets.scanning import CANDIDATE_WINDOWS, OBSERVATION_BATCHES, SweepPlan, candidates_statement  # noqa: E402
from session_assets.core.days import SETTLE, day_end, day_start  # noqa: E402
from session_assets.definitions import build_definitions  # noqa: E402
from session_assets.stores.events_io import EVENT_COLUMNS, insert_events  # noqa: E402
from session_assets.resources import ClickHouseResource, ObjectStoreResource, object_store_for, PostgresResource  # noqa: E402
from session_assets.core.run_context import AS_OF_TAG  # noqa: E402
from session_assets.scanners import compile_filter, parse_scanner  # noqa: E402
from session_assets.scanners import store as scanner_store  # noqa: E402
from session_assets.settings import DAGSTER_POSTGRES_URL_VAR, DEFAULT_START_DATE, MAX_CONCURRENT_RUNS_VAR, START_DATE_VAR  # noqa: E402

UTC = timezone.utc
CADENCE = timedelta(minutes=5)
LATENCY_GOAL = SETTLE + timedelta(minutes=10)
GROWTH_GOAL = 10.0
LATENCY_WINDOW_START = timedelta(hours=10)  # 10:00 UTC on the latency day: busy hours
LATENCY_OVERTIME = timedelta(minutes=60)  # ticks continue this long after the last session settled
MAX_TICKS_PER_SWEEP = 10
QUOTA = 10**12  # per team and month: the benchmark measures speed, not quota
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
CH_DATABASE = "bench_e2e"
RESULTS: list[str] = []

# The first day: a daily partition (the start date may be moved by the environment).
_START = date.fromisoformat(os.environ.get(START_DATE_VAR) or DEFAULT_START_DATE)
BASE_DAY = max(date(2025, 1, 15), _START + timedelta(days=2))
DAY_N = BASE_DAY + timedelta(days=31)  # throughput at N
DAY_N10 = BASE_DAY  # throughput at N / 10
DAY_LATENCY = BASE_DAY + timedelta(days=62)

# (kind, filter, rule, sample rate): from every session to a few percent of them.
SCANNER_VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any], float]] = [
    ("match", {}, {}, 1.0),
    (
        "threshold",
        {"counters": {"exception_count": {"gte": 1}}},
        {"score": "exception_count * 2 + rageclick_count", "flag_at": 3},
        1.0,
    ),
    ("ai_cost", {"counters": {"ai_generation_count": {"gte": 1}}}, {"max_cost_usd": 0.05, "max_total_tokens": 20000}, 1.0),
    ("match", {"counters": {"pageview_count": {"gte": 3}}}, {}, 0.5),
    ("threshold", {"min_duration_seconds": 120}, {"score": "pageview_count + autocapture_count", "flag_at": 20}, 1.0),
    (
        "match",
        {"events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "icontains", "value": "/checkout"}]}]},
        {},
        1.0,
    ),
    ("ai_cost", {"counters": {"cost_usd": {"gte": 0.01}}}, {"max_cost_usd": 0.02}, 1.0),
    ("match", {"counters": {"rageclick_count": {"gte": 1}}}, {}, 0.25),
    ("threshold", {"max_duration_seconds": 60}, {"score": "event_count", "flag_at": 5}, 0.1),
    ("match", {"counters": {"event_count": {"gte": 10}}, "events": [{"event": "$exception"}]}, {}, 1.0),
]


# --- helpers -----------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def figure(label: str, value: str, goal: str | None = None, passed: bool | None = None) -> None:
    """One figure line: `label: value (goal G) PASS|MISS`, or `label: value (info)`."""
    line = f"{label}: {value}"
    if goal is None:
        line += " (info)"
    else:
        line += f" (goal {goal}) {'PASS' if passed else 'MISS'}"
    RESULTS.append(line)
    say(line)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000 + moment.microsecond


@dataclass
class Stack:
    tmp: Path
    admin_url: str
    clickhouse: ClickHouseResource
    instance: dg.DagsterInstance
    app_url: str = ""
    pool: Any = None
    defs: Any = None
    apps: int = 0

    @property
    def client(self) -> Any:
        return self.clickhouse.client()

    def fresh_app(self) -> None:
        """A new, empty app database (scanners, observations, quotas) and the definitions using it."""
        if self.app_url:
            old = pg._pools.pop(self.app_url, None)
            if old is not None:
                old.close()
        self.apps += 1
        self.app_url = pg.embedded_server_url(self.tmp / "postgres", database=f"bench_app_{self.apps}")
        pg.migrate(self.app_url)  # the resources only check the schema
        resources = {
            "clickhouse": self.clickhouse,
            "postgres": PostgresResource(url=self.app_url),
            "object_store": object_store_for(f"file://{self.tmp / 'objects'}", S3Resource()),
        }
        self.pool = resources["postgres"].pool()
        self.defs = build_definitions(resources)


def open_stack(tmp: Path) -> Stack:
    """pgserver (app + Dagster databases), chDB, local objects; the instance from the repo's dagster.yaml."""
    admin_url = pg.embedded_server_url(tmp / "postgres", database="postgres")
    dagster_url = pg.embedded_server_url(tmp / "postgres", database="bench_dagster")
    home = tmp / "dagster"
    stack.install_dagster_yaml(home)
    os.environ[DAGSTER_POSTGRES_URL_VAR] = pg.sqlalchemy_url(dagster_url)
    os.environ.setdefault(MAX_CONCURRENT_RUNS_VAR, "1")
    instance = dg.DagsterInstance.from_config(str(home))
    clickhouse = ClickHouseResource(url=f"chdb://{tmp / 'clickhouse'}", database=CH_DATABASE)
    clickhouse.migrate()
    s = Stack(tmp=tmp, admin_url=admin_url, clickhouse=clickhouse, instance=instance)
    s.fresh_app()
    return s


def make_scanners(count: int, teams: list[int], start_at: datetime, prefix: str) -> list[Any]:
    scanners = []
    for n in range(count):
        kind, flt, rule, rate = SCANNER_VARIANTS[n % len(SCANNER_VARIANTS)]
        scanners.append(
            parse_scanner(
                {
                    "id": f"{prefix}-{n:02d}",
                    "team_id": teams[n % len(teams)],
                    "name": f"e2e scanner {n} ({kind})",
                    "kind": kind,
                    "filter": flt,
                    "rule": rule,
                    "sample_rate": rate,
                    "start_at": start_at.isoformat(),
                },
                source="benchmark",
            )
        )
    return scanners


def set_quotas(s: Stack, teams: list[int], period: date) -> None:
    with s.pool.connection() as conn:
        for team in teams:
            conn.execute(sql.load("postgres/quota_set.sql"), {"team_id": team, "period": period, "limit": QUOTA})


def generate_day(n_events: int, day: date, teams: list[int], seed: int) -> Iterator[dict[str, np.ndarray]]:
    """The day's events one team at a time (bounded memory): bulk generator columns."""
    share, extra = divmod(n_events, len(teams))
    for i, team in enumerate(teams):
        n = share + (1 if i < extra else 0)
        if n:
            yield generate_bulk_events(n_events=n, day=day, seed=seed + team, teams=(team,))


def load_events(s: Stack, n_events: int, day: date, teams: list[int], seed: int) -> tuple[float, float]:
    """(generate + convert seconds, insert seconds); the events table is merged afterwards (untimed)."""
    gen_s = load_s = 0.0
    batches = generate_day(n_events, day, teams, seed)
    while True:
        started = time.perf_counter()
        columns = next(batches, None)
        if columns is None:
            break
        ready = insertable(columns)
        del columns
        gen_s += time.perf_counter() - started
        started = time.perf_counter()
        insert_chunked(s.clickhouse, ready)
        load_s += time.perf_counter() - started
        del ready
        gc.collect()
    s.client.command("OPTIMIZE TABLE events FINAL")
    return gen_s, load_s


def run_rollups(s: Stack, days: list[date], as_of: datetime) -> float:
    """The sensor's rollup job for these days, as of `as_of`: seconds."""
    job = s.defs.resolve_job_def(sensors.rollups_job.name)
    started = time.perf_counter()
    for day in days:
        result = job.execute_in_process(
            instance=s.instance,
            partition_key=day.isoformat(),
            tags={AS_OF_TAG: as_of.isoformat()},
            run_config=QUIET_RUN,
            raise_on_error=False,
        )
        if not result.success:
            raise RuntimeError(f"rollup of {day} failed")
    seconds = time.perf_counter() - started
    s.client.command("OPTIMIZE TABLE session_counter_rollups_v2 FINAL")
    return seconds


# --- raw SQL pass --------------------------------------------------------------------


@dataclass
class RawPass:
    seconds: float
    insert_s: float
    select_s: float
    counts: dict[str, int]


def raw_pass(s: Stack, scanners: list[Any], day: date, as_of: datetime) -> RawPass:
    """Each scanner's candidates INSERT ... SELECT and a SELECT reading them, bound as a first sweep binds them."""
    client = s.client
    frontier = watermarks.frontier(day, watermarks.seen_until(as_of, as_of))
    insert_s = select_s = 0.0
    counts = {}
    walk_sql = sql.load("clickhouse/candidates_walk.sql")
    for scanner in scanners:
        compiled = compile_filter(scanner.filter)
        start = watermarks.StartingPoint(watermarks.Watermark(scanner.start_at), "scanner start")
        window = watermarks.window(start.watermark, scanner.start_at)
        plan = SweepPlan(
            f"{day}|{scanner.id}", day, scanner, compiled, start, window, window.read_days(as_of), [], as_of, frontier, as_of
        )
        insert, params = candidates_statement(s.clickhouse, [plan], f"raw-{scanner.id}")
        params.update(scanner_id=scanner.id, team_id=scanner.team_id)
        started = time.perf_counter()
        client.command(insert, parameters=sql.bind(insert, params))
        middle = time.perf_counter()
        rows = 0
        with client.query_row_block_stream(walk_sql, parameters=sql.bind(walk_sql, params), settings={"max_block_size": 1000}) as stream:
            for block in stream:
                rows += len(block)
        ended = time.perf_counter()
        insert_s += middle - started
        select_s += ended - middle
        counts[scanner.id] = rows
    return RawPass(insert_s + select_s, insert_s, select_s, counts)


# --- asset pass ----------------------------------------------------------------------


class SplitProbe:
    """Wall time inside the functions of the sweep's Postgres, ClickHouse-stream and object-store parts."""

    def __init__(self) -> None:
        self.totals = {"ch_stream": 0.0, "pg_pages": 0.0, "pg_flush": 0.0, "objects": 0.0}

    def _add(self, name: str, seconds: float) -> None:
        self.totals[name] += seconds

    @contextlib.contextmanager
    def installed(self) -> Iterator[SplitProbe]:
        probe = self
        original_pages, original_write = observations.pages, observations.write_page
        original_flush, original_put = observations.flush_commits, ObjectStoreResource.put

        def pages(*args: Any, **kwargs: Any) -> Iterator[Any]:
            inner = original_pages(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    page = next(inner)
                except StopIteration:
                    probe._add("ch_stream", time.perf_counter() - started)
                    return
                probe._add("ch_stream", time.perf_counter() - started)
                yield page

        def timed(name: str, fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    probe._add(name, time.perf_counter() - started)

            return wrapper

        observations.pages = pages  # type: ignore[assignment]
        observations.write_page = timed("pg_pages", original_write)  # type: ignore[assignment]
        observations.flush_commits = timed("pg_flush", original_flush)  # type: ignore[assignment]
        ObjectStoreResource.put = timed("objects", original_put)  # type: ignore[method-assign]
        try:
            yield self
        finally:
            observations.pages = original_pages  # type: ignore[assignment]
            observations.write_page = original_write  # type: ignore[assignment]
            observations.flush_commits = original_flush  # type: ignore[assignment]
            ObjectStoreResource.put = original_put  # type: ignore[method-assign]


@dataclass
class AssetPass:
    seconds: float  # wall of the ticks that ran sweeps
    ticks: int
    runs: int
    counts: dict[str, int]  # scanner -> candidates (metadata)
    observed: dict[str, int]  # scanner -> observed (metadata)
    window_s: float  # sum of window_duration_s (candidates INSERT + stats)
    body_s: float  # sum of the sweep bodies' duration_s
    rollup_body_s: float  # today's rollup inside the ticks
    split: dict[str, float]
    failures: list[str] = field(default_factory=list)


def run_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str | None, dict[dg.AssetKey, dict[str, Any]]]:
    """{partition: {asset key: metadata}} of a run's materializations (a batch run has many partitions)."""
    found: dict[str | None, dict[dg.AssetKey, dict[str, Any]]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.dagster_event.step_materialization_data.materialization
        found.setdefault(mat.partition and str(mat.partition), {})[mat.asset_key] = {k: v.value for k, v in mat.metadata.items()}
    return found


def asset_pass(s: Stack, scanners: list[Any], now: datetime) -> AssetPass:
    """`execute_tick(now)` until a tick requests no sweep; only ticks that swept are timed."""
    probe = SplitProbe()
    seconds, ticks, runs, failures, run_ids = 0.0, 0, 0, [], []
    with probe.installed():
        for _ in range(MAX_TICKS_PER_SWEEP):
            started = time.perf_counter()
            report = execute_tick(s.defs, s.instance, s.pool, now)
            wall = time.perf_counter() - started
            failures += [f"{r['partition']}: {r.get('error')}" for r in report["runs"] if not r["success"]]
            if not any("|" in r["partition"] for r in report["runs"]):
                break
            seconds += wall
            ticks += 1
            tick_runs = list(dict.fromkeys(r["run_id"] for r in report["runs"]))  # a batch run sweeps many partitions
            runs += len(tick_runs)
            run_ids += tick_runs
    counts, observed = {}, {}
    window_s = body_s = rollup_s = 0.0
    for run_id in run_ids:
        for meta in run_metadata(s.instance, run_id).values():
            if CANDIDATE_WINDOWS in meta:
                scanner_id = meta[OBSERVATION_BATCHES]["scanner"].split(" ")[0]
                counts[scanner_id] = counts.get(scanner_id, 0) + int(meta[CANDIDATE_WINDOWS]["candidates"])
                observed[scanner_id] = observed.get(scanner_id, 0) + int(meta[OBSERVATION_BATCHES]["observed"])
                window_s += float(meta[CANDIDATE_WINDOWS]["window_duration_s"])
                body_s += float(meta[OBSERVATION_BATCHES]["duration_s"])
            else:
                for values in meta.values():
                    rollup_s += float(values.get("duration_s", 0.0))
    wanted = {sc.id for sc in scanners}
    if set(counts) != wanted:
        failures.append(f"swept {sorted(counts)}, expected {sorted(wanted)}")
    return AssetPass(seconds, ticks, runs, counts, observed, window_s, body_s, rollup_s, dict(probe.totals), failures)


def postgres_counts(s: Stack, scanner_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(s.app_url) as conn:
        rows = conn.execute(
            "SELECT scanner_id, count(*) FROM observations WHERE scanner_id = ANY(%s) GROUP BY scanner_id", (scanner_ids,)
        ).fetchall()
    return {sid: int(n) for sid, n in rows}


# --- throughput ----------------------------------------------------------------------


@dataclass
class Throughput:
    label: str
    n_events: int
    day: date
    scanners: int
    teams: list[int]
    sessions: int = 0
    raw: list[RawPass] = field(default_factory=list)
    asset: list[AssetPass] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def as_of(self) -> datetime:
        return day_end(self.day) + SETTLE

    @property
    def candidates(self) -> int:
        return sum(self.asset[-1].counts.values())

    @property
    def raw_s(self) -> float:
        return median([r.seconds for r in self.raw])

    @property
    def asset_s(self) -> float:
        return median([a.seconds for a in self.asset])

    @property
    def ratios(self) -> list[float]:
        """raw s / asset s of each repetition (the two passes ran back to back)."""
        return [r.seconds / a.seconds for r, a in zip(self.raw, self.asset)]


def prepare(s: Stack, t: Throughput) -> None:
    """Load, merge and roll up the day; one untimed raw pass warms the caches."""
    say(f"## throughput data {t.label}: {t.n_events:,} events on {t.day}, teams {t.teams}")
    gen_s, load_s = load_events(s, t.n_events, t.day, t.teams, seed=11 + t.day.toordinal())
    say(f"generate + convert (not timed in any figure): {gen_s:.1f} s; load: {load_s:.1f} s ({t.n_events / load_s:,.0f} events/s)")
    # The rollup days a first tick would request for these scanners (the sensor's own plan),
    # except "today", which every tick re-rolls: rolled here, so the timed ticks only sweep.
    s.fresh_app()
    warm = make_scanners(t.scanners, t.teams, day_start(t.day), f"{t.label}-warm")
    for scanner in warm:
        scanner_store.save(s.pool, scanner)
    plan = tick_plan.plan_tick(tick_state.read_tick_state(s.instance, s.pool, t.as_of))
    days = sorted(r.day for r in plan.requests if r.asset == "rollups" and r.day <= t.day)
    rollup_s = run_rollups(s, days, t.as_of)
    t.sessions = s.client.query(
        "SELECT count() FROM session_counter_rollups_v2 FINAL WHERE day = {d:Date}", parameters={"d": t.day}
    ).result_rows[0][0]
    say(
        f"rollups (rollups_job for {', '.join(d.isoformat() for d in days)} as of {t.as_of:%Y-%m-%d %H:%M}; info): {rollup_s:.1f} s, "
        f"{t.sessions:,} sessions ({t.n_events / max(t.sessions, 1):.1f} events each)"
    )
    s.client.command("TRUNCATE TABLE scanner_candidates")
    say(f"warm-up raw pass (untimed): {raw_pass(s, warm, t.day, t.as_of).seconds:.1f} s")
    say()


def repetition(s: Stack, t: Throughput, r: int) -> None:
    """The raw SQL pass, then the asset pass, for fresh scanners in a fresh app database."""
    s.fresh_app()
    set_quotas(s, t.teams, observations.quota_period(t.as_of))
    scanners = make_scanners(t.scanners, t.teams, day_start(t.day), f"{t.label}-r{r}")
    for scanner in scanners:
        scanner_store.save(s.pool, scanner)
    s.client.command("TRUNCATE TABLE scanner_candidates")
    raw = raw_pass(s, scanners, t.day, t.as_of)
    s.client.command("TRUNCATE TABLE scanner_candidates")
    gc.collect()
    asset = asset_pass(s, scanners, t.as_of)
    stored = postgres_counts(s, [sc.id for sc in scanners])
    t.problems += [f"{t.label} #{r}: run failed: {f}" for f in asset.failures]
    for scanner in scanners:
        want = raw.counts.get(scanner.id)
        got = (asset.counts.get(scanner.id), asset.observed.get(scanner.id), stored.get(scanner.id, 0))
        if got != (want, want, want):
            t.problems.append(f"{t.label} #{r} {scanner.id}: raw SQL {want} candidates; asset candidates/observed/in Postgres {got}")
    t.raw.append(raw)
    t.asset.append(asset)
    say(
        f"{t.label} #{r}: {sum(asset.counts.values()):,} candidates; raw SQL {raw.seconds:.2f} s (INSERT ... SELECT "
        f"{raw.insert_s:.2f} s + SELECT {raw.select_s:.2f} s); asset path {asset.seconds:.2f} s in {asset.ticks} tick(s), "
        f"{asset.runs} runs (sweep bodies {asset.body_s:.2f} s, of which candidates INSERT + stats {asset.window_s:.2f} s; "
        f"today's rollup body {asset.rollup_body_s:.2f} s); ratio {raw.seconds / asset.seconds:.3f}"
    )


def throughput(s: Stack, phases: list[Throughput], repeat: int) -> None:
    """Every phase's data first; then the repetitions, the phases interleaved within each."""
    for t in phases:
        prepare(s, t)
    say(f"## sweeps: {repeat} repetition(s), each: " + ", then ".join(f"{t.label} (raw SQL, asset path)" for t in phases))
    for r in range(1, repeat + 1):
        for t in phases:
            repetition(s, t, r)
    for t in phases:
        per_scanner = ", ".join(f"{sid.rsplit('-', 1)[1]}:{n:,}" for sid, n in sorted(t.asset[-1].counts.items()))
        say(f"{t.label} candidates per scanner (last repetition): {per_scanner}")
        for problem in t.problems:
            say(f"CORRECTNESS: {problem}")
    say()


def report_throughput(t: Throughput) -> None:
    n = t.candidates
    raw_rate, asset_rate = n / t.raw_s, n / t.asset_s
    reps = f"median of {len(t.asset)}" if len(t.asset) > 1 else "1 run"
    figure(
        f"e2e sweep throughput, asset path (execute_tick), {t.n_events:,} events, {t.scanners} scanners",
        f"{asset_rate:,.0f} sessions/s ({n:,} candidates in {t.asset_s:.1f} s, {reps})",
    )
    figure(
        "e2e sweep throughput, raw SQL (candidates INSERT ... SELECT + SELECT, no Postgres)",
        f"{raw_rate:,.0f} sessions/s ({t.raw_s:.1f} s, {reps})",
    )
    ratios = t.ratios
    spread = f" (per repetition: {', '.join(f'{x:.2f}' for x in ratios)})" if len(ratios) > 1 else ""
    figure(
        "e2e sweep throughput ratio (asset rate / raw SQL rate = raw s / asset s, median of pairs)",
        f"{median(ratios):.2f}x{spread}",
    )
    # The split of the median repetition.
    a = sorted(t.asset, key=lambda x: x.seconds)[len(t.asset) // 2]
    ch_s = a.window_s + a.split["ch_stream"]
    pg_s = a.split["pg_pages"] - a.split["objects"] + a.split["pg_flush"]
    obj_s = a.split["objects"]
    in_body = a.body_s - ch_s - pg_s - obj_s
    outside = a.seconds - a.body_s
    share = lambda x: f"{x / a.seconds:.0%} ({x:.1f} s)"  # noqa: E731
    figure(
        "e2e asset sweep time split",
        f"Postgres writes {share(pg_s)}, ClickHouse {share(ch_s)} (candidates INSERT + stats {a.window_s:.1f} s, "
        f"reading candidates {a.split['ch_stream']:.1f} s), object store {share(obj_s)}, rest of the sweep bodies "
        f"{share(in_body)} (scanner and watermark reads, waiting for verdicts), outside the bodies {share(outside)} "
        f"(Dagster: planning, {a.runs} runs' set-up and event log, asset checks; today's rollup)",
    )


# --- latency -------------------------------------------------------------------------


def latency(s: Stack, n_day_events: int, hours: float, teams: list[int]) -> tuple[bool, list[str]]:
    day = DAY_LATENCY
    w0 = day_start(day) + LATENCY_WINDOW_START
    w1 = w0 + timedelta(hours=hours)
    say(f"## latency: sessions inside [{w0:%H:%M}, {w1:%H:%M}) of {day}, one match-all scanner per team, a tick every 5 min")
    parts = []
    for columns in generate_day(n_day_events, day, teams, seed=101):
        sid = columns["$session_id"]
        ts = columns["timestamp"].astype("datetime64[us]").astype(np.int64)
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        first = np.minimum.reduceat(ts, starts)
        last = np.maximum.reduceat(ts, starts)
        keep_session = (first >= us(w0)) & (last < us(w1))
        sizes = np.diff(np.r_[starts, len(sid)])
        keep = np.repeat(keep_session, sizes)
        parts.append({name: columns[name][keep] for name in EVENT_COLUMNS})
    columns = {name: np.concatenate([p[name] for p in parts]) for name in EVENT_COLUMNS}
    del parts
    order = np.argsort(columns["inserted_at"], kind="stable")
    columns = {name: values[order] for name, values in columns.items()}
    arrival = columns["inserted_at"].astype("datetime64[us]").astype(np.int64)
    ts = columns["timestamp"].astype("datetime64[us]").astype(np.int64)
    # Session end = its last event's timestamp.
    ends: dict[tuple[int, str], int] = {}
    for team, sid, t in zip(columns["team_id"].tolist(), columns["$session_id"].tolist(), ts.tolist()):
        key = (team, sid)
        if t > ends.get(key, -1):
            ends[key] = t
    s.fresh_app()
    scanner_of = {team: f"lat-t{team}" for team in teams}
    scanners = [
        parse_scanner(
            {"id": scanner_of[team], "team_id": team, "name": f"latency, team {team}", "kind": "match",
             "start_at": (w0 - timedelta(hours=1)).isoformat()},
            source="benchmark",
        )
        for team in teams
    ]  # fmt: skip
    for scanner in scanners:
        scanner_store.save(s.pool, scanner)
    set_quotas(s, teams, observations.quota_period(w0))
    expected = {(scanner_of[team], sid): end for (team, sid), end in ends.items()}
    last_end = datetime.fromtimestamp(max(ends.values()) / 1e6, UTC) if ends else w1
    say(f"{len(columns['event']):,} events in {len(expected):,} sessions; last session end {last_end:%H:%M:%S}")

    observed_at: dict[tuple[str, str], datetime] = {}
    problems: list[str] = []
    tick_walls = []
    now = w0
    last_settle = last_end + SETTLE
    inserted = 0
    while len(observed_at) < len(expected) and now < last_settle + LATENCY_OVERTIME:
        now += CADENCE
        lo, hi = np.searchsorted(arrival, [us(now - CADENCE), us(now)], side="right")
        if hi > lo:
            insert_events(s.client, s.clickhouse.events, insertable({name: columns[name][lo:hi] for name in EVENT_COLUMNS}))
            inserted += hi - lo
        started = time.perf_counter()
        report = execute_tick(s.defs, s.instance, s.pool, now)
        tick_walls.append(time.perf_counter() - started)
        problems += [f"tick {now:%H:%M}: {r['partition']} failed: {r.get('error')}" for r in report["runs"] if not r["success"]]
        with psycopg.connect(s.app_url) as conn:
            rows = conn.execute(
                "SELECT scanner_id, session_id FROM observations WHERE scanner_id = ANY(%s)", (list(scanner_of.values()),)
            ).fetchall()
        for pair in rows:
            observed_at.setdefault(tuple(pair), now)
    if inserted != len(columns["event"]):
        problems.append(f"inserted {inserted:,} of {len(columns['event']):,} events")
    unexpected = set(observed_at) - set(expected)
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected observations, e.g. {sorted(unexpected)[:2]}")
    missed = len(set(expected) - set(observed_at))
    lat = [minutes(observed_at[k] - datetime.fromtimestamp(end / 1e6, UTC)) for k, end in expected.items() if k in observed_at]
    say(
        f"{len(tick_walls)} ticks from {w0 + CADENCE:%H:%M} to {now:%H:%M}; tick wall median {median(tick_walls):.2f} s, "
        f"max {max(tick_walls, default=0):.2f} s; {len(observed_at):,} of {len(expected):,} sessions observed"
    )
    figure("e2e latency session end -> observed in Postgres, median", f"{median(lat):.1f} min")
    worst = max(lat) if lat else float("inf")
    ok = missed == 0 and worst <= minutes(LATENCY_GOAL)
    figure(
        "e2e latency session end -> observed in Postgres, max",
        f"{worst:.1f} min ({missed} never observed)",
        f"<= {minutes(LATENCY_GOAL):.0f} min (settle 35 + 10)",
        ok,
    )
    if missed:
        problems.append(f"{missed} sessions never observed")
    if not expected:
        problems.append("no session lies inside the latency window: raise --latency-events or --latency-hours")
    say()
    return not problems, problems


# --- main ----------------------------------------------------------------------------


def versions(s: Stack) -> str:
    import chdb

    ch_version = s.client.query("SELECT version()").result_rows[0][0]
    with psycopg.connect(s.admin_url) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    return (
        f"python {platform.python_version()}; dagster {dg.__version__}; chdb {chdb.__version__} (ClickHouse {ch_version}); "
        f"PostgreSQL {pg_version} (pgserver)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke preset: 200,000 events, 6 scanners, 30 min of latency, no repeats")
    parser.add_argument("--events", type=int, help="events of the throughput day (default 10,000,000; quick 200,000)")
    parser.add_argument("--scanners", type=int, help="scanners swept in the throughput figure (default 20; quick 6)")
    parser.add_argument("--teams", type=int, default=4, help="teams (default 4)")
    parser.add_argument("--repeat", type=int, help="repetitions of the throughput passes at N and N/10 (default 3; quick 1)")
    parser.add_argument("--latency-events", type=int, help="events of the generated latency day (default 2,000,000; quick 200,000)")
    parser.add_argument("--latency-hours", type=float, help="hours of sessions in the latency figure (default 2; quick 0.5)")
    parser.add_argument("--path", type=Path, help="work folder (default: a temp dir, removed at the end)")
    args = parser.parse_args(argv)

    def pick(value: Any, quick: Any, full: Any) -> Any:
        return value if value is not None else (quick if args.quick else full)

    events = pick(args.events, 200_000, 10_000_000)
    n_scanners = pick(args.scanners, 6, 20)
    latency_events = pick(args.latency_events, 200_000, 2_000_000)
    hours = pick(args.latency_hours, 0.5, 2.0)
    repeat = pick(args.repeat, 1, 3)
    if events < 1000 or n_scanners < 1 or args.teams < 1 or repeat < 1 or not 0 < hours <= 12:
        parser.error("--events >= 1000, --scanners, --teams, --repeat >= 1, 0 < --latency-hours <= 12")
    teams = list(range(1, args.teams + 1))

    logging.getLogger("dagster").setLevel(logging.WARNING)
    temp = None if args.path else tempfile.mkdtemp(prefix="e2e-bench-")
    tmp = (args.path or Path(temp)).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    s = None
    ok = True
    try:
        s = open_stack(tmp)
        say("# end-to-end sweep benchmark (embedded stack)")
        say(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
        say(
            f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}; "
            f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; {versions(s)}"
        )
        say(f"work folder: {tmp}; teams {teams}; throughput days {DAY_N} (N) and {DAY_N10} (N/10); latency day {DAY_LATENCY}")
        say()
        big = Throughput("n", events, DAY_N, n_scanners, teams)
        small = Throughput("n10", max(1000, events // 10), DAY_N10, n_scanners, teams)
        throughput(s, [big, small], repeat)
        ok = not big.problems and not small.problems
        report_throughput(big)
        growth = [a.seconds / b.seconds for a, b in zip(big.asset, small.asset)]
        spread = f"per repetition {', '.join(f'{x:.2f}' for x in growth)}; " if len(growth) > 1 else ""
        value = median(growth)
        figure(
            f"e2e cost growth time(N)/time(N/10), asset sweep, {big.n_events:,} vs {small.n_events:,} events",
            f"{value:.2f} ({spread}medians {big.asset_s:.1f} s / {small.asset_s:.1f} s; raw SQL "
            f"{big.raw_s / small.raw_s:.2f}; candidates {big.candidates:,} / {small.candidates:,})",
            f"<= {GROWTH_GOAL:g}",
            value <= GROWTH_GOAL,
        )
        say()
        lat_ok, problems = latency(s, latency_events, hours, teams)
        for problem in problems:
            say(f"CORRECTNESS: {problem}")
        ok = ok and lat_ok
        say(f"total wall time: {time.perf_counter() - started:.0f} s; load average at the end "
            f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
        say()
        say("## figures")
        for line in RESULTS:
            say(line)
        say(f"correctness: {'PASS' if ok else 'FAIL (see CORRECTNESS lines)'}")
        return 0 if ok else 1
    finally:
        if s is not None:
            s.instance.dispose()
        ch.close_clients()
        pg.close_pools()
        server = pg._servers.pop(tmp / "postgres", None)
        if server is not None:
            server.cleanup()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
