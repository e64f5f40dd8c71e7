"""Benchmark of the `session_counter_rollups` asset on generated events, chDB in-process.

Figures (all measured in one process, on one chDB path under a temp dir):

* full day, through the asset vs. directly: events/s of a full-day rollup when
  Dagster materializes the partition (`dg.materialize`, `dagster/backfill` tag,
  asset only, no check) versus the same `INSERT ... SELECT`
  (sql/clickhouse/rollup_sessions.sql, full, the asset's parameters) sent straight
  through the clickhouse-connect client. Repetitions interleaved (direct, asset,
  direct, asset, ...); ratio of medians, goal <= 1.3, for the whole
  `dg.materialize` call (wall) and for the asset body (its `duration_s`).
* incremental vs. full: after a non-backfill full materialization as of T1, each
  repetition inserts 1% new events and materializes as of T_next = T_prev + 1 h.
  80% of a batch's sessions continue random existing sessions, 20% are new
  sessions; timestamps lie inside the day, each session's events arrive together
  with inserted_at in (T_prev, T_next]. Ratio of the incremental median to the
  full-day asset median, goal <= 0.1 (`duration_s`; the wall version printed too).
* correctness: `rollup_check.sql` over the whole day as of the last run: no
  session may differ (exit code 1 otherwise; goals only print PASS/MISS).
* breakdown: the asset's statements, and parts of them, timed one by one; and
  the incremental statement over a time-local batch (continuing the most
  recently started sessions), for comparison with the random spread.

Untimed before every timed run: `OPTIMIZE TABLE session_counter_rollups FINAL`,
so every run starts from the same state (the day merged into one part). The
events table is merged once after loading; incremental batches stay in their own
parts, as fresh inserts do.

    python benchmarks/rollups.py [--events N] [--repeat R] [--path DIR]
    python -m benchmarks.rollups [--events N] [--repeat R] [--path DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from importlib.metadata import version as version_of
from pathlib import Path
from typing import Any, Callable, Mapping

if __package__ in (None, ""):  # `python benchmarks/rollups.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dagster as dg  # noqa: E402
import numpy as np  # noqa: E402

from session_assets.stores import clickhouse as ch  # noqa: E402
from session_assets.stores import sql  # noqa: E402
from session_assets.assets.events import events  # noqa: E402
from session_assets.assets.rollups import day_start, rollup_params, session_counter_rollups  # noqa: E402
from session_assets.core.coverage import LATE_HORIZON_DAYS, VISIBILITY_LAG as INCREMENTAL_OVERLAP  # noqa: E402
from benchmarks.bulk_events import generate_bulk_events, uuid_bytes_to_strings  # noqa: E402
from session_assets.stores.events_io import EVENT_COLUMNS, insert_events  # noqa: E402
from session_assets.partitions import daily_partitions_def  # noqa: E402
from session_assets.resources import ClickHouseResource  # noqa: E402
from session_assets.core.run_context import AS_OF_TAG, BACKFILL_TAG, latest_materialization  # noqa: E402

UTC = timezone.utc
DAY = date(2025, 1, 15)
CHUNK_ROWS = 500_000
SWEEP = timedelta(hours=1)  # time between two incremental materializations
EXISTING_SHARE = 0.8  # share of a new batch's sessions that continue existing sessions
FULL_GOAL = 1.3
INCREMENTAL_GOAL = 0.1
ROLLUPS = "session_counter_rollups"
ROLLUPS_TABLE = "session_counter_rollups_v2"  # the asset's table (migration 007)
# Keep Dagster's console quiet; every event still goes to the instance's event log.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# --- helpers ---------------------------------------------------------------------


def us(moment: datetime) -> int:
    """Microseconds since the epoch; naive values (as chDB returns them) are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def insertable(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Bulk columns in shapes clickhouse-connect writes correctly.

    UUIDs as strings (it writes numpy 'V16' as zero UUIDs) and DateTime64 as int
    microseconds (it cannot write numpy datetime64 values at all).
    """
    out = dict(columns)
    if isinstance(out["uuid"], np.ndarray) and out["uuid"].dtype.kind == "V":
        out["uuid"] = uuid_bytes_to_strings(out["uuid"])
    for name in ("timestamp", "inserted_at"):
        value = out[name]
        if isinstance(value, np.ndarray):
            ticks = value.astype("datetime64[us]").astype(np.int64) if value.dtype.kind == "M" else value
            out[name] = ticks.tolist()
    return out


def insert_chunked(resource: ClickHouseResource, columns: Mapping[str, Any]) -> None:
    client = resource.client()
    rows = len(columns["event"])
    for lo in range(0, rows, CHUNK_ROWS):
        insert_events(client, resource.events, {name: columns[name][lo : lo + CHUNK_ROWS] for name in EVENT_COLUMNS})


def bind(resource: ClickHouseResource, text: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters `ClickHouseResource.command` would bind for `text`."""
    merged = {**resource.table_params(), **params}
    return {k: v for k, v in merged.items() if "{" + k + ":" in text}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def verdict(value: float, goal: float) -> str:
    return "PASS" if value <= goal else "MISS"


@dataclass
class AssetRun:
    wall_s: float
    duration_s: float
    mode: str
    rows: int
    sessions: int
    events: int


class Bench:
    def __init__(self, resource: ClickHouseResource, day: date, instance: dg.DagsterInstance) -> None:
        self.resource = resource
        self.client = resource.client()
        self.day = day
        self.instance = instance
        self.day_start = day_start(day)
        self.day_end = self.day_start + timedelta(days=1)

    # The statements, as the asset issues them for a day without late days.
    def rollup_params(self, *, full: bool, as_of: datetime, since: datetime | None = None) -> dict[str, Any]:
        """The asset's own parameters for this day: whole, or re-rolled from `since`."""
        if full:
            return {**rollup_params(as_of, [self.day], {}), "since": as_of}
        return {**rollup_params(as_of, [], {self.day: since or as_of}), "since": since or as_of}

    def command(self, name: str, **params: Any) -> Any:
        text = sql.load(f"clickhouse/{name}.sql")
        return self.client.command(text, parameters=bind(self.resource, text, params))

    def query(self, name: str, **params: Any) -> Any:
        text = sql.load(f"clickhouse/{name}.sql")
        return self.client.query(text, parameters=bind(self.resource, text, params))

    def settle(self) -> None:
        """Untimed: merge the rollup table, so each timed run starts from the same state."""
        self.client.command(f"OPTIMIZE TABLE {ROLLUPS_TABLE} FINAL")

    def baseline(self, as_of: datetime) -> float:
        seconds, _ = timed(lambda: self.command("rollup_sessions", **self.rollup_params(full=True, as_of=as_of)))
        return seconds

    def materialize(self, as_of: datetime, *, backfill: bool) -> AssetRun:
        tags = {AS_OF_TAG: as_of.isoformat()}
        if backfill:
            tags[BACKFILL_TAG] = "benchmark"
        wall, result = timed(
            lambda: dg.materialize(
                [events, session_counter_rollups],
                selection=dg.AssetSelection.assets(session_counter_rollups.key),
                partition_key=self.day.isoformat(),
                resources={"clickhouse": self.resource},
                instance=self.instance,
                tags=tags,
                run_config=RUN_CONFIG,
            )
        )
        if not result.success:
            raise RuntimeError("materialization failed")
        (materialization,) = result.asset_materializations_for_node(ROLLUPS)
        meta = {key: entry.value for key, entry in materialization.metadata.items()}
        return AssetRun(
            wall_s=wall,
            duration_s=float(meta["duration_s"]),
            mode=str(meta["mode"]),
            rows=int(meta["rows"]),
            sessions=int(meta["sessions"]),
            events=int(meta["events"]),
        )

    def new_batch(
        self, n_events: int, seed: int, t_prev: datetime, t_next: datetime, t1: datetime, *, recent: bool = False
    ) -> tuple[dict[str, Any], int, int]:
        """New events for the day: (columns, existing sessions continued, new sessions).

        A generated batch whose sessions are, for EXISTING_SHARE of them, moved onto
        sessions loaded before T1 (same team, distinct_id and session id, timestamps
        continuing after that session's last event): random ones; or, with `recent`,
        all of them onto the most recently started sessions. The rest stay new
        sessions (ids and timestamps anywhere in the day). Each session's
        events arrive together: inserted_at = a per-session arrival time spread
        over (t_prev, t_next - 10 s] plus 0-10 s.
        """
        rng = np.random.default_rng(seed)
        batch = generate_bulk_events(n_events=n_events, day=self.day, seed=seed)
        sid = batch["$session_id"]
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        sizes = np.diff(np.r_[starts, len(sid)])
        n_sessions = len(starts)
        wanted = n_sessions if recent else int(round(n_sessions * EXISTING_SHARE))
        pick = (
            "SELECT team_id, `$session_id`, any(distinct_id), toUnixTimestamp64Micro(max(timestamp)) "
            "FROM {events_db:Identifier}.{events_table:Identifier} "
            "WHERE timestamp >= {start:DateTime64(6, 'UTC')} AND timestamp < {end:DateTime64(6, 'UTC')} "
            "AND inserted_at <= {t1:DateTime64(6, 'UTC')} "
            "GROUP BY team_id, `$session_id` "
            + ("ORDER BY min(timestamp) DESC " if recent else "ORDER BY cityHash64(`$session_id`, {seed:UInt64}) ")
            + "LIMIT {n:UInt64}"
        )
        params = {"start": self.day_start, "end": self.day_end, "t1": t1, "seed": seed, "n": wanted}
        existing = self.client.query(pick, parameters=bind(self.resource, pick, params)).result_rows
        moved = rng.choice(n_sessions, len(existing), replace=False)

        ts = batch["timestamp"].astype("datetime64[us]").astype(np.int64)
        team = batch["team_id"].copy()
        distinct = batch["distinct_id"].copy()
        session = sid.copy()
        props = batch["properties"].copy()
        last_us = us(self.day_end) - 1
        for j, (team_id, session_id, distinct_id, last_ts) in zip(moved.tolist(), existing):
            rows = slice(starts[j], starts[j] + sizes[j])
            old = sid[starts[j]]
            offsets = ts[rows] - ts[rows].min()
            ts[rows] = np.minimum(int(last_ts) + 1_000_000 + offsets, last_us)
            team[rows] = team_id
            distinct[rows] = distinct_id
            session[rows] = session_id
            props[rows] = [p.replace(old, session_id, 1) for p in props[rows]]
        jitter = 10_000_000
        arrival = us(t_prev) + rng.integers(1, us(t_next) - us(t_prev) - jitter + 1, n_sessions)
        inserted = np.repeat(arrival, sizes) + rng.integers(0, jitter + 1, n_events)
        columns = {
            "uuid": batch["uuid"],
            "event": batch["event"],
            "properties": props,
            "timestamp": ts,
            "team_id": team,
            "distinct_id": distinct,
            "$session_id": session,
            "inserted_at": inserted,
        }
        return insertable(columns), len(existing), n_sessions - len(existing)


# --- the benchmark ------------------------------------------------------------------


def run(n_events: int, repeat: int, path: Path, instance: dg.DagsterInstance) -> int:
    day = max(DAY, daily_partitions_def.start.date() + timedelta(days=1))
    resource = ClickHouseResource(url=f"chdb://{path / 'clickhouse'}", database=f"bench_{uuid.uuid4().hex[:8]}")
    resource.migrate()
    try:
        return measure(resource, day, n_events, repeat, path, instance)
    finally:
        # The database is the benchmark's own; drop it so a --path folder does not grow.
        resource.client().command("DROP DATABASE IF EXISTS {db:Identifier}", parameters={"db": resource.database})


def measure(
    resource: ClickHouseResource, day: date, n_events: int, repeat: int, path: Path, instance: dg.DagsterInstance
) -> int:
    client = resource.client()
    version = client.query("SELECT version()").result_rows[0][0]
    print("# session_counter_rollups benchmark")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}; chdb {version_of('chdb')} (ClickHouse {version}); dagster {dg.__version__}"
    )
    print(f"events: {n_events:,} on {day} (UTC); repetitions: {repeat}; chDB path: {path}")
    print()

    # 1. Load.
    gen_s, columns = timed(lambda: insertable(generate_bulk_events(n_events=n_events, day=day)))
    load_s, _ = timed(lambda: insert_chunked(resource, columns))
    del columns
    table = {"db": resource.events.database, "t": resource.events.table}
    merge_s, _ = timed(lambda: client.command("OPTIMIZE TABLE {db:Identifier}.{t:Identifier} FINAL", parameters=table))
    loaded = client.query("SELECT count() FROM {db:Identifier}.{t:Identifier}", parameters=table).result_rows[0][0]
    assert loaded == n_events, (loaded, n_events)
    print(f"generate (not in any ratio): {gen_s:.2f} s ({n_events / gen_s:,.0f} events/s, incl. conversion for insert)")
    print(
        f"load (not in any ratio): {load_s:.2f} s ({n_events / load_s:,.0f} events/s, {CHUNK_ROWS:,}-row inserts); "
        f"merge: {merge_s:.2f} s",
        flush=True,
    )

    bench = Bench(resource, day, instance)
    t1 = bench.day_end + timedelta(hours=1)  # after every generated inserted_at

    # Warm-up (untimed): first statement and first Dagster run pay one-time costs.
    bench.settle()
    bench.baseline(t1)
    bench.settle()
    warm = bench.materialize(t1, backfill=True)
    assert warm.mode == "full" and warm.events == n_events, warm

    # 2 + 3. Full day, interleaved: baseline, asset, baseline, asset, ...
    base_s: list[float] = []
    full_runs: list[AssetRun] = []
    for i in range(1, repeat + 1):
        bench.settle()
        base_s.append(bench.baseline(t1))
        bench.settle()
        run_ = bench.materialize(t1, backfill=True)
        assert run_.mode == "full" and run_.events == n_events, run_
        full_runs.append(run_)
        print(
            f"full day #{i}: direct {base_s[-1]:.3f} s; "
            f"asset wall {run_.wall_s:.3f} s, duration_s {run_.duration_s:.3f}",
            flush=True,
        )
    sessions = full_runs[-1].sessions
    base_med = statistics.median(base_s)
    wall_med = statistics.median(r.wall_s for r in full_runs)
    body_med = statistics.median(r.duration_s for r in full_runs)

    # 4. Incremental: one non-backfill full run as of T1, then 1% batches.
    bench.settle()
    first = bench.materialize(t1, backfill=False)
    assert first.mode == "full", first
    print(f"first non-backfill run as of T1 (full): wall {first.wall_s:.3f} s, duration_s {first.duration_s:.3f}")
    n_new = max(1, n_events // 100)
    incr_runs: list[AssetRun] = []
    continued: list[int] = []
    fresh: list[int] = []
    t_prev = t1
    for i in range(1, repeat + 1):
        t_next = t1 + i * SWEEP
        batch, n_old, n_fresh = bench.new_batch(n_new, 1000 + i, t_prev, t_next, t1)
        insert_chunked(resource, batch)
        continued.append(n_old)
        fresh.append(n_fresh)
        bench.settle()
        run_ = bench.materialize(t_next, backfill=False)
        assert run_.mode == "incremental", run_
        incr_runs.append(run_)
        print(
            f"incremental #{i}: +{n_new:,} events ({n_old:,} continued + {n_fresh:,} new sessions), "
            f"{run_.rows:,} rows recomputed; wall {run_.wall_s:.3f} s, duration_s {run_.duration_s:.3f}",
            flush=True,
        )
        t_prev = t_next
    last_as_of = t_prev
    incr_body_med = statistics.median(r.duration_s for r in incr_runs)
    incr_wall_med = statistics.median(r.wall_s for r in incr_runs)
    total_events = n_events + repeat * n_new

    # Correctness: the whole day against a fresh aggregation as of the last run.
    check_s, check = timed(
        lambda: resource.query(
            "rollup_check", day=day, day_start=bench.day_start, day_end=bench.day_end, as_of=last_as_of, full=True
        ).result_rows[0]
    )
    compared, without_events, not_rolled_up, differ, examples = check
    correct = without_events == 0 and not_rolled_up == 0 and differ == 0 and incr_runs[-1].events == total_events

    # Where the time goes: the asset's statements one by one (same parameters).
    try:
        breakdown = diagnose(bench, last_as_of, last_as_of - SWEEP, n_new)
    except Exception as error:  # a report, not a test: keep the figures
        breakdown = [f"unavailable ({type(error).__name__}: {str(error)[:300]})"]

    print()
    print(f"full-day sessions: {sessions:,} ({n_events / sessions:.1f} events per session)")
    print(
        f"incremental batches: {n_new:,} events each (1%), continuing {statistics.median(continued):,.0f} existing "
        f"+ {statistics.median(fresh):,.0f} new sessions (medians); sweep every {SWEEP}, overlap {INCREMENTAL_OVERLAP}"
    )
    print(
        f"incremental rows recomputed: median {statistics.median(r.rows for r in incr_runs):,.0f} "
        f"({statistics.median(r.rows for r in incr_runs) / sessions:.1%} of the day's sessions)"
    )
    overhead_full = statistics.median(r.wall_s - r.duration_s for r in full_runs)
    overhead_incr = statistics.median(r.wall_s - r.duration_s for r in incr_runs)
    print(f"Dagster overhead (wall - duration_s), median: full {overhead_full:.3f} s, incremental {overhead_incr:.3f} s")
    for line in breakdown:
        print(f"breakdown: {line}")
    print()
    print(f"baseline full-day INSERT ... SELECT: {base_med:.3f} s median ({n_events / base_med:,.0f} events/s)")
    print(f"asset full-day wall (dg.materialize): {wall_med:.3f} s median ({n_events / wall_med:,.0f} events/s)")
    print(f"asset full-day body (duration_s): {body_med:.3f} s median ({n_events / body_med:,.0f} events/s)")
    print(f"incremental wall (dg.materialize): {incr_wall_med:.3f} s median")
    print(f"incremental body (duration_s): {incr_body_med:.3f} s median")
    ratio_wall = wall_med / base_med
    ratio_body = body_med / base_med
    ratio_incr = incr_body_med / body_med
    ratio_incr_wall = incr_wall_med / wall_med
    for label, value, goal in (
        ("full-day asset/direct ratio, wall", ratio_wall, FULL_GOAL),
        ("full-day asset/direct ratio, duration_s", ratio_body, FULL_GOAL),
        ("incremental/full ratio, duration_s", ratio_incr, INCREMENTAL_GOAL),
        ("incremental/full ratio, wall", ratio_incr_wall, INCREMENTAL_GOAL),
    ):
        print(f"{label}: {value:.3f} (goal: <= {goal}) {verdict(value, goal)}")
    print(
        f"correctness (rollup_check, whole day as of {last_as_of.isoformat()}): {compared:,} sessions compared, "
        f"{differ} differ, {not_rolled_up} not rolled up, {without_events} without events, "
        f"{incr_runs[-1].events:,}/{total_events:,} events ({check_s:.2f} s) {'PASS' if correct else 'FAIL'}"
    )
    if not correct:
        print(f"examples: {list(examples)}")
    return 0 if correct else 1


def diagnose(bench: Bench, as_of: datetime, previous: datetime, n_new: int, samples: int = 3) -> list[str]:
    """Where an asset run's time goes: its statements, and parts of them, timed one by one.

    Uses the last incremental window (`previous` - overlap, `as_of`]; each figure is
    the median of `samples` runs, the rollup table merged before each. Re-running
    the incremental INSERT rewrites identical rows (same version), so it is harmless.
    Finally adds a time-local batch after `as_of` (continuing the most recently
    started sessions) and times the incremental INSERT over it alone.
    """
    since = previous - INCREMENTAL_OVERLAP
    incremental = bench.rollup_params(full=False, as_of=as_of, since=since)
    full = bench.rollup_params(full=True, as_of=as_of)
    text = sql.load("clickhouse/rollup_sessions.sql")
    # The statement's SELECT and its FROM ... WHERE ..., cut out of the file itself.
    select = "SELECT" + text.split("\nSELECT", 1)[1]
    where = "FROM" + select.split("\nFROM", 1)[1].split("\nGROUP BY", 1)[0]
    # The same SELECT with every JSON extraction replaced by a constant: `properties` unread.
    no_json = re.sub(r"JSONExtractRaw\(properties, '[^']*'\)", "''", select)
    no_json = re.sub(r"JSONExtractString\(properties, '[^']*'\)", "''", no_json)
    no_json = re.sub(r"JSONExtract\(properties, '[^']*', '[^']*'\)", "toInt64(0)", no_json)
    session_only = where.replace(
        "(team_id, `$session_id`, toDate(timestamp)) IN (\n          SELECT team_id, `$session_id`, toDate(timestamp)",
        "`$session_id` IN (\n          SELECT `$session_id`",
    )
    touched = (
        "SELECT count() FROM (SELECT DISTINCT team_id, `$session_id`, toDate(timestamp) "
        "FROM {events_db:Identifier}.{events_table:Identifier} "
        "WHERE timestamp >= {range_start:DateTime64(6, 'UTC')} AND timestamp < {range_end:DateTime64(6, 'UTC')} "
        "AND toDate(timestamp) IN {days:Array(Date)} "
        "AND inserted_at > {since:DateTime64(6, 'UTC')} AND inserted_at <= {as_of:DateTime64(6, 'UTC')})"
    )

    def raw(statement: str, params: Mapping[str, Any]) -> Callable[[], Any]:
        return lambda: bench.client.query(statement, parameters=bind(bench.resource, statement, params))

    def median_s(fn: Callable[[], Any], settle: bool = True) -> tuple[float, Any]:
        times, result = [], None
        for _ in range(samples):
            if settle:
                bench.settle()
            seconds, result = timed(fn)
            times.append(seconds)
        return statistics.median(times), result

    def value(result: Any) -> str:
        rows = getattr(result, "result_rows", None)
        counted = rows and len(rows[0]) == 1 and isinstance(rows[0][0], int) and rows[0][0] < 2**40
        return f" -> {rows[0][0]:,} rows" if counted else ""

    def granules(params: Mapping[str, Any]) -> str:
        """'kept/total' granules of the primary-key step of the incremental statement's plan."""
        explain = f"EXPLAIN indexes = 1 {select}"
        section, kept = "", []
        for (line,) in raw(explain, params)().result_rows:
            stripped = line.strip()
            if stripped in ("MinMax", "Partition", "PrimaryKey", "Skip"):
                section = stripped
            elif stripped.startswith("Granules:") and section == "PrimaryKey":
                kept.append(stripped.split(":", 1)[1].strip())
        return ", ".join(kept) or "?"

    lines = []

    def add(label: str, fn: Callable[[], Any], settle: bool = True) -> float:
        seconds, result = median_s(fn, settle)
        lines.append(f"{label}: {seconds:.3f} s{value(result)}")
        return seconds

    def stats() -> Any:
        return bench.query("rollup_partition_stats", day=bench.day, as_of=as_of)

    add(
        "asset body, previous covered_until from the Dagster instance",
        lambda: latest_materialization(bench.instance, session_counter_rollups.key, bench.day.isoformat()),
        settle=False,
    )
    add(
        "incremental rollup_late_days",
        lambda: bench.query(
            "rollup_late_days",
            late_days=[bench.day - timedelta(days=n) for n in range(LATE_HORIZON_DAYS, 0, -1)],
            late_since=[since] * LATE_HORIZON_DAYS,
            min_since=since,
            as_of=as_of,
            range_start=bench.day_start - timedelta(days=LATE_HORIZON_DAYS),
            range_end=bench.day_start,
        ),
    )
    add("incremental touched-keys subquery alone (distinct keys)", raw(touched, incremental))
    add("incremental rollup_sessions INSERT (whole statement)", lambda: bench.command("rollup_sessions", **incremental))
    lines.append(f"incremental statement, granules kept by the primary key: {granules(incremental)}")
    add("  its row filter alone: count() (key columns + tuple IN)", raw(f"SELECT count() {where}", incremental))
    if session_only != where:
        add("  same filter with a `$session_id`-only IN", raw(f"SELECT count() {session_only}", incremental))
    read_properties = f"SELECT sum(cityHash64(properties)) {where}"
    add("  its row filter + reading properties: sum(cityHash64(properties))", raw(read_properties, incremental))
    if "properties" not in no_json.split("\nFROM", 1)[0]:
        add("  its SELECT with the JSON extractions replaced by constants", raw(no_json, incremental))
        add("  its SELECT as written", raw(select, incremental))
    bench.settle()
    bench.command("rollup_sessions", **incremental)
    add("rollup_partition_stats FINAL after an incremental INSERT", stats, settle=False)
    add("full rollup_sessions INSERT (whole statement)", lambda: bench.command("rollup_sessions", **full))
    add("  full-day row filter + reading properties: sum(cityHash64(properties))", raw(read_properties, full))
    if "properties" not in no_json.split("\nFROM", 1)[0]:
        add("  full-day SELECT with the JSON extractions replaced by constants", raw(no_json, full))
    bench.settle()
    bench.command("rollup_sessions", **full)
    add("rollup_partition_stats FINAL right after a full INSERT (2 versions of the day)", stats, settle=False)

    # Time-local arrivals: the batch continues the most recently started sessions.
    start, end = as_of + 2 * INCREMENTAL_OVERLAP, as_of + SWEEP
    batch, continued, _ = bench.new_batch(n_new, 4242, start, end, previous, recent=True)
    insert_chunked(bench.resource, batch)
    local = bench.rollup_params(full=False, as_of=end, since=start - timedelta(microseconds=1))
    add(
        f"time-local batch ({n_new:,} events continuing the {continued:,} most recently started sessions), "
        "incremental rollup_sessions INSERT",
        lambda: bench.command("rollup_sessions", **local),
    )
    lines.append(f"  its granules kept by the primary key: {granules(local)}")
    bench.settle()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000, help="events for the day (default 5,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions of each figure (default 5)")
    parser.add_argument("--path", type=Path, default=None, help="chDB folder (default: a temp dir, removed at the end)")
    args = parser.parse_args(argv)
    if args.events < 100 or args.repeat < 1:
        parser.error("--events must be >= 100 and --repeat >= 1")

    temp = None if args.path else tempfile.mkdtemp(prefix="rollup-bench-")
    path = (args.path or Path(temp)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    try:
        with dg.instance_for_test() as instance:
            return run(args.events, args.repeat, path, instance)
    finally:
        ch.close_clients()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
