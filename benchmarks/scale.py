"""Scale of a sweep tick with the real daemon and run queue: 10, 100, 1,000 scanners.

For each size, a fresh embedded stack in its own home (chDB, pgserver, a local
object folder) gets one generated day of events for 10 teams (`demo_data`,
ending now), N enabled scanners of mixed kinds and filters spread over the
teams (starting 1 h before the data), and the rollups of the data's days
(materialized here, as `dev` does on a first start). Then `session-assets dev`
runs (webserver, daemon, the sensor every `--interval` seconds, the queued run
coordinator with 1 run at a time, every run in a process of its own) and the
benchmark watches `--ticks` sensor ticks from its own instance:

* per tick: runs launched (rollups, batches, retries), partitions swept, wall
  time from the tick (its as-of) to the end of its last run: the goal is that
  the tick completes within the 5-minute cadence;
* CPU of every process `dev` started (read from /proc, children reaped
  included; pgserver apart), split into the work (the batch bodies' own CPU,
  logged by each batch run, plus the rollup bodies' duration) and the rest,
  Dagster's overhead (sensor, launch, run processes' start-up, event writes):
  goal <= 30% of one core at the 5-minute cadence for 1,000 scanners;
* the ratio of a tick's cost at 1,000 scanners to that at 10: goal <= 10x.

The first tick sweeps every partition from the scanners' start (a catch-up);
the figures quote the median of the later, steady ticks, and the first apart.

    python benchmarks/scale.py [--scanners 10 100 1000] [--ticks 4] [--interval 60]

Exit code 0 whatever the goals; 1 when a run failed or a tick never finished.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402

from session_assets.stores import clickhouse  # noqa: E402
from session_assets.commands import demo, demo_data  # noqa: E402
from session_assets import settings  # noqa: E402
from session_assets.stores.events_io import insert_events  # noqa: E402
from session_assets.partitions import scanner_partitions_def  # noqa: E402
from session_assets.core.run_context import AS_OF_TAG  # noqa: E402
from session_assets.scanners import parse_scanner  # noqa: E402
from session_assets.scanners import store as scanner_store  # noqa: E402

TEAMS = 10
CADENCE_S = 300.0
FILTERS: list[tuple[str, dict[str, Any], dict[str, Any], float]] = [
    ("match", {}, {}, 0.2),
    ("match", {"counters": {"pageview_count": {"gte": 2}}}, {}, 1.0),
    ("match", {"counters": {"rageclick_count": {"gte": 1}}}, {}, 1.0),
    ("threshold", {"counters": {"exception_count": {"gte": 1}}}, {"score": "exception_count * 2 + rageclick_count", "flag_at": 3}, 1.0),
    ("match", {"min_duration_seconds": 60}, {}, 0.5),
    ("match", {"events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "icontains", "value": "/checkout"}]}]}, {}, 1.0),
    ("ai_cost", {"counters": {"ai_generation_count": {"gte": 1}}}, {"max_cost_usd": 0.05, "max_total_tokens": 20000}, 1.0),
    ("match", {"events": [{"event": "$autocapture"}]}, {}, 1.0),
    ("match", {"max_duration_seconds": 600, "counters": {"event_count": {"gte": 3}}}, {}, 1.0),
    ("match", {"counters": {"event_count": {"gte": 10}}}, {}, 0.5),
]
CPU_LINE = re.compile(r"swept (\d+) of (\d+) partitions .* in ([\d.]+) s, ([\d.]+) CPU-s")


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def say(text: str = "") -> None:
    print(text, flush=True)


def scanners(count: int, start_at: datetime) -> list[Any]:
    out = []
    for n in range(count):
        kind, flt, rule, rate = FILTERS[n % len(FILTERS)]
        out.append(
            parse_scanner(
                {"id": f"scale-{n:04d}", "team_id": 1 + n % TEAMS, "name": f"scale scanner {n}", "kind": kind,
                 "filter": flt, "rule": rule, "sample_rate": rate, "start_at": start_at.isoformat()},
                source="benchmark",
            )
        )  # fmt: skip
    return out


def tree_cpu(home: Path) -> tuple[float, float]:
    """(CPU-s of the processes `dev` started, of the embedded Postgres), children reaped included."""
    mark = f"SESSION_ASSETS_HOME={home}".encode()
    tick = os.sysconf("SC_CLK_TCK")
    ours = pg = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        cpu = sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        if name == "postgres":
            pg += cpu
        else:
            ours += cpu
    return ours, pg


def prepare(home: Path, count: int, now: datetime) -> None:
    """The stack, the events, the scanners and the rollups, as `dev` finds them on a first start."""
    from session_assets.commands import stack as stack_module
    from session_assets.definitions import build_definitions
    from session_assets.resources import build_resources

    os.environ[settings.HOME_VAR] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    stack_module.bring_up()
    resources = build_resources(deferred=False)
    resources["clickhouse"].migrate()
    columns = demo_data.generate_events(days=1, now=now, seed=11, teams=tuple(range(1, TEAMS + 1)))
    insert_events(resources["clickhouse"].client(), resources["clickhouse"].events, columns)
    start_at = min(columns["timestamp"]) - timedelta(hours=1)
    pool = resources["postgres"].pool()
    made = scanners(count, start_at)
    scanner_store.save_all(pool, made)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(scanner_partitions_def.name, [s.id for s in made])
        days = demo.demo_days(now, 2)
        demo.materialize_rollups(build_definitions(), instance, days, now)
    clickhouse.close_clients()
    say(f"  {len(columns['event']):,} events, {TEAMS} teams, {count} scanners from {start_at:%Y-%m-%d %H:%M}")


def tick_runs(instance: dg.DagsterInstance) -> dict[str, list[Any]]:
    """Sensor runs by tick (their as-of tag)."""
    ticks: dict[str, list[Any]] = {}
    for record in instance.get_run_records(dg.RunsFilter(tags={"session_assets/launched_by": "sensor"}), limit=5000):
        ticks.setdefault(record.dagster_run.tags[AS_OF_TAG], []).append(record)
    return ticks


FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def tick_figures(instance: dg.DagsterInstance, as_of: str, records: list[Any]) -> dict[str, Any]:
    batch_cpu = batch_wall = 0.0
    partitions = failed = 0
    rollup_s = 0.0
    for record in records:
        run = record.dagster_run
        for entry in instance.all_logs(run.run_id):
            found = CPU_LINE.search(entry.user_message or "")
            if found:
                partitions += int(found.group(2))
                failed += int(found.group(2)) - int(found.group(1))
                batch_wall += float(found.group(3))
                batch_cpu += float(found.group(4))
            event = entry.dagster_event
            if event is not None and event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                meta = event.step_materialization_data.materialization.metadata
                if "covered_until" in meta and "duration_s" in meta:
                    rollup_s += float(meta["duration_s"].value)
    start = datetime.fromisoformat(as_of).timestamp()
    return {
        "runs": len(records),
        "batches": sum("session_assets/batch" in r.dagster_run.tags for r in records),
        "failed_runs": sum(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in records),
        "partitions": partitions,
        "failed_partitions": failed,
        "wall": max(r.end_time for r in records) - start,
        "work_cpu": batch_cpu + rollup_s,
        "batch_wall": batch_wall,
    }


def measure(count: int, ticks: int, interval: int, tmp: Path) -> dict[str, Any] | None:
    say(f"## {count} scanners")
    home = tmp / f"home-{count}"
    now = datetime.now(timezone.utc)
    env_before = dict(os.environ)
    prepare(home, count, now)
    env = {**os.environ, settings.SWEEP_INTERVAL_VAR: str(interval), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    log = open(tmp / f"dev-{count}.log", "w")
    port = 3300 + count % 1000
    dev = subprocess.Popen(
        [sys.executable, "-m", "session_assets.cli", "dev", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    ok = True
    try:
        with dg.DagsterInstance.get() as instance:
            done: set[str] = set()
            cpu_at: dict[str, tuple[float, float]] = {}
            deadline = time.monotonic() + ticks * max(interval, 60) + 1800
            previous_cpu = tree_cpu(home)
            while len(rows) < ticks and time.monotonic() < deadline:
                if dev.poll() is not None:
                    say(f"  dev exited with {dev.returncode}; see {log.name}")
                    return None
                by_tick = tick_runs(instance)
                for as_of in sorted(by_tick):
                    if as_of in done:
                        continue
                    records = by_tick[as_of]
                    cpu_at.setdefault(as_of, previous_cpu)
                    if all(r.dagster_run.status in FINISHED for r in records):
                        # Every run of the tick ended: the CPU since the tick's first record.
                        cpu_now = tree_cpu(home)
                        figures = tick_figures(instance, as_of, records)
                        figures["cpu"] = cpu_now[0] - cpu_at[as_of][0]
                        figures["pg_cpu"] = cpu_now[1] - cpu_at[as_of][1]
                        figures["overhead_cpu"] = figures["cpu"] - figures["work_cpu"]
                        figures["as_of"] = as_of
                        rows.append(figures)
                        done.add(as_of)
                        previous_cpu = cpu_now
                        ok &= figures["failed_runs"] == 0
                        say(
                            f"  tick {as_of[11:19]}: {figures['runs']} runs ({figures['batches']} batches), "
                            f"{figures['partitions']} partitions, done {figures['wall']:.1f} s after the tick; "
                            f"CPU {figures['cpu']:.1f} s (work {figures['work_cpu']:.1f}, overhead "
                            f"{figures['overhead_cpu']:.1f}; Postgres {figures['pg_cpu']:.1f})"
                        )
                        break
                    break  # ticks in order: wait for this one
                time.sleep(2)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
        os.environ.clear()
        os.environ.update(env_before)
    if len(rows) < ticks:
        say(f"  CORRECTNESS: only {len(rows)} of {ticks} ticks finished")
        return None
    # A tick that found the previous batch still running requests nothing for its partitions
    # (they are in flight): it is listed above, not counted as a steady tick.
    steady = [r for r in rows[1:] if r["partitions"]] or rows[1:]
    summary = {
        "count": count,
        "first": rows[0],
        "wall": median(r["wall"] for r in steady),
        "cpu": median(r["cpu"] for r in steady),
        "work_cpu": median(r["work_cpu"] for r in steady),
        "overhead_cpu": median(r["overhead_cpu"] for r in steady),
        "runs": median(r["runs"] for r in steady),
        "partitions": median(r["partitions"] for r in steady),
        "ok": ok,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scanners", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--ticks", type=int, default=4, help="ticks watched per size (the first is a catch-up)")
    parser.add_argument("--interval", type=int, default=60, help="sensor interval, seconds")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        for count in args.scanners:
            result = measure(count, args.ticks, args.interval, Path(tmp))
            if result is None:
                return 1
            results.append(result)
    say()
    say("## figures (medians of the steady ticks; the first tick, a catch-up from the scanners' start, apart)")
    say(f"  {'scanners':>8s} {'runs':>5s} {'parts':>6s} {'wall s':>7s} {'cpu s':>6s} {'work':>6s} {'overhead':>8s} {'ovh %core':>9s}   first tick: parts, wall s, cpu s")
    for r in results:
        f = r["first"]
        say(
            f"  {r['count']:8d} {r['runs']:5.0f} {r['partitions']:6.0f} {r['wall']:7.1f} {r['cpu']:6.1f} {r['work_cpu']:6.1f} "
            f"{r['overhead_cpu']:8.1f} {100 * r['overhead_cpu'] / CADENCE_S:8.1f}%   {f['partitions']}, {f['wall']:.1f}, {f['cpu']:.1f}"
        )
    by_count = {r["count"]: r for r in results}
    biggest = by_count[max(by_count)]
    size = f"{biggest['count']:,}"
    met = biggest["wall"] <= CADENCE_S
    say(f"scale {size}-scanner steady tick, done after the tick: {biggest['wall']:.0f} s (goal <= 300 s, the cadence) {verdict(met)}")
    met = biggest["first"]["wall"] <= CADENCE_S
    say(f"scale {size}-scanner first (catch-up) tick, done after the tick: {biggest['first']['wall']:.0f} s (goal <= 300 s) {verdict(met)}")
    share = 100 * biggest["overhead_cpu"] / CADENCE_S
    say(f"scale {size}-scanner Dagster overhead per tick: {share:.1f}% of one core (goal <= 30%) {verdict(share <= 30)}")
    smallest = by_count[min(by_count)]
    if smallest is not biggest:
        ratio = biggest["cpu"] / smallest["cpu"]
        say(f"scale tick CPU at {size} / at {smallest['count']:,} scanners: {ratio:.1f}x (goal <= 10x) {verdict(ratio <= 10)}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
