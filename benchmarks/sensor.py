"""Benchmark of the sweep sensor and of a sweep tick's Dagster overhead, on the production storage.

Figures:

* history: `sweep_sensor` evaluation time with 1 day versus 1 year of
  materialization history and `--scanners` (default 50) scanners; ratio of the
  medians (1 year / 1 day), goal <= 1.5, and the breakdown (`read_tick_state`,
  its record reads, `plan_tick`, the rest of the sensor body).
* cpu: CPU-seconds of Dagster overhead per sweep tick with `--tick-scanners`
  (default 20) scanners on the embedded stack, and its share of one core at the
  sensor's 5-minute cadence (overhead / 300 s), goal < 30%.

History (how it is made). One pgserver in a temp dir holds every database: the
app database (the `--scanners` scanners, `match` kind, all starting `--days`
days before today, so that both history sizes watch the same 8 days x N sweep
partitions and 9 rollup days) and one Dagster database per history size, each
opened with `DagsterInstance.from_config` on the project's dagster.yaml
(`SESSION_ASSETS_DAGSTER_POSTGRES_URL`, `postgresql+psycopg2://`). The scanner
ids are registered as dynamic partitions in each instance. No run is executed:
materializations are reported as runless asset events with the metadata the
real assets write (rollups: covered_until, complete, mode, rows, ...; both sweep
assets: watermark_end, watermark_session_id, frontier, complete, as_of, ... plus
their counts) and the tags a run adds (data/code version, the multi-partition
dimensions).
  - "1 day": today's partitions only: 288 materializations (one per 5 minutes,
    as-of times spread from midnight to now) of each of the N (scanner, today)
    partitions, for each of the two sweep assets, and 288 of today's rollup.
  - "1 year": the same, plus for each of the `--days` (>= 9) older days 1-3
    materializations (seeded random) of each (scanner, day) partition of both
    sweep assets and of the day's rollup, the last one complete (a day settles
    with few sweeps after it closes; real partitions get up to ~300, which would
    mean millions of rows). With the defaults: ~100k materialization events.
  `instance.report_runless_asset_event` commits each event on its own (two
  transactions and a NOTIFY): its rate is measured on a scratch database and
  printed with the time the whole load would take that way. The load itself
  sends the same events (`DagsterEvent` of type ASSET_MATERIALIZATION, the
  runless run id and job name, as `report_runless_asset_event` builds them)
  through `instance.report_dagster_event` with a batch id and
  `DAGSTER_EVENT_BATCH_SIZE` set, so the instance writes them with its batch
  path (`store_event_batch`, what run workers use), one asset key per batch,
  in time order, with event timestamps set to each materialization's as-of time
  (`report_runless_asset_event` would stamp them all "now").
  Every Dagster database gets `VACUUM ANALYZE` after loading (what autovacuum
  does on a live server). Setup takes ~5 minutes with the defaults (the events'
  serialization in Dagster, ~1.5 ms CPU each, dominates).
  Two more variants, for information: "9 days" (exactly the partitions the
  sensor reads, all materialized: today + the 8 older days it watches) tells
  the cost of a full watched window from the cost of older history; "1 year,
  pooled" evaluates the 1-year database through an instance that keeps its
  Postgres connections (`instance.optimize_for_webserver`, what
  dagster-webserver does; dagster-postgres otherwise uses SQLAlchemy's NullPool,
  one new connection per storage call: counted per evaluation).
  No run records are synthesized: the sensor's two run queries (in-flight
  statuses; failures of the last 8 days, by status and creation time) read
  an empty runs table here.
  Evaluation: `sweep_sensor(context)` with `dg.build_sensor_context(instance,
  definitions, resources)` inside `dg.partition_loading_context`, as the tests
  do; the sensor reads the real clock. One warm-up per database, then
  `--evaluations` (default 15) timed evaluations, the databases interleaved;
  medians. The breakdown wraps the sensor module's functions and the instance
  methods it calls with timers (negligible cost).
  Correctness: in the 1-year database every watched partition must be found,
  the older days complete, and the sensor must request exactly today's rollup
  and today's sweeps (older days are complete), in one batch run; in the 1-day
  database it must request the missing rollup days and the watched days' sweeps.

CPU per tick (embedded stack). chDB (`ClickHouseResource(url="chdb://<tmp>")`,
in this process), the same pgserver (a fresh app database and a fresh Dagster
database), a local-folder object store, demo events
(`demo_data.generate_events(days=1, now=T)`, ~3 teams x 40 sessions), and
`--tick-scanners` `match` scanners with varied filters starting 1 h before the
data. Ticks run through `ticks.execute_tick` (what `session-assets sweep`
does: the sensor's plan, then each run with `execute_in_process`, one after
another): catch-up ticks at T - `--ticks` x 5 min until nothing is deferred,
then `--ticks` (default 6) measured ticks 5 minutes apart, the last at T (T =
the clock, floored to 5 minutes; the events' `inserted_at` run up to T, so
every tick sees new events).
  Per tick: process CPU (`time.process_time()`; `getrusage(RUSAGE_SELF)` user +
  sys agrees; both count every thread of the process, chDB's query threads
  included: checked with a multi-threaded chDB query), wall time, and the CPU
  spent inside the assets' bodies. The bodies' own `duration_s` metadata is wall
  time; to get their CPU the benchmark swaps the `time` module seen by
  `session_assets.assets.scanning` and `.rollups` for a shim whose `monotonic()`
  also reads `process_time()`: a body calls it first (`started = ...`) and last
  (`duration_s`), so each body's process-CPU is bracketed exactly.
  Dagster overhead per tick = tick CPU - asset-body CPU (the sensor's planning,
  run creation, event writes, step orchestration, the asset checks, which run
  as separate steps and make one query each, and the Python around them); a
  cruder variant, tick CPU - sum of `duration_s` (wall), is printed too.
  pgserver runs in other processes: their CPU per tick is read from /proc
  (postmaster + backends) and printed for information, not counted.
  Production runs each run in its own process (`dagster api execute_run` via
  the run launcher): one `dagster asset materialize` subprocess per asset
  (rollups, one sweep partition) against the same Dagster database, on an
  empty chDB path of its own (the body does next to nothing), gives the per-run
  CPU of a separate process (`wait4` rusage); the estimate adds
  (that - in-process per-run overhead) x runs per tick. The import cost is
  split (`import dagster`, `+ dagster_aws.s3`, `import definitions`).
  `--compare-pooled` runs every other measured tick through an instance with
  pooled Dagster connections (`optimize_for_webserver`) on the same database
  and prints the comparison; the figures then use the other ticks.

    python benchmarks/sensor.py [--scanners N] [--days D] [--evaluations E] [--tick-scanners N]
                                [--ticks T] [--skip-history] [--skip-cpu] [--skip-subprocess] [--compare-pooled]
    python -m benchmarks.sensor [same options]

Exit code 0 whatever the goals; 1 when a correctness check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
import warnings
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

if __package__ in (None, ""):  # `python benchmarks/sensor.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import dagster as dg  # noqa: E402

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

import psycopg  # noqa: E402
import sqlalchemy  # noqa: E402
import sqlalchemy.pool  # noqa: E402
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, StepMaterializationData  # noqa: E402
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID  # noqa: E402
from dagster_aws.s3 import S3Resource  # noqa: E402

from session_assets.stores import clickhouse as ch  # noqa: E402
from session_assets.commands import demo_data, stack, ticks  # noqa: E402
from session_assets import sensors, tick_state  # noqa: E402
from session_assets.core import tick_plan  # noqa: E402
from session_assets.stores import postgres as pg  # noqa: E402
from session_assets.assets import session_counter_rollups  # noqa: E402
from session_assets.assets import rollups as rollups_module  # noqa: E402
from session_assets import batches as scanning_module  # noqa: E402 - the batch body brackets its own time (started, then the log line)
from session_assets.assets.scanning import CANDIDATE_WINDOWS, OBSERVATION_BATCHES  # noqa: E402
from session_assets.core.days import SETTLE, day_end, day_start  # noqa: E402
from session_assets.definitions import build_definitions  # noqa: E402
from session_assets.stores.events_io import EVENT_COLUMNS, insert_events  # noqa: E402
from session_assets.partitions import daily_partitions_def, scanner_partitions_def  # noqa: E402
from session_assets.resources import ClickHouseResource, object_store_for, PostgresResource  # noqa: E402
from session_assets.scanners import parse_scanner  # noqa: E402
from session_assets.scanners import store as scanner_store  # noqa: E402
from session_assets.settings import DAGSTER_POSTGRES_URL_VAR, MAX_CONCURRENT_RUNS_VAR  # noqa: E402
from session_assets.core.watermarks import frontier as sweep_frontier  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
UTC = timezone.utc
CADENCE_S = 300.0
RATIO_GOAL = 1.5
CORE_SHARE_GOAL = 0.30
TODAY_SWEEPS = 288  # one per 5 minutes
LOAD_BATCH = 1000  # events per batch write while loading history
RUNLESS_PROBE_EVENTS = 100
DEMO_SEED = 11
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
RESULTS: list[str] = []  # the figure lines, printed again at the end
PG_CONNECTS = [0]  # new DB-API connections opened by SQLAlchemy pools (Dagster's storage), counted in main()


def _count_connect(*_: Any) -> None:
    PG_CONNECTS[0] += 1


# --- helpers -----------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def figure(label: str, value: str, goal: str | None = None, passed: bool | None = None) -> None:
    line = f"{label}: {value}"
    if goal is not None:
        line += f" (goal: {goal})"
    if passed is not None:
        line += " PASS" if passed else " MISS"
    RESULTS.append(line)
    print(line, flush=True)


def say(text: str = "") -> None:
    print(text, flush=True)


def rusage_cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def postgres_cpu(data_dir: Path) -> float | None:
    """CPU seconds of the pgserver: postmaster (with its reaped children) + live backends."""
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue  # the process went away
            fields = raw[raw.rfind(")") + 2 :].split()
            pid, ppid = int(entry.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif ppid == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / tick
    except (OSError, ValueError, IndexError):
        return None


def open_instance(home: Path, dagster_url: str) -> dg.DagsterInstance:
    """A Dagster instance on Postgres from the project's dagster.yaml, as `session-assets` sets it up."""
    stack.install_dagster_yaml(home)
    os.environ[DAGSTER_POSTGRES_URL_VAR] = dagster_url
    os.environ.setdefault(MAX_CONCURRENT_RUNS_VAR, "1")
    return dg.DagsterInstance.from_config(str(home))


def new_database(admin_url: str, name: str) -> str:
    pg.ensure_database(admin_url, name)
    return pg.with_database(admin_url, name)


def new_app_database(admin_url: str, name: str) -> str:
    """An app database, migrated (the resources only check its schema)."""
    url = new_database(admin_url, name)
    pg.migrate(url)
    return url


def build_defs(resources: dict[str, Any]) -> dg.Definitions:
    """The code location's definitions with these resources."""
    return build_definitions(resources)


def stack_resources(chdb_url: str, database: str, app_url: str, objects: Path) -> dict[str, Any]:
    return {
        "clickhouse": ClickHouseResource(url=chdb_url, database=database),
        "postgres": PostgresResource(url=app_url),
        "object_store": object_store_for(f"file://{objects}", S3Resource()),
    }


# --- timing probes -------------------------------------------------------------------


class Probe:
    """Wall-clock timers around the functions the sensor calls, accumulated per evaluation."""

    def __init__(self) -> None:
        self.current: dict[str, float] | None = None
        self._restore: list[Callable[[], None]] = []

    def _timed(self, name: Callable[..., str] | str, fn: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if probe.current is not None:
                    label = name(*args, **kwargs) if callable(name) else name
                    probe.current[label] = probe.current.get(label, 0.0) + time.perf_counter() - started

        return wrapper

    def patch_module(self, module: types.ModuleType, attr: str, name: Callable[..., str] | str) -> None:
        original = getattr(module, attr)
        setattr(module, attr, self._timed(name, original))
        self._restore.append(lambda: setattr(module, attr, original))

    def patch_instance(self, instance: dg.DagsterInstance, attr: str) -> None:
        original = getattr(instance, attr)
        setattr(instance, attr, self._timed(f"  instance.{attr}", original))
        self._restore.append(lambda: instance.__dict__.pop(attr, None))

    @contextlib.contextmanager
    def recording(self) -> Iterator[dict[str, float]]:
        parts: dict[str, float] = {}
        self.current = parts
        try:
            yield parts
        finally:
            self.current = None

    def restore(self) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()


def install_sensor_probe(probe: Probe) -> None:
    probe.patch_module(tick_state, "read_tick_state", "read_tick_state")
    probe.patch_module(tick_plan, "plan_tick", "plan_tick")
    probe.patch_module(scanner_store, "list_all", "  scanners table (app Postgres)")
    probe.patch_module(tick_state, "in_flight_runs", "  run records (in flight)")
    probe.patch_module(tick_state, "_failed_runs", "  run records (failed)")

    def partition_label(instance: Any, asset_key: dg.AssetKey, *args: Any, **kwargs: Any) -> str:
        return f"  partition states: {asset_key.to_user_string()}"

    probe.patch_module(tick_state, "_partition_states", partition_label)


# --- 1. history -----------------------------------------------------------------------


def history_scanners(count: int, start_at: datetime) -> list[Any]:
    filters = [
        {},
        {"counters": {"pageview_count": {"gte": 2}}},
        {"counters": {"rageclick_count": {"gte": 1}}},
        {"counters": {"exception_count": {"gte": 1}}},
        {"min_duration_seconds": 60},
    ]
    return [
        parse_scanner(
            {
                "id": f"hist-{n:03d}",
                "team_id": 1 + n % 5,
                "name": f"history scanner {n}",
                "kind": "match",
                "filter": filters[n % len(filters)],
                "start_at": start_at.isoformat(),
            },
            source="benchmark",
        )
        for n in range(count)
    ]


def _ts(moment: datetime) -> dg.MetadataValue:
    return dg.MetadataValue.timestamp(moment)


def rollup_metadata(as_of: datetime, complete: bool, rng: random.Random) -> dict[str, Any]:
    sessions = rng.randint(1_000, 50_000)
    return {
        "covered_until": _ts(as_of),
        "complete": dg.MetadataValue.bool(complete),
        "mode": dg.MetadataValue.text("incremental"),
        "rows": dg.MetadataValue.int(rng.randint(10, 2_000)),
        "sessions": dg.MetadataValue.int(sessions),
        "events": dg.MetadataValue.int(sessions * 12),
        "late_days": dg.MetadataValue.json([]),
        "duration_s": dg.MetadataValue.float(round(rng.uniform(0.05, 2.0), 3)),
        "dagster/row_count": dg.MetadataValue.int(sessions),
    }


def sweep_metadata(
    asset_key: dg.AssetKey, day: date, scanner_id: str, team_id: int, as_of: datetime, complete: bool, rng: random.Random
) -> dict[str, Any]:
    """What `scanner_observations` writes for one of its two assets, rollups covered up to `as_of`."""
    frontier = sweep_frontier(day, as_of)
    mark = max(day_start(day), frontier)
    candidates = rng.randint(0, 200)
    observed = candidates // 2
    shared = {
        "watermark_end": _ts(mark),
        "watermark_session_id": dg.MetadataValue.text(""),
        "frontier": _ts(frontier),
        "complete": dg.MetadataValue.bool(complete),
        "as_of": _ts(as_of),
        "resumed_from": dg.MetadataValue.text(f"own partition: {day_start(day).isoformat()}"),
        "scanner": dg.MetadataValue.text(f"{scanner_id} (team {team_id}, match)"),
    }
    if asset_key == CANDIDATE_WINDOWS:
        return {
            **shared,
            "candidates": dg.MetadataValue.int(candidates),
            "sampled_out": dg.MetadataValue.int(0),
            "late_candidates": dg.MetadataValue.int(rng.randint(0, 3)),
            "window_duration_s": dg.MetadataValue.float(round(rng.uniform(0.01, 0.5), 3)),
            "dagster/row_count": dg.MetadataValue.int(candidates),
        }
    batch = f"file:///srv/objects/observations/team={team_id}/scanner={scanner_id}/date={day}/{rng.randint(0, 300):06d}.jsonl.gz"
    return {
        **shared,
        "observed": dg.MetadataValue.int(observed),
        "already_observed": dg.MetadataValue.int(0),
        "quota_skipped": dg.MetadataValue.int(0),
        "sampled_out": dg.MetadataValue.int(0),
        "candidates": dg.MetadataValue.int(candidates),
        "batches": dg.MetadataValue.int(1 if observed else 0),
        "batch_keys": dg.MetadataValue.json([batch] if observed else []),
        "last_batch": dg.MetadataValue.path(batch) if observed else dg.MetadataValue.text("none"),
        "duration_s": dg.MetadataValue.float(round(rng.uniform(0.05, 1.5), 3)),
    }


def run_tags(partition: str | dg.MultiPartitionKey, rng: random.Random) -> dict[str, str]:
    """Tags a run adds to a materialization: versions and (multi-partition) dimensions."""
    tags = {
        "dagster/code_version": uuid.UUID(int=rng.getrandbits(128)).hex,
        "dagster/data_version": f"{rng.getrandbits(128):032x}",
    }
    if isinstance(partition, dg.MultiPartitionKey):
        tags.update({f"dagster/partition/{dim}": key for dim, key in partition.keys_by_dimension.items()})
    return tags


def materialization_event(asset_key: dg.AssetKey, partition: str, metadata: dict[str, Any], tags: dict[str, str]) -> DagsterEvent:
    """The event `report_runless_asset_event` builds for a materialization."""
    return DagsterEvent(
        event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(asset_key=asset_key, partition=partition, metadata=metadata, tags=tags)
        ),
        job_name=RUNLESS_JOB_NAME,
    )


class HistoryWriter:
    """Sends runless materializations through `report_dagster_event` in batches of one asset key."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.pending: dict[dg.AssetKey, list[tuple[DagsterEvent, float]]] = defaultdict(list)
        self.written = 0

    def add(self, asset_key: dg.AssetKey, partition: str, metadata: dict[str, Any], tags: dict[str, str], at: datetime) -> None:
        self.pending[asset_key].append((materialization_event(asset_key, partition, metadata, tags), at.timestamp()))
        if len(self.pending[asset_key]) >= LOAD_BATCH:
            self.flush(asset_key)

    def flush(self, asset_key: dg.AssetKey | None = None) -> None:
        for key in [asset_key] if asset_key is not None else list(self.pending):
            batch = self.pending.pop(key, [])
            batch_id = uuid.uuid4().hex
            for n, (event, timestamp) in enumerate(batch):
                self.instance.report_dagster_event(
                    event,
                    run_id=RUNLESS_RUN_ID,
                    log_level=logging.INFO,
                    timestamp=timestamp,
                    batch_metadata=DagsterEventBatchMetadata(batch_id, n == len(batch) - 1),
                )
            self.written += len(batch)


@contextlib.contextmanager
def event_batches(size: int) -> Iterator[None]:
    saved = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")
    os.environ["DAGSTER_EVENT_BATCH_SIZE"] = str(size)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        else:
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = saved


def today_as_ofs(today: date, now: datetime) -> list[datetime]:
    """288 as-of times spread over today up to (just before) now: one sweep per 5 minutes' worth."""
    start = day_start(today)
    span = max(now - timedelta(seconds=30) - start, timedelta(minutes=1))
    return [start + span * (i + 1) / TODAY_SWEEPS for i in range(TODAY_SWEEPS)]


def load_history(
    instance: dg.DagsterInstance, scanners: list[Any], today: date, now: datetime, older_days: int, seed: int
) -> int:
    """Materializations of `older_days` settled days (1-3 per partition) and of today (288 per partition)."""
    rng = random.Random(seed)
    writer = HistoryWriter(instance)
    sweep_assets = (CANDIDATE_WINDOWS, OBSERVATION_BATCHES)
    with event_batches(LOAD_BATCH):
        for back in range(older_days, 0, -1):
            day = today - timedelta(days=back)
            settled = day_end(day) + SETTLE + timedelta(minutes=5)
            # Rollups of the day: 1-3, the last one after it settled (complete).
            count = rng.randint(1, 3)
            for j in range(count):
                last = j == count - 1
                as_of = settled if last else day_start(day) + timedelta(hours=rng.uniform(1, 23))
                writer.add(
                    session_counter_rollups.key, day.isoformat(), rollup_metadata(as_of, last, rng), run_tags(day.isoformat(), rng), as_of
                )
            # Each (scanner, day): 1-3 sweeps, the last one reaching the day end (complete).
            for scanner in scanners:
                key = dg.MultiPartitionKey({"date": day.isoformat(), "scanner": scanner.id})
                count = rng.randint(1, 3)
                times = sorted(day_start(day) + timedelta(hours=rng.uniform(1, 23)) for _ in range(count - 1))
                for j, as_of in enumerate([*times, settled + timedelta(minutes=1)]):
                    last = j == count - 1
                    tags = run_tags(key, rng)
                    for asset_key in sweep_assets:
                        meta = sweep_metadata(asset_key, day, scanner.id, scanner.team_id, as_of, last, rng)
                        writer.add(asset_key, key, meta, tags, as_of + timedelta(seconds=5))
            writer.flush()
        # Today: 288 rollups and 288 sweeps per scanner, none complete.
        for as_of in today_as_ofs(today, now):
            writer.add(
                session_counter_rollups.key,
                today.isoformat(),
                rollup_metadata(as_of, False, rng),
                run_tags(today.isoformat(), rng),
                as_of,
            )
            for scanner in scanners:
                key = dg.MultiPartitionKey({"date": today.isoformat(), "scanner": scanner.id})
                tags = run_tags(key, rng)
                for asset_key in sweep_assets:
                    meta = sweep_metadata(asset_key, today, scanner.id, scanner.team_id, as_of, False, rng)
                    writer.add(asset_key, key, meta, tags, as_of + timedelta(seconds=5))
        writer.flush()
    return writer.written


def materialization_count(url: str) -> tuple[int, int]:
    """(materialization events, all event rows) in a Dagster database."""
    with psycopg.connect(url) as conn:
        mats = conn.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM event_logs").fetchone()[0]
    return int(mats), int(rows)


def vacuum_analyze(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def probe_runless_rate(admin_url: str, tmp: Path) -> float:
    """Seconds per `report_runless_asset_event` call on a scratch Dagster database."""
    url = new_database(admin_url, "dagster_probe")
    instance = open_instance(tmp / "dagster-probe", pg.sqlalchemy_url(url))
    rng = random.Random(1)
    try:
        day = date.today()
        started = time.perf_counter()
        for n in range(RUNLESS_PROBE_EVENTS):
            key = dg.MultiPartitionKey({"date": day.isoformat(), "scanner": f"probe-{n % 10}"})
            meta = sweep_metadata(OBSERVATION_BATCHES, day, f"probe-{n % 10}", 1, datetime.now(UTC), False, rng)
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=OBSERVATION_BATCHES, partition=key, metadata=meta, tags=run_tags(key, rng))
            )
        return (time.perf_counter() - started) / RUNLESS_PROBE_EVENTS
    finally:
        instance.dispose()


def evaluate_sensor(
    instance: dg.DagsterInstance, defs: dg.Definitions, resources: dict[str, Any], probe: Probe
) -> tuple[float, dg.SensorResult, dict[str, float]]:
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
            with probe.recording() as parts:
                started = time.perf_counter()
                result = sensors.sweep_sensor(context)
                elapsed = time.perf_counter() - started
    return elapsed, result, parts


def check_history_state(instance: dg.DagsterInstance, pool: Any, scanners: list[Any], today: date, older_days: int) -> list[str]:
    """Problems with what `read_tick_state` sees in a loaded database (empty list: as synthesized)."""
    now = datetime.now(UTC)
    if now.date() != today:
        return []  # the clock passed midnight: the expectations below no longer hold
    state = tick_state.read_tick_state(instance, pool, now)
    label = f"{older_days} older days"
    problems = []
    for (sid, day), part in sorted(state.sweeps.items()):
        if day == today:
            if part.materialized_at is None or part.complete or part.frontier is None or part.watermark_end is None:
                problems.append(f"{label}: ({sid}, {day}) should be materialized, open, with a watermark: {part}")
        elif (today - day).days <= older_days:
            if not (part.complete and part.materialized_at and part.frontier == day_end(day)):
                problems.append(f"{label}: ({sid}, {day}) should be complete at the day end: {part}")
        elif part.materialized_at is not None:
            problems.append(f"{label}: ({sid}, {day}) should have no materialization: {part}")
    if len(state.sweeps) != len(scanners) * len(tick_plan.watched_days(now, daily_partitions_def.start.date())):
        problems.append(f"{label}: {len(state.sweeps)} sweep partitions read")
    rollup = state.rollups.get(today)
    if rollup is None or rollup.covered_until is None or rollup.complete:
        problems.append(f"{label}: today's rollup should be materialized and open: {rollup}")
    return problems[:10]


def requested_partitions(result: dg.SensorResult) -> list[str]:
    """Every partition the tick requested: a run's own, and those of batch runs (in their run config)."""
    keys = [r.partition_key for r in result.run_requests if r.partition_key]
    ops = [(r.run_config or {}).get("ops", {}).get(scanning_module.OP_NAME, {}) for r in result.run_requests]
    return keys + [k for op in ops for k in op.get("config", {}).get("partitions", [])]


def check_requests(result: dg.SensorResult, scanners: list[Any], today: date, history: str, older_days: int) -> list[str]:
    """What the sensor must request: older days complete -> only today; none -> the missing days too."""
    if datetime.now(UTC).date() != today:
        return []  # the clock passed midnight during the run
    keys = requested_partitions(result)
    rollups = [k for k in keys if "|" not in k]
    sweeps_ = sorted(k for k in keys if "|" in k)
    cap = tick_plan.MAX_REQUESTS_PER_TICK
    problems = []
    if older_days > tick_plan.CATCH_UP_DAYS:  # every watched day before today is complete
        expected = sorted(f"{today.isoformat()}|{s.id}" for s in scanners)[:cap]
        expected_rollups = [today.isoformat()]
    else:
        # Older days never rolled up: the sensor rolls up every day the watched sweeps read
        # (ROLLUP_CATCH_UP_DAYS back), and their sweeps wait for those rollups (a sweep
        # never runs ahead of the rollups it reads); today's partitions, rolled up and
        # swept before, go on.
        done = {today - timedelta(days=n) for n in range(1, older_days + 1)}
        rollup_first = max(daily_partitions_def.start.date(), today - timedelta(days=tick_plan.ROLLUP_CATCH_UP_DAYS))
        days = [rollup_first + timedelta(days=n) for n in range((today - rollup_first).days + 1)]
        expected_rollups = [d.isoformat() for d in days if d not in done]
        expected = sorted(f"{today.isoformat()}|{s.id}" for s in scanners)[:cap]
    if rollups != expected_rollups:
        problems.append(f"{history}: rollup requests {rollups}, expected {expected_rollups}")
    if sweeps_ != expected:
        problems.append(f"{history}: sweep requests {sweeps_[:3]}... ({len(sweeps_)}), expected {expected[:3]}... ({len(expected)})")
    if not keys:
        problems.append(f"{history}: the sensor requested no runs")
    return problems


def run_history(admin_url: str, tmp: Path, args: argparse.Namespace) -> bool:
    say("## 1. sweep_sensor evaluation time versus materialization history")
    now = datetime.now(UTC)
    today = now.date()
    start = max(daily_partitions_def.start.date(), today - timedelta(days=args.days))
    older_days = (today - start).days
    window_days = min(older_days, tick_plan.CATCH_UP_DAYS + 1)  # every partition the sensor reads
    scanners = history_scanners(args.scanners, day_start(start))
    app_url = new_app_database(admin_url, "history_app")
    resources = stack_resources(f"chdb://{tmp / 'clickhouse-unused'}", "unused", app_url, tmp / "objects-unused")
    defs = build_defs(resources)
    pool = resources["postgres"].pool()
    for scanner in scanners:
        scanner_store.save(pool, scanner)
    say(
        f"{len(scanners)} scanners (match, start {start}), today {today} (UTC), older days in the 1-year history: "
        f"{older_days}; each evaluation reads {len(tick_plan.watched_days(now, start))} days x {len(scanners)} sweep "
        f"partitions and {len(tick_plan.watched_days(now, start)) + 1} rollup days"
    )

    rate = probe_runless_rate(admin_url, tmp)
    say(f"report_runless_asset_event: {rate * 1000:.1f} ms/event on this pgserver ({RUNLESS_PROBE_EVENTS} events)")

    # "1 day" and "1 year" are the figure; "N days" (exactly the partitions the sensor reads, all
    # materialized) separates the cost of a full watched window from the cost of older history;
    # "1 year, pooled" is the 1-year database through an instance that keeps its connections
    # (`optimize_for_webserver`, as dagster-webserver does): the share of connection set-up.
    histories = [("1 day", 0), (f"{window_days + 1} days", window_days), ("1 year", older_days)]
    instances: dict[str, dg.DagsterInstance] = {}
    ok = True
    try:
        for history, days in histories:
            name = f"dagster_{days}"
            url = new_database(admin_url, name)
            instance = open_instance(tmp / name, pg.sqlalchemy_url(url))
            instances[history] = instance
            instance.add_dynamic_partitions(scanner_partitions_def.name, [s.id for s in scanners])
            started = time.perf_counter()
            written = load_history(instance, scanners, today, now, days, seed=days + 1)
            load_s = time.perf_counter() - started
            vacuum_analyze(url)
            mats, rows = materialization_count(url)
            say(
                f"{history}: loaded {written:,} materializations in {load_s:.1f} s "
                f"({load_s / max(written, 1) * 1000:.2f} ms/event, batched; report_runless_asset_event would take "
                f"~{written * rate / 60:.1f} min); event_logs: {mats:,} materializations, {rows:,} rows"
            )
            problems = check_history_state(instance, pool, scanners, today, days)
            for problem in problems:
                say(f"CORRECTNESS: {problem}")
            ok = ok and not problems
            if days == older_days:
                pooled = open_instance(tmp / f"{name}-pooled", pg.sqlalchemy_url(url))
                pooled.optimize_for_webserver(statement_timeout=60_000, pool_recycle=3600, max_overflow=20)
                instances["1 year, pooled"] = pooled
        labels_by_days = {h: d for h, d in histories} | {"1 year, pooled": older_days}

        probe = Probe()
        install_sensor_probe(probe)
        for instance in instances.values():
            for attr in ("get_latest_storage_id_by_partition", "fetch_materializations", "get_run_records", "get_dynamic_partitions"):
                probe.patch_instance(instance, attr)
        timings: dict[str, list[float]] = defaultdict(list)
        parts: dict[str, list[dict[str, float]]] = defaultdict(list)
        connects: dict[str, list[int]] = defaultdict(list)
        results: dict[str, dg.SensorResult] = {}
        try:
            for history, instance in instances.items():  # warm-up
                _, results[history], _ = evaluate_sensor(instance, defs, resources, probe)
            for _ in range(args.evaluations):
                for history, instance in instances.items():
                    before = PG_CONNECTS[0]
                    elapsed, result, breakdown = evaluate_sensor(instance, defs, resources, probe)
                    connects[history].append(PG_CONNECTS[0] - before)
                    timings[history].append(elapsed)
                    parts[history].append(breakdown)
                    results[history] = result
        finally:
            probe.restore()

        for history, result in results.items():
            problems = check_requests(result, scanners, today, history, labels_by_days[history])
            for problem in problems:
                say(f"CORRECTNESS: {problem}")
            ok = ok and not problems
            keys = requested_partitions(result)
            say(
                f"{history}: {len(result.run_requests)} run requests ({sum('|' not in k for k in keys)} rollups, "
                f"{sum('|' in k for k in keys)} scanner partitions); new Postgres connections per evaluation: "
                f"{median([float(c) for c in connects[history]]):.0f}"
            )

        say()
        say(f"breakdown, median ms over {args.evaluations} evaluations:")
        names = list(instances)
        labels = sorted({label for history in parts for p in parts[history] for label in p}, key=_label_order)
        say(f"  {'':50s}" + "".join(f" {h:>14s}" for h in names))
        say(f"  {'sweep_sensor (whole evaluation)':50s}" + "".join(f" {median(timings[h]) * 1000:14.1f}" for h in names))
        for label in labels:
            row = [median([p.get(label, 0.0) for p in parts[h]]) * 1000 for h in names]
            say(f"  {label:50s}" + "".join(f" {v:14.1f}" for v in row))
        rest = [
            median([t - p.get("read_tick_state", 0.0) - p.get("plan_tick", 0.0) for t, p in zip(timings[h], parts[h])]) * 1000
            for h in names
        ]
        say(f"  {'rest (run requests, waiting logs, SensorResult)':50s}" + "".join(f" {v:14.1f}" for v in rest))
        say("  (the instance.* lines are inside the partition-state and run-record lines above them)")
        say()

        day_med, year_med = median(timings["1 day"]), median(timings["1 year"])
        window_label = histories[1][0]
        ratio = year_med / day_med
        figure("sensor evaluation, 1 day of history (median)", f"{day_med * 1000:.1f} ms")
        figure("sensor evaluation, 1 year of history (median)", f"{year_med * 1000:.1f} ms")
        figure("history ratio 1 year / 1 day", f"{ratio:.2f}", f"<= {RATIO_GOAL}", ratio <= RATIO_GOAL)
        for history in ("1 day", "1 year"):
            read = median([p.get("read_tick_state", 0.0) for p in parts[history]]) * 1000
            plan = median([p.get("plan_tick", 0.0) for p in parts[history]]) * 1000
            figure(f"  {history}: read_tick_state / plan_tick (median)", f"{read:.1f} ms / {plan:.2f} ms")
        figure(
            f"  info: 1 year / {window_label} (every watched partition materialized in both)",
            f"{year_med / median(timings[window_label]):.2f}",
        )
        figure(
            "  info: 1 year with pooled Dagster connections (optimize_for_webserver)",
            f"{median(timings['1 year, pooled']) * 1000:.1f} ms",
        )
        say()
        return ok
    finally:
        for instance in instances.values():
            instance.dispose()


def _label_order(label: str) -> tuple[int, str]:
    order = ["read_tick_state", "  scanners", "  run records", "  partition states", "  instance.", "plan_tick"]
    for n, prefix in enumerate(order):
        if label.startswith(prefix):
            return n, label
    return len(order), label


# --- 2. CPU per tick ------------------------------------------------------------------


class BodyClock:
    """A `time` stand-in for the asset modules: `monotonic()` also notes process CPU.

    An asset body calls `time.monotonic()` first (`started = ...`, so `started` is
    not yet a local) and last (for `duration_s`): the CPU between the two is the
    body's. Every other attribute is the real `time` module's.
    """

    def __init__(self) -> None:
        self.bodies: list[list[float]] = []  # [cpu_start, cpu_end, wall_start, wall_end]

    def monotonic(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        caller = sys._getframe(1)
        if "started" not in caller.f_locals:
            self.bodies.append([cpu, cpu, wall, wall])
        elif self.bodies:
            self.bodies[-1][1], self.bodies[-1][3] = cpu, wall
        return wall

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def take(self) -> tuple[float, float, int]:
        """(body CPU, body wall, bodies) since the last call."""
        cpu = sum(b[1] - b[0] for b in self.bodies)
        wall = sum(b[3] - b[2] for b in self.bodies)
        count = len(self.bodies)
        self.bodies = []
        return cpu, wall, count


@contextlib.contextmanager
def body_clock() -> Iterator[BodyClock]:
    clock = BodyClock()
    saved = scanning_module.time, rollups_module.time
    scanning_module.time = clock  # type: ignore[assignment]
    rollups_module.time = clock  # type: ignore[assignment]
    try:
        yield clock
    finally:
        scanning_module.time, rollups_module.time = saved


def tick_scanners(count: int, start_at: datetime) -> list[Any]:
    filters: list[tuple[dict[str, Any], float]] = [
        ({}, 1.0),
        ({"counters": {"pageview_count": {"gte": 2}}}, 1.0),
        ({"counters": {"rageclick_count": {"gte": 1}}}, 1.0),
        ({"counters": {"exception_count": {"gte": 1}}}, 1.0),
        ({"min_duration_seconds": 60}, 1.0),
        ({"events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "icontains", "value": "/checkout"}]}]}, 1.0),
        ({"counters": {"ai_generation_count": {"gte": 1}}}, 1.0),
        ({"events": [{"event": "$autocapture"}]}, 1.0),
        ({"max_duration_seconds": 600, "counters": {"event_count": {"gte": 3}}}, 1.0),
        ({"counters": {"event_count": {"gte": 10}}}, 0.5),
    ]
    scanners = []
    for n in range(count):
        flt, rate = filters[n % len(filters)]
        scanners.append(
            parse_scanner(
                {
                    "id": f"tick-{n:03d}",
                    "team_id": 1 + n % 3,
                    "name": f"tick scanner {n}",
                    "kind": "match",
                    "filter": flt,
                    "sample_rate": rate,
                    "start_at": start_at.isoformat(),
                },
                source="benchmark",
            )
        )
    return scanners


def chdb_thread_check(resource: ClickHouseResource) -> str:
    """Whether process_time / RUSAGE_SELF count chDB's query threads (they run in this process)."""
    client = resource.client()
    p0, t0, r0, w0 = time.process_time(), time.thread_time(), rusage_cpu(), time.perf_counter()
    client.query("SELECT sum(cityHash64(number)) FROM numbers(300000000) SETTINGS max_threads = 8")
    p1, t1, r1, w1 = time.process_time(), time.thread_time(), rusage_cpu(), time.perf_counter()
    counted = (p1 - p0) > 1.3 * (t1 - t0) or (p1 - p0) > 0.9 * (w1 - w0)
    return (
        f"{'yes' if counted else 'NOT CLEAR'} (a chDB query: wall {w1 - w0:.2f} s, process_time {p1 - p0:.2f} s, "
        f"RUSAGE_SELF {r1 - r0:.2f} s, calling thread {t1 - t0:.2f} s)"
    )


def run_durations(instance: dg.DagsterInstance, run_ids: list[str]) -> tuple[float, int, int]:
    """(sum of the assets' duration_s, asset check evaluations, event rows) of these runs."""
    total, checks, rows = 0.0, 0, 0
    for run_id in run_ids:
        for entry in instance.all_logs(run_id):
            rows += 1
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                checks += 1
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                mat = event.step_materialization_data.materialization
                if mat.asset_key in (OBSERVATION_BATCHES, session_counter_rollups.key) and "duration_s" in mat.metadata:
                    total += float(mat.metadata["duration_s"].value)
    return total, checks, rows


def subprocess_run_cpu(env: dict[str, str], argv: list[str]) -> tuple[float, float, int]:
    """(CPU seconds of the child incl. its children, wall seconds, exit code)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        say(f"  subprocess {' '.join(argv[-6:])} failed ({child.returncode}): {err[-800:]}")
    return usage.ru_utime + usage.ru_stime, wall, child.returncode


def run_cpu(admin_url: str, pg_data: Path, tmp: Path, args: argparse.Namespace) -> bool:
    say(f"## 2. CPU per sweep tick, {args.tick_scanners} scanners, embedded stack (chDB in-process, pgserver)")
    ok = True
    clock_now = datetime.now(UTC)
    end = clock_now.replace(second=0, microsecond=0) - timedelta(minutes=clock_now.minute % 5)
    first = end - timedelta(minutes=5 * args.ticks)
    app_url = new_app_database(admin_url, "ticks_app")
    dagster_url = new_database(admin_url, "dagster_ticks")
    home = tmp / "dagster-ticks"
    chdb_url = f"chdb://{tmp / 'clickhouse'}"
    resources = stack_resources(chdb_url, "bench_ticks", app_url, tmp / "objects")
    resources["clickhouse"].migrate()
    defs = build_defs(resources)
    instance = open_instance(home, pg.sqlalchemy_url(dagster_url))
    pooled: dg.DagsterInstance | None = None
    try:
        pool = resources["postgres"].pool()
        clickhouse = resources["clickhouse"]
        columns = demo_data.generate_events(days=1, now=end, seed=DEMO_SEED)
        insert_events(clickhouse.client(), clickhouse.events, {name: columns[name] for name in EVENT_COLUMNS})
        data_start = min(columns["timestamp"])
        scanners = tick_scanners(args.tick_scanners, data_start - timedelta(hours=1))
        for scanner in scanners:
            scanner_store.save(pool, scanner)
        say(
            f"demo events: {len(columns['event']):,} from {data_start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; "
            f"{len(scanners)} scanners (match, start {data_start - timedelta(hours=1):%Y-%m-%d %H:%M})"
        )
        say(f"process_time / RUSAGE_SELF include chDB's threads: {chdb_thread_check(clickhouse)}")

        # Catch up at the first tick time until nothing is deferred (the first tick also registers the scanners).
        started = time.perf_counter()
        catch_up_runs = 0
        for _ in range(6):
            report = ticks.execute_tick(defs, instance, pool, first)
            catch_up_runs += len(report["runs"])
            failed = [r for r in report["runs"] if not r["success"]]
            if failed:
                say(f"CORRECTNESS: catch-up runs failed: {failed[:3]}")
                ok = False
            if not report["deferred"]:
                break
        say(f"catch-up at {first:%H:%M}: {catch_up_runs} runs in {time.perf_counter() - started:.1f} s")

        if args.compare_pooled:
            # The same Dagster database through an instance that keeps its connections
            # (what dagster-webserver does): every other measured tick runs with it.
            pooled = open_instance(tmp / "dagster-ticks-pooled", pg.sqlalchemy_url(dagster_url))
            pooled.optimize_for_webserver(statement_timeout=60_000, pool_recycle=3600, max_overflow=20)
        rows = []
        with body_clock() as clock:
            for n in range(1, args.ticks + 1):
                now = first + timedelta(minutes=5 * n)
                use_pooled = args.compare_pooled and n % 2 == 0
                pg0, n0 = postgres_cpu(pg_data), PG_CONNECTS[0]
                c0, r0, th0, w0 = time.process_time(), rusage_cpu(), time.thread_time(), time.perf_counter()
                report = ticks.execute_tick(defs, pooled if use_pooled else instance, pool, now)
                c1, r1, th1, w1 = time.process_time(), rusage_cpu(), time.thread_time(), time.perf_counter()
                pg1, n1 = postgres_cpu(pg_data), PG_CONNECTS[0]
                body_cpu, body_wall, bodies = clock.take()
                run_ids = sorted({r["run_id"] for r in report["runs"]})  # a batch run sweeps many partitions
                duration_sum, checks, event_rows = run_durations(instance, run_ids)
                failed = [r for r in report["runs"] if not r["success"]]
                if failed:
                    say(f"CORRECTNESS: tick {now:%H:%M}: {len(failed)} runs failed, e.g. {failed[0]}")
                    ok = False
                if not report["runs"]:
                    say(f"CORRECTNESS: tick {now:%H:%M} requested no runs")
                    ok = False
                if bodies != len(run_ids):
                    say(f"note: tick {now:%H:%M}: {bodies} asset bodies timed for {len(run_ids)} runs")
                rows.append(
                    {
                        "now": now,
                        "runs": len(run_ids),
                        "sweeps": sum("|" in r["partition"] for r in report["runs"]),
                        "observed": sum(int(r.get("observed") or 0) for r in report["runs"]),
                        "cpu": c1 - c0,
                        "rusage": r1 - r0,
                        "thread": th1 - th0,
                        "wall": w1 - w0,
                        "body_cpu": body_cpu,
                        "body_wall": body_wall,
                        "duration_s": duration_sum,
                        "checks": checks,
                        "events": event_rows,
                        "pg": (pg1 - pg0) if pg0 is not None and pg1 is not None else float("nan"),
                        "connects": n1 - n0,
                        "pooled": use_pooled,
                        "deferred": report["deferred"],
                    }
                )
        with pool.connection() as conn:
            observations = conn.execute("SELECT count(*) FROM observations").fetchone()[0]

        say()
        say(
            f"  {'tick':5s} {'runs':>4s} {'sweeps':>6s} {'obs':>4s} {'wall s':>7s} {'cpu s':>6s} {'rusage':>6s} "
            f"{'main-th':>7s} {'body cpu':>8s} {'dur_s':>6s} {'checks':>6s} {'events':>6s} {'pg cpu':>6s} {'pg conns':>8s}"
        )
        for r in rows:
            say(
                f"  {r['now']:%H:%M} {r['runs']:4d} {r['sweeps']:6d} {r['observed']:4d} {r['wall']:7.2f} {r['cpu']:6.2f} "
                f"{r['rusage']:6.2f} {r['thread']:7.2f} {r['body_cpu']:8.2f} {r['duration_s']:6.2f} {r['checks']:6d} "
                f"{r['events']:6d} {r['pg']:6.2f} {r['connects']:8d}{'  pooled' if r['pooled'] else ''}"
            )
        say(f"  observations written in total: {observations}")
        say()

        pooled_rows = [r for r in rows if r["pooled"]]
        rows = [r for r in rows if not r["pooled"]]
        mean = lambda key, rows=rows: sum(r[key] for r in rows) / len(rows)  # noqa: E731
        runs_per_tick = mean("runs")
        cpu_tick = mean("cpu")
        overhead = mean("cpu") - mean("body_cpu")
        overhead_wall_def = mean("cpu") - mean("duration_s")
        per_run = overhead / runs_per_tick if runs_per_tick else float("nan")
        say(
            "  columns: obs = observations written; cpu s = process_time; rusage = RUSAGE_SELF user+sys; main-th = "
            "this thread's CPU; body cpu = process CPU inside the asset bodies; dur_s = sum of their duration_s (wall); "
            "checks = asset check evaluations; events = Dagster event-log rows written; pg cpu = pgserver processes' "
            "CPU; pg conns = new connections opened by Dagster's storage (NullPool: one per storage call)"
        )
        say()
        figure(f"tick CPU, in-process (mean of {len(rows)} ticks)", f"{cpu_tick:.2f} s per tick, {runs_per_tick:.1f} runs, wall {mean('wall'):.2f} s")
        figure("asset bodies CPU per tick (mean)", f"{mean('body_cpu'):.3f} s (their duration_s, wall: {mean('duration_s'):.3f} s)")
        figure(
            "Dagster overhead per tick = tick CPU - body CPU (mean)",
            f"{overhead:.2f} CPU-s ({per_run:.3f} s per run; tick CPU - sum duration_s: {overhead_wall_def:.2f} s)",
        )
        figure(
            "Dagster overhead share of one core at a 5-min cadence (in-process runs)",
            f"{overhead / CADENCE_S:.1%}",
            f"< {CORE_SHARE_GOAL:.0%}",
            overhead / CADENCE_S < CORE_SHARE_GOAL,
        )
        if not all(r["pg"] != r["pg"] for r in rows):  # some readings (NaN != NaN)
            figure(
                "pgserver CPU per tick (other processes, not counted above; mean)",
                f"{mean('pg'):.2f} s, {mean('connects'):.0f} new Dagster storage connections per tick; "
                f"this process + pgserver: {(mean('cpu') + mean('pg')) / CADENCE_S:.1%} of one core",
            )

        if pooled_rows:
            figure(
                f"  info: pooled Dagster connections (optimize_for_webserver), {len(pooled_rows)} ticks (mean)",
                f"tick CPU {mean('cpu', pooled_rows):.2f} s, body {mean('body_cpu', pooled_rows):.2f} s, pgserver "
                f"{mean('pg', pooled_rows):.2f} s, {mean('connects', pooled_rows):.0f} connections, wall "
                f"{mean('wall', pooled_rows):.2f} s (NullPool ticks: {mean('cpu'):.2f} / {mean('body_cpu'):.2f} / "
                f"{mean('pg'):.2f} s, wall {mean('wall'):.2f} s)",
            )
        if not args.skip_subprocess:
            ch.close_clients()
            ok = run_subprocess_estimate(
                admin_url, tmp, app_url, dagster_url, home, scanners[0].id, end, per_run, runs_per_tick, overhead
            ) and ok
        say()
        return ok
    finally:
        instance.dispose()
        if pooled is not None:
            pooled.dispose()


def run_subprocess_estimate(
    admin_url: str,
    tmp: Path,
    app_url: str,
    dagster_url: str,
    home: Path,
    scanner_id: str,
    end: datetime,
    in_process_per_run: float,
    runs_per_tick: float,
    overhead: float,
) -> bool:
    """CPU of one run in its own process (as the run launcher starts them), on an empty chDB path."""
    env = {
        **os.environ,
        "SESSION_ASSETS_HOME": str(tmp / "sub-home"),
        "SESSION_ASSETS_CLICKHOUSE_URL": f"chdb://{tmp / 'clickhouse-sub'}",
        "SESSION_ASSETS_CLICKHOUSE_DATABASE": "bench_sub",
        "SESSION_ASSETS_POSTGRES_URL": app_url,
        DAGSTER_POSTGRES_URL_VAR: pg.sqlalchemy_url(dagster_url),
        "SESSION_ASSETS_OBJECT_STORE_URL": f"file://{tmp / 'objects-sub'}",
        MAX_CONCURRENT_RUNS_VAR: "1",
        "DAGSTER_HOME": str(home),
    }
    env.pop("DAGSTER_EVENT_BATCH_SIZE", None)
    python = sys.executable
    day = end.date().isoformat()
    commands = {
        "python -c pass (interpreter start)": [python, "-c", "pass"],
        "import dagster": [python, "-c", "import dagster"],
        "import dagster, dagster_aws.s3": [python, "-c", "import dagster, dagster_aws.s3"],
        "import definitions (code location load)": [python, "-c", "import definitions"],
        "dagster asset materialize: rollups": [
            python, "-m", "dagster", "asset", "materialize", "-m", "definitions",
            "--select", "session_counter_rollups", "--partition", day,
        ],
        "dagster asset materialize: one sweep": [
            python, "-m", "dagster", "asset", "materialize", "-m", "definitions",
            "--select", "scanner_candidate_windows,observation_batches", "--partition", f"{day}|{scanner_id}",
        ],
    }
    # The runs only check the schema: create it first, as the deploy step would (not timed).
    migrated = subprocess.run([python, "-m", "session_assets.cli", "migrate"], cwd=REPO, env=env, capture_output=True, text=True)
    ok = migrated.returncode == 0
    if not ok:
        say(f"  session-assets migrate failed ({migrated.returncode}): {migrated.stderr[-500:]}")
    cpu: dict[str, float] = {}
    for label, argv in commands.items():
        seconds, wall, code = subprocess_run_cpu(env, argv)
        cpu[label] = seconds
        ok = ok and code == 0
        say(f"  {label}: {seconds:.2f} CPU-s, wall {wall:.2f} s{'' if code == 0 else f' (exit {code})'}")
    runs = [cpu["dagster asset materialize: rollups"], cpu["dagster asset materialize: one sweep"]]
    per_run = sum(runs) / len(runs)
    estimate = overhead + runs_per_tick * max(0.0, per_run - in_process_per_run)
    figure("one run in its own process (dagster asset materialize, mean of 2)", f"{per_run:.2f} CPU-s")
    figure(
        "estimated Dagster overhead share with one process per run",
        f"{estimate:.1f} CPU-s per tick = {estimate / CADENCE_S:.1%}",
        f"< {CORE_SHARE_GOAL:.0%}",
        estimate / CADENCE_S < CORE_SHARE_GOAL,
    )
    if not ok:
        say("CORRECTNESS: a subprocess run failed")
    return ok


# --- main --------------------------------------------------------------------------------


def header(admin_url: str) -> None:
    import chdb

    with psycopg.connect(admin_url) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    say("# sweep sensor benchmark")
    say(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    say(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}; dagster {dg.__version__}; chdb {chdb.__version__}; "
        f"postgres {pg_version} (pgserver)"
    )
    say()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scanners", type=int, default=50, help="scanners for the history figure (default 50)")
    parser.add_argument("--days", type=int, default=365, help="older days in the 1-year history (default 365)")
    parser.add_argument("--evaluations", type=int, default=15, help="timed sensor evaluations per history (default 15)")
    parser.add_argument("--tick-scanners", type=int, default=20, help="scanners for the CPU figure (default 20)")
    parser.add_argument("--ticks", type=int, default=6, help="measured ticks, 5 minutes apart (default 6)")
    parser.add_argument("--skip-history", action="store_true", help="skip the history figure")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the CPU-per-tick figure")
    parser.add_argument("--skip-subprocess", action="store_true", help="skip the one-process-per-run estimate")
    parser.add_argument(
        "--compare-pooled",
        action="store_true",
        help="run every other measured tick through an instance with pooled Dagster connections (info line; "
        "the figures use the other ticks)",
    )
    args = parser.parse_args(argv)
    if args.scanners < 1 or args.evaluations < 1 or args.tick_scanners < 1 or args.ticks < 1:
        parser.error("sizes must be >= 1")
    if args.days < tick_plan.CATCH_UP_DAYS + 2:
        parser.error(f"--days must be >= {tick_plan.CATCH_UP_DAYS + 2}: longer than the window the sensor watches")

    logging.getLogger("dagster").setLevel(logging.WARNING)
    sqlalchemy.event.listen(sqlalchemy.pool.Pool, "connect", _count_connect)
    tmp = Path(tempfile.mkdtemp(prefix="sensor-bench-")).resolve()
    pg_data = tmp / "postgres"
    ok = True
    try:
        admin_url = pg.embedded_server_url(pg_data, database="postgres")
        header(admin_url)
        if not args.skip_history:
            ok = run_history(admin_url, tmp, args) and ok
        if not args.skip_cpu:
            ok = run_cpu(admin_url, pg_data, tmp, args) and ok
        say("## figures")
        for line in RESULTS:
            say(line)
        if not ok:
            say("a correctness check failed (see CORRECTNESS lines)")
        return 0 if ok else 1
    finally:
        ch.close_clients()
        pg.close_pools()
        server = pg._servers.pop(pg_data, None)
        if server is not None:
            server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
