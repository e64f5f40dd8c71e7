"""Soak: `session-assets dev` (the real daemon and run queue) with 200 scanners for 30 minutes.

A fresh embedded stack in its own home gets N enabled scanners of mixed kinds
over 10 teams (as in benchmarks/scale.py) plus one match-all scanner per team,
and a generated day of events that ends when the soak ends. The events whose
`inserted_at` has passed are loaded before `dev` starts; the rest are loaded
as their `inserted_at` passes, every `--feed` seconds, through the same chDB
engine lock the runs take. `dev` then runs with the sensor at the production
cadence (`--interval`, default 300 s) for `--minutes`, and the benchmark
reads, from its own instance and Postgres:

* the run queue at each tick: sensor runs created before the tick and not
  finished at it. Goal: it never grows from one tick to the next;
* per tick, the share of today's (scanner, day) partitions whose frontier
  moved forward. Goal: every partition advances every tick (the rollups
  are rolled every tick, so each can);
* latency, session end -> observation row in Postgres (its `created_at`),
  over the sessions of the match-all scanners that became eligible (end +
  35 min settle) during the soak, and how many of them were never observed.
  Goal: median and maximum <= 45 minutes, none missed;
* per tick CPU of the processes `dev` started, split as in scale.py.

The first tick is a catch-up from the scanners' start (the day before); the
figures quote the medians of the ticks after it.

    python benchmarks/soak.py [--scanners 200] [--minutes 30] [--interval 300]

Exit code 0 whatever the goals; 1 when a run failed, dev died or a session was missed.
"""

from __future__ import annotations

import argparse
import os
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
import psycopg  # noqa: E402

from benchmarks.scale import FINISHED, TEAMS, say, scanners, tick_figures, tick_runs, tree_cpu  # noqa: E402
from session_assets.stores import clickhouse  # noqa: E402
from session_assets.commands import demo, demo_data  # noqa: E402
from session_assets import settings  # noqa: E402
from session_assets.core.days import SETTLE  # noqa: E402
from session_assets.stores.events_io import insert_events  # noqa: E402
from session_assets.partitions import scanner_partitions_def  # noqa: E402
from session_assets.scanners import parse_scanner  # noqa: E402
from session_assets.scanners import store as scanner_store  # noqa: E402

LATENCY_GOAL = timedelta(minutes=45)
SESSIONS_PER_TEAM_PER_DAY = 600


def figure(label: str, value: str, goal: str, met: bool) -> None:
    say(f"{label}: {value} (goal {goal}) {'PASS' if met else 'MISS'}")


class Feed:
    """The generated events, loaded into ClickHouse as their `inserted_at` passes."""

    def __init__(self, columns: dict[str, list[Any]]) -> None:
        order = sorted(range(len(columns["event"])), key=lambda i: columns["inserted_at"][i])
        self.columns = {name: [values[i] for i in order] for name, values in columns.items()}
        self.loaded = 0
        self.ends: dict[tuple[int, str], datetime] = {}
        late: set[tuple[int, str]] = set()
        for team, session, at, inserted in zip(
            columns["team_id"], columns["$session_id"], columns["timestamp"], columns["inserted_at"]
        ):
            key = (int(team), str(session))
            if at > self.ends.get(key, at - timedelta(1)):
                self.ends[key] = at
            if inserted - at > timedelta(minutes=5):
                late.add(key)
        # A session with an event that arrives hours late (2% of events) has no fixed latency.
        for key in late:
            del self.ends[key]

    def load_due(self, resources: dict[str, Any], now: datetime) -> int:
        arrived = self.loaded
        total = len(self.columns["inserted_at"])
        while arrived < total and self.columns["inserted_at"][arrived] <= now:
            arrived += 1
        if arrived == self.loaded:
            return 0
        block = {name: values[self.loaded : arrived] for name, values in self.columns.items()}
        try:
            insert_events(resources["clickhouse"].client(), resources["clickhouse"].events, block)
        finally:
            clickhouse.close_clients()  # the engine lock goes back to the runs
        count, self.loaded = arrived - self.loaded, arrived
        return count


def prepare(home: Path, count: int, start: datetime, minutes: float) -> tuple[dict[str, Any], Feed, list[str]]:
    from session_assets.commands import stack as stack_module
    from session_assets.definitions import build_definitions
    from session_assets.resources import build_resources

    os.environ[settings.HOME_VAR] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    stack_module.bring_up()
    resources = build_resources(deferred=False)
    resources["clickhouse"].migrate()
    end = start + timedelta(minutes=minutes)
    columns = demo_data.generate_events(
        days=1, now=end, seed=23, teams=tuple(range(1, TEAMS + 1)), sessions_per_team_per_day=SESSIONS_PER_TEAM_PER_DAY
    )
    feed = Feed(columns)
    start_at = min(columns["timestamp"]) - timedelta(hours=1)
    made = scanners(count, start_at)
    watchers = [
        parse_scanner(
            {"id": f"all-t{team}", "team_id": team, "name": f"every session of team {team}", "kind": "match",
             "start_at": start_at.isoformat()},
            source="benchmark",
        )
        for team in range(1, TEAMS + 1)
    ]  # fmt: skip
    scanner_store.save_all(resources["postgres"].pool(), made + watchers)
    loaded = feed.load_due(resources, datetime.now(timezone.utc))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(scanner_partitions_def.name, [s.id for s in made + watchers])
        demo.materialize_rollups(build_definitions(), instance, demo.demo_days(start, 2), datetime.now(timezone.utc))
    clickhouse.close_clients()
    say(
        f"  {len(columns['event']):,} events in {len(feed.ends):,} sessions over {TEAMS} teams, ending {end:%H:%M}; "
        f"{loaded:,} loaded before dev starts; {count} scanners + {len(watchers)} match-all"
    )
    return resources, feed, [w.id for w in watchers]


def frontiers(instance: dg.DagsterInstance, records: list[Any], day: str) -> dict[str, float]:
    """{partition of `day`: the frontier its materialization in these runs recorded}."""
    found: dict[str, float] = {}
    for record in records:
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.dagster_event.step_materialization_data.materialization
            partition = str(materialization.partition or "")
            value = materialization.metadata.get("frontier")
            if materialization.asset_key.path == ["observation_batches"] and partition.startswith(day) and value is not None:
                if isinstance(value.value, (int, float)):
                    found[partition] = max(found.get(partition, 0.0), float(value.value))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scanners", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long dev runs, from its first tick")
    parser.add_argument("--interval", type=int, default=300, help="sensor interval, seconds (the production cadence)")
    parser.add_argument("--feed", type=int, default=30, help="seconds between event loads")
    args = parser.parse_args(argv)

    ok = True
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        start = datetime.now(timezone.utc)
        say(f"## soak: {args.scanners} scanners, {args.minutes:g} min of dev, a tick every {args.interval} s")
        resources, feed, watchers = prepare(home, args.scanners, start, args.minutes + args.interval / 60)
        env = {**os.environ, settings.SWEEP_INTERVAL_VAR: str(args.interval), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
        postgres_url = resources["postgres"].url
        log = open(tmp / "dev.log", "w")
        dev = subprocess.Popen(
            [sys.executable, "-m", "session_assets.cli", "dev", "--port", "3399"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
        )  # fmt: skip
        rows: list[dict[str, Any]] = []
        try:
            with dg.DagsterInstance.get() as instance:
                first_tick: datetime | None = None
                done: set[str] = set()
                previous_cpu = tree_cpu(home)
                cpu_at: dict[str, tuple[float, float]] = {}
                last_frontier: dict[str, float] = {}
                next_feed = time.monotonic()
                hard_stop = time.monotonic() + args.minutes * 60 + 3600
                while time.monotonic() < hard_stop:
                    if dev.poll() is not None:
                        say(f"  dev exited with {dev.returncode}; see its log")
                        sys.stdout.write(open(tmp / "dev.log").read()[-3000:])
                        return 1
                    if time.monotonic() >= next_feed:
                        feed.load_due(resources, datetime.now(timezone.utc))
                        next_feed = time.monotonic() + args.feed
                    by_tick = tick_runs(instance)
                    if by_tick and first_tick is None:
                        first_tick = datetime.fromisoformat(min(by_tick))
                    stopping = first_tick is not None and datetime.now(timezone.utc) >= first_tick + timedelta(minutes=args.minutes)
                    pending = [a for a in sorted(by_tick) if a not in done]
                    if stopping and not pending:
                        break
                    for as_of in pending:
                        records = by_tick[as_of]
                        cpu_at.setdefault(as_of, previous_cpu)
                        if not all(r.dagster_run.status in FINISHED for r in records):
                            break  # ticks in order: wait for this one
                        cpu_now = tree_cpu(home)
                        figures = tick_figures(instance, as_of, records)
                        figures["cpu"] = cpu_now[0] - cpu_at[as_of][0]
                        figures["overhead_cpu"] = figures["cpu"] - figures["work_cpu"]
                        previous_cpu = cpu_now
                        tick_at = datetime.fromisoformat(as_of)
                        earlier = [r for a, rs in by_tick.items() if a < as_of for r in rs]
                        figures["queue"] = sum(
                            1 for r in earlier if r.end_time is None or r.end_time > tick_at.timestamp()
                        )
                        moved = frontiers(instance, records, tick_at.date().isoformat())
                        advanced = sum(1 for p, f in moved.items() if f > last_frontier.get(p, 0.0))
                        last_frontier.update(moved)
                        figures["advanced"] = advanced
                        figures["as_of"] = tick_at
                        rows.append(figures)
                        done.add(as_of)
                        ok &= figures["failed_runs"] == 0
                        say(
                            f"  tick {as_of[11:19]}: queue {figures['queue']} runs; {figures['runs']} runs "
                            f"({figures['batches']} batches), {figures['partitions']} partitions, today's advanced "
                            f"{advanced}/{args.scanners + len(watchers)}; done {figures['wall']:.1f} s after the tick; "
                            f"CPU {figures['cpu']:.1f} s (work {figures['work_cpu']:.1f}, overhead {figures['overhead_cpu']:.1f})"
                        )
                    time.sleep(2)
        finally:
            os.killpg(dev.pid, signal.SIGINT)
            try:
                dev.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
            log.close()

        if len(rows) < 3:
            say(f"CORRECTNESS: only {len(rows)} ticks finished")
            return 1
        steady = rows[1:]
        first, last = rows[0]["as_of"], rows[-1]["as_of"]
        with psycopg.connect(postgres_url) as conn:
            observed = {
                (int(team), str(session)): created
                for team, session, created in conn.execute(
                    "SELECT team_id, session_id, min(created_at) FROM observations WHERE scanner_id = ANY(%s) "
                    "GROUP BY team_id, session_id",
                    (watchers,),
                ).fetchall()
            }
        # The sessions that became eligible while dev ran, by the last tick's as-of time.
        due = {key: end for key, end in feed.ends.items() if first <= end + SETTLE <= last}
        latencies = [(observed[key] - end).total_seconds() / 60 for key, end in due.items() if key in observed]
        missed = len(due) - len(latencies)

    say()
    say(f"## figures ({len(rows)} ticks from {first:%H:%M:%S} to {last:%H:%M:%S}; the first, a catch-up, apart)")
    queues = [r["queue"] for r in rows]
    grows = any(b > a for a, b in zip(queues[1:], queues[2:]))
    figure("soak run queue at each tick (runs of earlier ticks not done)", " ".join(map(str, queues)), "never grows", not grows)
    shares = [r["advanced"] / (args.scanners + len(watchers)) for r in steady]
    figure("soak today's partitions advanced per steady tick, least", f"{100 * min(shares):.0f}%", "100%", min(shares) >= 1.0)
    if latencies:
        figure("soak latency session end -> observation, median", f"{median(latencies):.1f} min", "<= 45 min",
               median(latencies) <= LATENCY_GOAL.total_seconds() / 60)  # fmt: skip
        figure("soak latency session end -> observation, max", f"{max(latencies):.1f} min ({missed} of {len(due)} never observed)",
               "<= 45 min, none missed", max(latencies) <= LATENCY_GOAL.total_seconds() / 60 and missed == 0)  # fmt: skip
    else:
        say(f"CORRECTNESS: no session became eligible during the soak ({len(due)} due)")
        ok = False
    say(f"soak steady tick, median: done {median(r['wall'] for r in steady):.1f} s after the tick, "
        f"CPU {median(r['cpu'] for r in steady):.1f} s (overhead {median(r['overhead_cpu'] for r in steady):.1f} s = "
        f"{100 * median(r['overhead_cpu'] for r in steady) / args.interval:.1f}% of one core at this cadence) (info)")  # fmt: skip
    if missed:
        say(f"CORRECTNESS: {missed} eligible sessions never observed")
    return 0 if ok and missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
