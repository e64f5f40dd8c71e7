"""Benchmark of writing observations into Postgres (SPEC §8), pgserver + chDB on this machine.

Figures:

* throughput: observations/s written by the asset's code path, `observations.walk`
  over N generated candidates (`--observations`, default 200,000) in pages of 1000,
  `match` scanner, local-folder object store (every page: partition lock, existing
  check, quota reservation, verdicts, one multi-row INSERT ... SELECT FROM unnest,
  gzipped JSONL object, batch row, commit), versus a naive loop writing the same
  observations with one `INSERT ... VALUES (...)` per row on an autocommit psycopg
  connection (`--naive-observations`, default 20,000 rows: it is slow, so rates are
  compared). The naive loop's parameters (verdicts, evidence) are computed before
  its clock starts and it does no quota or batch work: both only flatter it.
  Every measurement gets a fresh database on one pgserver; runs are interleaved
  (asset, naive, asset, naive, ...), `--repeat` times (default 3), medians compared.
  Goals: ratio >= 10x, asset >= 20,000 observations/s.
* memory: a day with `--candidates` (default 1,000,000) settled sessions swept through
  the asset (`dg.materialize` of `scanner_observations` with its checks, as
  `tests.support.sweep` does), in a child process of its own: peak RSS of that process
  (`ru_maxrss`, chDB runs in it), RSS just before the sweep and the increase, wall
  time, observations/s, and the count in Postgres (must equal the candidates).
  The 1M rollup rows are inserted by another child beforehand (INSERT ... SELECT
  FROM numbers()), so their load does not count towards the sweep's peak. Goal: < 500 MB.
  Linux carries a parent's peak RSS into a fork+exec'd child's `ru_maxrss`, so this
  part runs first, while the parent is still small (~40 MB; printed), and the child's
  own peak (VmHWM) is printed as a cross-check. The sweep's RSS is also sampled every
  50 ms and split into phases: before the walk (chDB candidates INSERT ... SELECT),
  the walk (chDB ORDER BY stream -> Postgres pages), after (metadata, checks).
  `observations.walk` is wrapped in the child only to timestamp those phases.

`--profile` adds a cProfile (by own time) of one asset-path walk.

    python benchmarks/observations.py [--observations N] [--naive-observations N] [--repeat R]
                                      [--candidates N] [--skip-memory] [--profile] [--path DIR]
    python -m benchmarks.observations [same options]

Exit code 0 whatever the goals; 1 when a correctness check fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/observations.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from session_assets.settings import DEFAULT_START_DATE, START_DATE_VAR  # noqa: E402 (light: stdlib only)

REPO = Path(__file__).resolve().parent.parent
UTC = timezone.utc
# A partition of the daily definition (and the day before it, too).
DAY = max(date(2025, 1, 15), date.fromisoformat(os.environ.get(START_DATE_VAR) or DEFAULT_START_DATE) + timedelta(days=1))
DAY_START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
AS_OF = DAY_END + timedelta(hours=2)
COVERED_UNTIL = DAY_END + timedelta(hours=1)  # > day end + settle (35 min): the whole day is sweepable
PAGE_SIZE = 1000
SCANNER_ID = "bench-match"
TEAM_ID = 1
RATIO_GOAL = 10.0
RATE_GOAL = 20_000.0
MEMORY_GOAL_MB = 500.0
RESULT_MARK = "BENCH-RESULT "
# Keep Dagster's console quiet in the memory child; events still go to the instance.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

NAIVE_INSERT = (
    "INSERT INTO observations (team_id, scanner_id, session_id, day, verdict, score, evidence, batch_key) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


# --- helpers -----------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_split() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes: heap and stacks vs mapped libraries (chDB's is large)."""
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                name, amount, _unit = line.split()
                values[name[:-1]] = int(amount) * 1024
    return values.get("RssAnon", 0), values.get("RssFile", 0) + values.get("RssShmem", 0)


def peak_rss_bytes() -> int:
    """`ru_maxrss` (KiB on Linux). It includes the peak of the process that spawned this one
    (Linux carries it across fork + exec), hence the children are spawned while the parent is small."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def own_peak_rss_bytes() -> int:
    """VmHWM: this process's own peak RSS since exec, nothing inherited."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def mb(n_bytes: float) -> float:
    return n_bytes / 1e6


def scanner_definition() -> dict[str, Any]:
    return {
        "id": SCANNER_ID,
        "team_id": TEAM_ID,
        "name": "benchmark match scanner",
        "kind": "match",
        "filter": {},
        "rule": {},
        "sample_rate": 1.0,
        "start_at": (DAY_START - timedelta(hours=1)).isoformat(),
    }


def save_scanner(pool: Any) -> Any:
    from session_assets.scanners import parse_scanner
    from session_assets.scanners import store

    scanner = parse_scanner(scanner_definition(), source="benchmark")
    store.save(pool, scanner)
    return scanner


def candidate_rows(n: int) -> list[tuple]:
    """`n` candidates as the walk query yields them (CANDIDATE_WALK_COLUMNS order), keyset-sorted.

    Distinct session ids, ends spread over the day, counters varied so evidence
    holds a realistic handful of non-zero values.
    """
    rows = []
    step = (86_400 - 1_000) * 1_000_000 // max(n, 1)
    for i in range(n):
        end = DAY_START + timedelta(microseconds=1_000_000_000 + i * step)
        duration = 30 + i % 900
        ai = 2 if i % 11 == 0 else 0
        rows.append(
            (
                TEAM_ID, f"s{i:08d}-{uuid.UUID(int=i).hex[:12]}", f"user-{i % 50_000}",
                end - timedelta(seconds=duration), end, duration,
                1 + i % 40, i % 7, i % 13, 1 if i % 97 == 0 else 0, 1 if i % 31 == 0 else 0,
                ai, ai * 350, ai * 120, Decimal(ai) * Decimal("0.0015"),
                f"https://example.com/p/{i % 500}", 0,
            )
        )  # fmt: skip
    return rows


# --- throughput --------------------------------------------------------------------


class Postgres:
    """One pgserver; a fresh database per measurement."""

    def __init__(self, data_dir: Path) -> None:
        from session_assets.stores import postgres

        self.data_dir = data_dir
        self.admin_url = postgres.embedded_server_url(data_dir, database="postgres")

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.admin_url) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def fresh(self, prefix: str) -> tuple[str, str]:
        from session_assets.stores import postgres

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        postgres.ensure_database(self.admin_url, name)
        return name, postgres.with_database(self.admin_url, name)

    def drop(self, name: str) -> None:
        import psycopg
        from psycopg import sql as pg_sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(pg_sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pg_sql.Identifier(name)))

    def stop(self) -> None:
        """Stop the server this process started (before its folder is removed)."""
        import pgserver

        pgserver.get_server(self.data_dir).cleanup()


def schema_pool(url: str) -> Any:
    """The pool `PostgresResource.pool()` would give, migrated explicitly (see the report)."""
    from session_assets.stores import postgres

    postgres.migrate(url)
    return postgres.get_pool(url)


def count(url: str, statement: str, *params: Any) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return int(conn.execute(statement, params).fetchone()[0])


def run_asset_path(pg: Postgres, rows: list[tuple], objects_root: Path, label: str) -> tuple[float, list[str]]:
    """`observations.walk` over `rows` on a fresh database: (seconds, correctness errors)."""
    from dagster_aws.s3 import S3Resource

    from session_assets.core import observations
    from session_assets.stores import postgres
    from session_assets.resources import object_store_for

    name, url = pg.fresh(label)
    objects = objects_root / name
    store = object_store_for(f"file://{objects}", S3Resource())
    try:
        pool = schema_pool(url)
        scanner = save_scanner(pool)
        quota = max(10 * len(rows), observations.DEFAULT_MONTHLY_QUOTA)
        gc.collect()
        started = time.perf_counter()
        result = observations.walk(
            pool, store, scanner, DAY, AS_OF, observations.pages(iter(rows), PAGE_SIZE), default_quota=quota
        )
        seconds = time.perf_counter() - started
        n, pages = len(rows), math.ceil(len(rows) / PAGE_SIZE)
        errors = []
        stored = count(url, "SELECT count(*) FROM observations WHERE scanner_id = %s", SCANNER_ID)
        batches = count(url, "SELECT count(*) FROM observation_batches WHERE scanner_id = %s", SCANNER_ID)
        listed = sum(1 for _ in store.list_keys("observations/"))
        if (result.observed, result.pages, result.finished, stored, batches, listed) != (n, pages, True, n, pages, pages):
            errors.append(
                f"{label}: walk observed {result.observed}/{n} in {result.pages}/{pages} pages "
                f"(finished {result.finished}); {stored} rows, {batches} batch rows, {listed} objects"
            )
        return seconds, errors
    finally:
        postgres.close_pools()
        pg.drop(name)
        shutil.rmtree(objects, ignore_errors=True)


def naive_params(rows: list[tuple], scanner: Any) -> list[tuple]:
    """Each observation's INSERT parameters, exactly the values the asset writes."""
    from psycopg.types.json import Jsonb

    from session_assets.core import observations
    from session_assets.scanners import get_kind

    kind, rule = get_kind(scanner.kind), scanner.parsed_rule
    out = []
    for i, row in enumerate(rows):
        candidate = dict(zip(observations.CANDIDATE_WALK_COLUMNS, row))
        v = kind.apply(observations.summary(candidate), None, rule)
        key = observations.batch_key(scanner.team_id, scanner.id, DAY, i // PAGE_SIZE + 1)
        evidence = Jsonb(observations._evidence(candidate, v.evidence))
        out.append((scanner.team_id, scanner.id, candidate["session_id"], DAY, v.verdict, v.score, evidence, key))
    return out


def run_naive(pg: Postgres, rows: list[tuple], label: str, *, autocommit: bool = True) -> tuple[float, list[str]]:
    """One INSERT per row on one psycopg connection: (seconds, correctness errors)."""
    import psycopg

    from session_assets.stores import postgres

    name, url = pg.fresh(label)
    try:
        pool = schema_pool(url)
        scanner = save_scanner(pool)
        postgres.close_pools()
        params = naive_params(rows, scanner)  # untimed
        gc.collect()
        with psycopg.connect(url, autocommit=autocommit) as conn:
            cursor = conn.cursor()
            started = time.perf_counter()
            for values in params:
                cursor.execute(NAIVE_INSERT, values)
            if not autocommit:
                conn.commit()
            seconds = time.perf_counter() - started
        stored = count(url, "SELECT count(*) FROM observations WHERE scanner_id = %s", SCANNER_ID)
        errors = [] if stored == len(rows) else [f"{label}: {stored} rows stored, {len(rows)} inserted"]
        return seconds, errors
    finally:
        postgres.close_pools()
        pg.drop(name)


def profile_walk(pg: Postgres, rows: list[tuple], objects_root: Path, top: int = 14) -> list[str]:
    """cProfile of one asset-path walk: the functions with the most cumulative time."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run_asset_path(pg, rows, objects_root, "profile")
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return [line for line in out.getvalue().splitlines() if line.strip()][-top - 1 :]


def throughput(pg: Postgres, n: int, n_naive: int, repeat: int, objects_root: Path) -> tuple[dict[str, Any], list[str]]:
    rows = candidate_rows(n)
    naive_rows = rows[:n_naive]
    errors: list[str] = []
    # Warm-up (untimed): imports, first connections, SQL file cache.
    errors += run_asset_path(pg, rows[:2 * PAGE_SIZE], objects_root, "warm")[1]
    errors += run_naive(pg, naive_rows[:500], "warm")[1]
    asset_s: list[float] = []
    naive_s: list[float] = []
    for i in range(repeat):
        seconds, errs = run_asset_path(pg, rows, objects_root, f"asset{i}")
        asset_s.append(seconds)
        errors += errs
        seconds, errs = run_naive(pg, naive_rows, f"naive{i}")
        naive_s.append(seconds)
        errors += errs
    one_tx_s, errs = run_naive(pg, naive_rows, "naivetx", autocommit=False)
    errors += errs
    return {
        "asset_s": asset_s,
        "naive_s": naive_s,
        "one_tx_s": one_tx_s,
        "asset_rate": n / statistics.median(asset_s),
        "naive_rate": n_naive / statistics.median(naive_s),
        "one_tx_rate": n_naive / one_tx_s,
    }, errors


# --- memory: the child processes ---------------------------------------------------

ROLLUP_INSERT = """
INSERT INTO session_counter_rollups_v2
SELECT
    {team_id:Int64} AS team_id,
    {day:Date} AS day,
    concat('s', leftPad(toString(number), 8, '0'), '-', lower(hex(cityHash64(number)))) AS session_id,
    concat('user-', toString(number % 50000)) AS distinct_id,
    last_timestamp - toIntervalSecond(30 + number % 900) AS first_timestamp,
    {day_start:DateTime64(6, 'UTC')} + toIntervalMicrosecond(1000000000 + cityHash64(number, 1) % 85000000000) AS last_timestamp,
    1 + number % 40 AS event_count,
    number % 7 AS pageview_count,
    number % 13 AS autocapture_count,
    number % 97 = 0 AS rageclick_count,
    number % 31 = 0 AS exception_count,
    if(number % 11 = 0, 2, 0) AS ai_generation_count,
    ai_generation_count * 350 AS input_tokens,
    ai_generation_count * 120 AS output_tokens,
    toDecimal128(ai_generation_count, 12) * toDecimal128('0.0015', 12) AS cost_usd,
    concat('https://example.com/p/', toString(number % 500)) AS entry_url,
    last_timestamp + toIntervalSecond(5) AS max_inserted_at,
    {computed_as_of:DateTime64(6, 'UTC')} AS computed_as_of
FROM numbers({n:UInt64})
"""


def child_setup(chdb_path: Path, n: int) -> dict[str, Any]:
    """Load `n` settled sessions of DAY into the rollup table (its own process)."""
    from session_assets.stores import clickhouse as ch
    from session_assets.resources import ClickHouseResource

    res = ClickHouseResource(url=f"chdb://{chdb_path}", database="bench_obs")
    res.migrate()
    client = res.client()
    started = time.perf_counter()
    params = {"team_id": TEAM_ID, "day": DAY, "day_start": DAY_START, "computed_as_of": COVERED_UNTIL, "n": n}
    client.command(ROLLUP_INSERT, parameters=params)
    client.command("OPTIMIZE TABLE session_counter_rollups_v2 FINAL")
    loaded = int(client.query("SELECT count() FROM session_counter_rollups_v2 FINAL WHERE day = {day:Date}", parameters={"day": DAY}).result_rows[0][0])
    seconds = time.perf_counter() - started
    ch.close_clients()
    return {"loaded": loaded, "seconds": seconds, "peak_rss": peak_rss_bytes()}


class RssSampler(threading.Thread):
    """RSS every `interval` s, so the peak can be split into phases of the sweep."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            anon, mapped = rss_split()
            self.samples.append((time.perf_counter(), anon, mapped))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def at(self, moment: float) -> tuple[int, int]:
        """(anonymous, file-backed) RSS of the first sample at or after `moment` (else the last)."""
        for t, anon, mapped in self.samples:
            if t >= moment:
                return anon, mapped
        return self.samples[-1][1:] if self.samples else (0, 0)

    def peak(self, start: float, end: float) -> tuple[int, int]:
        """(anonymous, file-backed) RSS of the sample with the largest total in [start, end]."""
        inside = [(anon + mapped, anon, mapped) for t, anon, mapped in self.samples if start <= t <= end]
        return max(inside, default=(0, 0, 0))[1:]


def child_sweep(chdb_path: Path, pg_url: str, objects: Path, n: int) -> dict[str, Any]:
    """One sweep of DAY through the asset, memory measured around it (its own process)."""
    import dagster as dg
    from dagster_aws.s3 import S3Resource

    from session_assets.stores import clickhouse as ch
    from session_assets.core import observations
    from session_assets.stores import postgres as pg
    from session_assets.assets import scanner_observations, session_counter_rollups
    from session_assets.checks import (
        no_session_behind_watermark_unobserved,
        observations_behind_watermark,
        team_quota_not_exceeded,
        watermark_never_moves_backwards,
    )
    from session_assets.partitions import scanner_partitions_def
    from session_assets.resources import ClickHouseResource, object_store_for, PostgresResource
    from session_assets.core.run_context import AS_OF_TAG

    rss_imported = rss_bytes()
    resources = {
        "clickhouse": ClickHouseResource(url=f"chdb://{chdb_path}", database="bench_obs"),
        "postgres": PostgresResource(url=pg_url),
        "object_store": object_store_for(f"file://{objects}", S3Resource()),
    }
    # The sweep asset asks for this before its first query; this child opens chDB
    # earlier (to count the rollups), so it asks first.
    resources["clickhouse"].prefer_memory_to_speed()
    client = resources["clickhouse"].client()  # opens the chDB engine
    rollups = int(client.query("SELECT count() FROM session_counter_rollups_v2 WHERE day = {day:Date}", parameters={"day": DAY}).result_rows[0][0])
    pool = resources["postgres"].pool()
    save_scanner(pool)

    # Phase markers: when the walk (candidates stream -> Postgres) starts and ends.
    marks: dict[str, float] = {}
    original_walk = observations.walk

    def marked_walk(*args: Any, **kwargs: Any) -> Any:
        marks["walk_start"] = time.perf_counter()
        try:
            return original_walk(*args, **kwargs)
        finally:
            marks["walk_end"] = time.perf_counter()

    observations.walk = marked_walk  # type: ignore[assignment]

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(scanner_partitions_def.name, [SCANNER_ID])
        # Every rollup day the sweep reads: from its 26 h lookback (and the day before) through
        # the as-of time's day, the day after DAY.
        for day in (DAY + timedelta(days=n) for n in range(-3, 2)):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=session_counter_rollups.key,
                    partition=day.isoformat(),
                    metadata={"covered_until": dg.MetadataValue.timestamp(COVERED_UNTIL), "complete": day <= DAY},
                )
            )
        run_config = {
            **QUIET,
            "ops": {"scanner_observations": {"config": {"page_size": PAGE_SIZE, "default_monthly_quota": max(10 * n, 1)}}},
        }
        assets = [
            session_counter_rollups,
            scanner_observations,
            no_session_behind_watermark_unobserved,
            observations_behind_watermark,
            team_quota_not_exceeded,
            watermark_never_moves_backwards,
        ]
        gc.collect()
        rss_before = rss_bytes()
        split_before = rss_split()
        peak_before = peak_rss_bytes()
        sampler = RssSampler()
        sampler.start()
        started = time.perf_counter()
        result = dg.materialize(
            assets,
            selection=dg.AssetSelection.assets(scanner_observations) | dg.AssetSelection.checks_for_assets(scanner_observations),
            partition_key=f"{DAY.isoformat()}|{SCANNER_ID}",
            resources=resources,
            instance=instance,
            tags={AS_OF_TAG: AS_OF.isoformat()},
            run_config=run_config,
            raise_on_error=False,
        )
        ended = time.perf_counter()
        sampler.stop()
        peak_after = peak_rss_bytes()
        own_peak = own_peak_rss_bytes()
        meta: dict[str, Any] = {}
        for event in result.get_asset_materialization_events():
            if event.asset_key == dg.AssetKey("observation_batches"):
                meta = {k: v.value for k, v in event.materialization.metadata.items()}
        window_meta: dict[str, Any] = {}
        for event in result.get_asset_materialization_events():
            if event.asset_key == dg.AssetKey("scanner_candidate_windows"):
                window_meta = {k: v.value for k, v in event.materialization.metadata.items()}
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        success = result.success

    with pool.connection() as conn:
        stored = int(conn.execute("SELECT count(*) FROM observations WHERE scanner_id = %s", (SCANNER_ID,)).fetchone()[0])
        batches = int(conn.execute("SELECT count(*) FROM observation_batches WHERE scanner_id = %s", (SCANNER_ID,)).fetchone()[0])
    walk_start, walk_end = marks.get("walk_start", ended), marks.get("walk_end", ended)
    phases = {
        "before_walk": sampler.peak(started, walk_start),
        "walk": sampler.peak(walk_start, walk_end),
        "after_walk": sampler.peak(walk_end, ended),
    }
    ch.close_clients()
    pg.close_pools()
    return {
        "success": success,
        "rollups": rollups,
        "rss_imported": rss_imported,
        "rss_before": rss_before,
        "split_before": split_before,
        "peak_before": peak_before,
        "peak_after": peak_after,
        "own_peak": own_peak,
        "sampled_peak": sampler.peak(started, ended),
        "walk_rss": [sampler.at(walk_start + 5.0), sampler.at(walk_end - 0.1)],
        "phases": phases,
        "phase_seconds": {
            "before_walk": walk_start - started,
            "walk": walk_end - walk_start,
            "after_walk": ended - walk_end,
        },
        "wall_s": ended - started,
        "duration_s": meta.get("duration_s"),
        "window_duration_s": window_meta.get("window_duration_s"),
        "observed": meta.get("observed"),
        "candidates": meta.get("candidates"),
        "complete": meta.get("complete"),
        "checks": checks,
        "stored": stored,
        "batches": batches,
    }


def run_child(kind: str, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.observations", "--child", kind, *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    raise RuntimeError(f"child {kind} exited {done.returncode} without a result:\n{tail}")


def memory(pg: Postgres, n: int, root: Path) -> tuple[dict[str, Any], list[str]]:
    chdb_path = root / "clickhouse"
    objects = root / "mem-objects"
    setup = run_child("setup", "--chdb", str(chdb_path), "--candidates", str(n))
    name, url = pg.fresh("mem")
    schema_pool(url)  # the child's resources only check the schema
    parent_peak = peak_rss_bytes()  # the floor the child's ru_maxrss inherits
    sweep = run_child("sweep", "--chdb", str(chdb_path), "--pg-url", url, "--objects", str(objects), "--candidates", str(n))
    errors = []
    if setup["loaded"] != n or sweep["rollups"] != n:
        errors.append(f"memory: {setup['loaded']} rollup rows loaded, {sweep['rollups']} seen by the sweep, {n} wanted")
    if not sweep["success"]:
        errors.append("memory: the sweep run failed")
    if (sweep["observed"], sweep["candidates"], sweep["stored"]) != (n, n, n):
        errors.append(f"memory: observed {sweep['observed']}, candidates {sweep['candidates']}, {sweep['stored']} rows in Postgres; {n} wanted")
    if sweep["batches"] != math.ceil(n / PAGE_SIZE):
        errors.append(f"memory: {sweep['batches']} batch rows, {math.ceil(n / PAGE_SIZE)} wanted")
    if not all(sweep["checks"].values()):
        errors.append(f"memory: asset checks {sweep['checks']}")
    pg.drop(name)
    shutil.rmtree(objects, ignore_errors=True)
    shutil.rmtree(chdb_path, ignore_errors=True)
    return {"setup": setup, "sweep": sweep, "parent_peak": parent_peak}, errors


# --- report ------------------------------------------------------------------------


def report_throughput(t: dict[str, Any], n: int, n_naive: int) -> None:
    print(f"asset path runs (s, {n:,} observations): {', '.join(f'{s:.3f}' for s in t['asset_s'])}")
    print(f"naive runs (s, {n_naive:,} rows, autocommit): {', '.join(f'{s:.3f}' for s in t['naive_s'])}")
    print(f"naive in one transaction (info, 1 run, {n_naive:,} rows): {t['one_tx_s']:.3f} s = {t['one_tx_rate']:,.0f} obs/s")
    ratio = t["asset_rate"] / t["naive_rate"]
    print(
        f"observations/s through observations.walk (pages of {PAGE_SIZE}, median of {len(t['asset_s'])}): "
        f"{t['asset_rate']:,.0f}/s (goal: >= {RATE_GOAL:,.0f}/s) {verdict(t['asset_rate'] >= RATE_GOAL)}"
    )
    print(f"observations/s, naive one INSERT per row (autocommit, median): {t['naive_rate']:,.0f}/s (baseline, no goal)")
    print(
        f"asset path / naive ratio (rates; {n:,} vs {n_naive:,} rows): {ratio:.1f}x "
        f"(goal: >= {RATIO_GOAL:.0f}x) {verdict(ratio >= RATIO_GOAL)}"
    )


def report_memory(m: dict[str, Any], n: int) -> None:
    setup, s = m["setup"], m["sweep"]
    print(
        f"setup child: {setup['loaded']:,} rollup rows inserted + merged in {setup['seconds']:.1f} s "
        f"(its peak RSS {mb(setup['peak_rss']):,.0f} MB, not counted)"
    )
    anon, mapped = s["split_before"]
    print(
        f"sweep child RSS: after imports {mb(s['rss_imported']):,.0f} MB; just before the sweep {mb(s['rss_before']):,.0f} MB "
        f"= {mb(anon):,.0f} MB anonymous + {mb(mapped):,.0f} MB file-backed (mostly chDB's library); "
        f"peak so far {mb(s['peak_before']):,.0f} MB"
    )
    ph, secs = s["phases"], s["phase_seconds"]

    def phase(name: str) -> str:
        anon, mapped = ph[name]
        return f"{mb(anon + mapped):,.0f} MB ({mb(anon):,.0f} anon + {mb(mapped):,.0f} file), {secs[name]:.1f} s"

    print(
        "sweep phases, sampled RSS peak (every 50 ms) and seconds: "
        f"until the walk starts (scanner, candidates INSERT ... SELECT in chDB, stats): {phase('before_walk')}; "
        f"walk (chDB ORDER BY stream -> Postgres pages): {phase('walk')}; after (metadata, checks): {phase('after_walk')}"
    )
    (a0, f0), (a1, f1) = s["walk_rss"]
    print(
        f"RSS during the walk: {mb(a0 + f0):,.0f} MB 5 s after it starts, {mb(a1 + f1):,.0f} MB at its end "
        "(flat = the Python side streams)"
    )
    print(
        f"sweep: wall {s['wall_s']:.1f} s (asset duration_s {s['duration_s']}, window_duration_s {s['window_duration_s']}), "
        f"{n / s['wall_s']:,.0f} observations/s for the whole dg.materialize"
    )
    ok = (s["observed"], s["candidates"], s["stored"]) == (n, n, n) and s["success"] and all(s["checks"].values())
    print(
        f"correctness: {s['stored']:,} observations in Postgres, metadata observed {s['observed']:,} of "
        f"{s['candidates']:,} candidates, {s['batches']:,} batches, complete={s['complete']}, checks "
        f"{', '.join(f'{k}={v}' for k, v in sorted(s['checks'].items()))} {'PASS' if ok else 'FAIL'}"
    )
    print(f"RSS increase during the sweep (peak - RSS just before): {mb(s['peak_after'] - s['rss_before']):,.0f} MB (info)")
    print(
        f"cross-check: VmHWM (own peak, nothing inherited) {mb(s['own_peak']):,.0f} MB; "
        f"parent's peak when it spawned the child (inherited floor of ru_maxrss) {mb(m['parent_peak']):,.0f} MB"
    )
    peak = s["peak_after"]
    print(
        f"peak memory of the sweep process, {n:,} candidates (ru_maxrss): {mb(peak):,.0f} MB "
        f"({peak / 2**20:,.0f} MiB) (goal: < {MEMORY_GOAL_MB:,.0f} MB) {verdict(mb(peak) < MEMORY_GOAL_MB)}"
    )


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("psycopg", "psycopg-pool", "chdb", "dagster"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observations", type=int, default=200_000, help="candidates walked through the asset path (default 200,000)")
    parser.add_argument("--naive-observations", type=int, default=20_000, help="rows of the naive loop (default 20,000, capped at --observations)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions of each throughput measurement (default 3)")
    parser.add_argument("--candidates", type=int, default=1_000_000, help="candidates of the memory measurement (default 1,000,000)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one asset-path walk")
    parser.add_argument("--path", type=Path, default=None, help="work folder (default: a temp dir, removed at the end)")
    # Internal: the memory measurement's child processes.
    parser.add_argument("--child", choices=("setup", "sweep"), help=argparse.SUPPRESS)
    parser.add_argument("--chdb", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pg-url", help=argparse.SUPPRESS)
    parser.add_argument("--objects", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "setup":
        print(RESULT_MARK + json.dumps(child_setup(args.chdb, args.candidates)), flush=True)
        return 0
    if args.child == "sweep":
        print(RESULT_MARK + json.dumps(child_sweep(args.chdb, args.pg_url, args.objects, args.candidates), default=str), flush=True)
        return 0

    if args.observations < PAGE_SIZE or args.repeat < 1 or args.candidates < 1 or args.naive_observations < 1:
        parser.error(f"--observations must be >= {PAGE_SIZE}, --repeat, --candidates and --naive-observations >= 1")
    n_naive = min(args.naive_observations, args.observations)

    temp = None if args.path else tempfile.mkdtemp(prefix="observations-bench-")
    root = (args.path or Path(temp)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    pg = None
    try:
        pg = Postgres(root / "postgres")
        print("# observations benchmark")
        print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
        print(
            f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}; "
            f"load average at start {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; python {platform.python_version()}; "
            f"PostgreSQL {pg.version()} (pgserver, fsync on); {versions()}"
        )
        print(
            f"throughput: {args.observations:,} observations via observations.walk vs {n_naive:,} naive rows, "
            f"{args.repeat} interleaved repetitions, fresh database each; memory: "
            + ("skipped" if args.skip_memory else f"{args.candidates:,} candidates on {DAY}")
        )
        print(f"work folder: {root}")
        print(flush=True)
        # Memory first: the children inherit this process's peak RSS as their ru_maxrss floor,
        # and it is smallest now (no candidates generated, no Dagster imported here).
        m = None
        if not args.skip_memory:
            print(f"(measuring memory: sweeping {args.candidates:,} candidates in a child process...)", file=sys.stderr, flush=True)
            m, errs = memory(pg, args.candidates, root)
            errors += errs
        print("(measuring throughput...)", file=sys.stderr, flush=True)
        t, errs = throughput(pg, args.observations, n_naive, args.repeat, root / "objects")
        errors += errs
        report_throughput(t, args.observations, n_naive)
        if args.profile:
            print()
            print("cProfile of one asset-path walk (by own time):")
            for line in profile_walk(pg, candidate_rows(args.observations), root / "objects"):
                print(f"  {line}")
        if m is not None:
            print()
            report_memory(m, args.candidates)
        print()
        print(f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        from session_assets.stores import postgres

        postgres.close_pools()
        if pg is not None:
            pg.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    if errors:
        for error in errors:
            print(f"correctness FAIL: {error}")
        return 1
    print("correctness: PASS (row, batch and object counts as expected)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
