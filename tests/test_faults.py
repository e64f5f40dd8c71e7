"""Faults (issue #5): sweep ticks SIGKILLed at every failpoint, and stores that
fail for a tick. Each fault gives a failed run with a clear message, and the
ticks that follow end exactly where uninterrupted ticks do.

Ticks run in processes of their own, as `session-assets sweep --now` would on
a machine of its own: chDB lets one process at a time open a data path, and a
SIGKILL must take the whole process down. To keep 20 kills affordable, the
ticks are forked from a "zygote" process that has imported the package once;
each forked child then runs the real command line (`session_assets.cli.main`)
from the start, with the environment of a test home. The first and the last
tick of the kill test use the `session-assets` executable itself.
"""

from __future__ import annotations

import http.client
import json
import os
import pickle
import random
import subprocess
import sys
import threading
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import dagster as dg
import pandas as pd
import pgserver
import psycopg
import pytest
import yaml
from dagster_aws.s3 import S3Resource
from pgserver._commands import pg_ctl

from session_assets.core import failpoints
from session_assets.stores import postgres
from session_assets.core.days import SETTLE
from session_assets.definitions import build_definitions
from session_assets.resources import ClickHouseResource, ObjectStoreResource, object_store_for, PostgresResource
from session_assets.commands.ticks import execute_tick, status_report
from tests.support import (
    FAULT_DAY,
    FAULT_SCANNERS,
    StoreState,
    add_scanner,
    app_database,
    assert_store_state,
    at,
    cli_env,
    expected_observation_keys,
    expected_rollups,
    fault_scanner_definitions,
    free_port,
    generate_sessions,
    insert_rows,
    local_objects,
    lock_waiters,
    partition_gate,
    session_events,
    store_state,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
EXECUTABLE = REPO / ".venv" / "bin" / "session-assets"
POINTS = (
    "after_candidates_insert",
    "after_quota_reserve",
    "after_object_write",
    "after_page_commit",
    "before_materialization",
)
KILLED = -9  # exit code of a process that died of SIGKILL


# --- the zygote: forks one process per tick -------------------------------------


def _zygote() -> None:
    """Read one JSON job a line; fork a child per job; answer with its exit code."""
    import session_assets.cli  # noqa: F401 - the imports every child would repeat
    import session_assets.definitions  # noqa: F401
    import session_assets.sensors  # noqa: F401

    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)


def _child(job: dict[str, Any]) -> None:
    code = 70
    try:
        os.environ.clear()
        os.environ.update(job["env"])
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        sys.stdin = open(os.devnull)
        if job["op"] == "cli":
            from session_assets.cli import main

            try:
                main(job["args"], prog_name="session-assets")
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        else:
            module, _, name = job["op"].partition(":")
            __import__(module)
            getattr(sys.modules[module], name)(*job["args"])
            code = 0
    except BaseException:  # reported through the exit code and stderr
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Zygote:
    def __init__(self, scratch: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.test_faults import _zygote; _zygote()"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=cli_env(scratch),
        )
        self.lock = threading.Lock()

    def run(self, job: dict[str, Any]) -> int:
        with self.lock:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the zygote died (exit {self.process.wait()})")
        return json.loads(line)["exit"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    forks = Zygote(tmp_path_factory.mktemp("zygote"))
    yield forks
    forks.close()


# --- a test home: its own chDB path and objects folder, databases on the session's pgserver ---


@dataclass
class Home:
    path: Path
    env: dict[str, str]
    app_url: str
    dagster_url: str
    runs: int = 0

    @property
    def objects(self) -> Path:
        return self.path / "objects"


@dataclass(frozen=True)
class Outcome:
    exit: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def new_home(folder: Path, admin_url: str, **env: str) -> Home:
    folder.mkdir(parents=True)
    dagster = f"t_{uuid.uuid4().hex[:12]}"
    postgres.ensure_database(admin_url, dagster)
    app_url = app_database(admin_url)  # migrated, as by the owner's `session-assets migrate`
    dagster_url = postgres.with_database(admin_url, dagster)
    environment = cli_env(folder) | {
        "SESSION_ASSETS_POSTGRES_URL": app_url,
        "SESSION_ASSETS_DAGSTER_POSTGRES_URL": postgres.sqlalchemy_url(dagster_url),
    }
    environment.pop(failpoints.ENV, None)
    return Home(folder, environment | env, app_url, dagster_url)


def run_cli(zygote: Zygote, home: Home, *args: str, failpoint: str | None = None, env: dict | None = None) -> Outcome:
    home.runs += 1
    out, err = home.path / f"run{home.runs:03d}.out", home.path / f"run{home.runs:03d}.err"
    environment = home.env | (env or {})
    if failpoint:
        environment[failpoints.ENV] = failpoint
    code = zygote.run({"op": "cli", "args": list(args), "env": environment, "stdout": str(out), "stderr": str(err)})
    return Outcome(code, out.read_text(), err.read_text())


def run_executable(home: Home, *args: str, env: dict | None = None) -> Outcome:
    """The installed `session-assets` command, as a user types it."""
    environment = home.env | (env or {})
    done = subprocess.run([str(EXECUTABLE), *args], env=environment, capture_output=True, text=True, timeout=300, cwd=home.path)
    return Outcome(done.returncode, done.stdout, done.stderr)


def call(zygote: Zygote, home: Home, function: str, *args: Any) -> None:
    home.runs += 1
    out, err = home.path / f"run{home.runs:03d}.out", home.path / f"run{home.runs:03d}.err"
    code = zygote.run({"op": f"tests.test_faults:{function}", "args": list(args), "env": home.env, "stdout": str(out), "stderr": str(err)})
    assert code == 0, err.read_text()[-3000:]


# Functions the zygote's children call (they run with the home's environment).


def _seed_events(rows_path: str) -> None:
    from session_assets.commands import stack
    from session_assets.resources import build_resources
    from tests.support import insert_rows

    stack.bring_up()
    rows = pickle.loads(Path(rows_path).read_bytes())
    clickhouse = build_resources(deferred=False)["clickhouse"]
    clickhouse.migrate()  # as the owner's `session-assets migrate` would
    insert_rows(clickhouse, rows)


def _dump_rollups(path: str) -> None:
    from session_assets.commands import stack
    from session_assets.resources import build_resources
    from tests.support import rollups_frame

    stack.bring_up()
    Path(path).write_bytes(pickle.dumps(rollups_frame(build_resources(deferred=False)["clickhouse"])))


def seed_home(zygote: Zygote, home: Home, rows: list[dict[str, Any]], quotas: dict[int, int]) -> None:
    """Events through the package's insert, scanners through `session-assets scanners add`."""
    (home.path / "rows.pickle").write_bytes(pickle.dumps(rows))
    call(zygote, home, "_seed_events", str(home.path / "rows.pickle"))
    (home.path / "scanners.yaml").write_text(yaml.safe_dump(fault_scanner_definitions()))
    added = run_cli(zygote, home, "scanners", "add", str(home.path / "scanners.yaml"))
    assert added.exit == 0, added.stderr
    set_quotas(home.app_url, quotas)


def set_quotas(app_url: str, quotas: dict[int, int]) -> None:
    with psycopg.connect(app_url, autocommit=True) as conn:
        for team_id, limit in quotas.items():
            conn.execute(
                "INSERT INTO team_quotas (team_id, period, observation_limit) VALUES (%s, %s, %s)",
                (team_id, FAULT_DAY.replace(day=1), limit),
            )


def home_state(zygote: Zygote, home: Home, now: datetime) -> StoreState:
    status = run_cli(zygote, home, "status", "--json", "--now", now.isoformat())
    assert status.exit == 0, status.stderr
    return store_state(home.app_url, local_objects(home.objects), json.loads(status.stdout))


@contextmanager
def home_instance(home: Home) -> Iterator[dg.DagsterInstance]:
    """The home's Dagster instance, opened from the test process."""
    url = home.env["SESSION_ASSETS_DAGSTER_POSTGRES_URL"]
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
        yield instance


def run_failure_messages(instance: dg.DagsterInstance) -> list[str]:
    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    messages = []
    for record in records:
        (failure,) = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        messages.append(failure.message)
    return messages


# --- 1. SIGKILL at every failpoint ------------------------------------------------------------


@pytest.mark.timeout(400)
def test_twenty_kills_at_every_failpoint_end_where_uninterrupted_ticks_do(zygote, postgres_admin_url, tmp_path):
    """20 sweep ticks SIGKILLed at the five failpoints (a seeded, deterministic
    choice: each point 4 times, at its 1st or 2nd hit in the tick), every tick
    after a kill resuming from the last good watermark; then an uninterrupted
    tick. The end state is the one computed from the data alone: every settled
    session observed once, watermarks at the frontier, batch objects and rows
    one-to-one, quota used = observations (team 2's limit is exact: a leaked or
    doubled reservation would refuse a session), rollups = raw events. Each
    killed run is failed by the next tick, not waited for."""
    # A burst before the first tick (two pages of 1,000 a scanner), then a trickle.
    sessions = generate_sessions(2400, at("2026-11-20T00:05:00"), at("2026-11-20T01:00:00"), seed=5) + generate_sessions(
        3000, at("2026-11-20T01:00:00"), at("2026-11-20T12:30:00"), seed=6, prefix="t"
    )
    rows = session_events(sessions)
    final_tick = at("2026-11-20T12:45:00")  # over an hour after the last killed tick: every backoff is over
    frontier = final_tick - SETTLE
    expected = expected_observation_keys(sessions, frontier)
    team2 = sum(1 for scanner_id, _ in expected if FAULT_SCANNERS[scanner_id] == 2)

    home = new_home(tmp_path / "home", postgres_admin_url)
    seed_home(zygote, home, rows, quotas={2: team2})

    rng = random.Random(2026_11_20)
    slots = [point for point in POINTS for _ in range(4)]
    rng.shuffle(slots)
    kills: list[tuple[str, str]] = []
    now = at("2026-11-20T01:40:00")
    missed = False
    while slots:
        assert now <= final_tick - timedelta(minutes=65), f"ran out of ticks with {len(slots)} kills to go: {kills}"
        # The n-th time the point is reached in this tick; after a miss (the tick did less), the first.
        wanted = f"{slots[0]}:{1 if missed else rng.randint(1, 2)}"
        if not kills:  # the first through the installed executable, as a user runs it
            outcome = run_executable(home, "sweep", "--now", now.isoformat(), env={failpoints.ENV: wanted})
        else:
            outcome = run_cli(zygote, home, "sweep", "--now", now.isoformat(), failpoint=wanted)
        missed = outcome.exit != KILLED
        if missed:
            assert outcome.exit == 0, outcome.stderr[-3000:]
        else:
            kills.append((now.isoformat(), wanted))
            slots.pop(0)
        now += timedelta(minutes=20)

    done = run_executable(home, "sweep", "--now", final_tick.isoformat())
    assert done.exit == 0, done.stderr[-3000:]
    assert done.report["runs"] and all(run["success"] for run in done.report["runs"]), done.report
    assert len(kills) == 20

    state = home_state(zygote, home, final_tick)
    assert_store_state(state, expected, frontier, sessions)
    assert state.quotas[2] == (team2, team2)
    with home_instance(home) as instance:
        messages = run_failure_messages(instance)
    assert len(messages) == 20 and all("is gone: killed mid-run" in m for m in messages), messages
    call(zygote, home, "_dump_rollups", str(home.path / "rollups.pickle"))
    rollups = pickle.loads((home.path / "rollups.pickle").read_bytes())
    pd.testing.assert_frame_equal(rollups, expected_rollups(rows, final_tick))


# --- 2. stores failing for a tick ---------------------------------------------------------------
# In this process, on the session's chDB path (unless said otherwise): the sensor path,
# `execute_tick`, with the resources of the code location pointed at the faulty store.


def stack_resources(clickhouse: ClickHouseResource, postgres_url: str, object_store: ObjectStoreResource) -> dict:
    return {"clickhouse": clickhouse, "postgres": PostgresResource(url=postgres_url), "object_store": object_store}


def seed_stack(resources: dict, instance: dg.DagsterInstance, sessions: list, quotas: dict[int, int]) -> None:
    insert_rows(resources["clickhouse"], session_events(sessions))
    for definition in fault_scanner_definitions():
        scanner_id = definition.pop("id")
        add_scanner(instance, resources["postgres"], scanner_id=scanner_id, **definition)
    set_quotas(resources["postgres"].url, quotas)


def tick(resources: dict, instance: dg.DagsterInstance, now: datetime) -> dict[str, Any]:
    return execute_tick(build_definitions(resources), instance, resources["postgres"].pool(), now)


def runs_by_partition(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["partition"]: run for run in report["runs"]}


def stack_state(resources: dict, instance: dg.DagsterInstance, now: datetime, objects: set[str]) -> StoreState:
    status = status_report(instance, resources["postgres"].pool(), now)
    return store_state(resources["postgres"].url, objects, json.loads(json.dumps(status, default=str)))


def exact_quotas(expected: set[tuple[str, str]]) -> dict[int, int]:
    """Each team's limit = exactly what it should observe: a doubled reservation would refuse a session."""
    quotas: dict[int, int] = {}
    for scanner_id, _ in expected:
        quotas[FAULT_SCANNERS[scanner_id]] = quotas.get(FAULT_SCANNERS[scanner_id], 0) + 1
    return quotas


def all_failed_naming(report: dict[str, Any], *needles: str) -> None:
    assert report["runs"], report
    for run in report["runs"]:
        assert not run["success"], run
        assert all(needle in run["error"] for needle in needles), run["error"]


SHOP = f"{FAULT_DAY.isoformat()}|shop"
WEB = f"{FAULT_DAY.isoformat()}|web"


@pytest.mark.timeout(300)
def test_postgres_restarted_mid_page_or_cut_off_for_a_run_then_the_next_tick_recovers(clickhouse_resource, tmp_path):
    """The app's Postgres (a pgserver of this test's own) crash-restarts while a page
    waits inside its transaction: the page rolls back whole and the run's own
    retry finishes the work. Then its connection is cut in both attempts of a
    run: that run fails with Postgres's message, writes no watermark, the other
    scanner's run is unaffected, and the next tick recovers. The end state is
    exact: quota limits equal to the expected counts leave no room for a double."""
    sessions = generate_sessions(600, at("2026-11-20T00:05:00"), at("2026-11-20T04:00:00"), seed=11)
    final = at("2026-11-20T02:50:00")
    expected = expected_observation_keys(sessions, final - SETTLE)
    server = pgserver.get_server(tmp_path / "pg")
    pool = None
    try:
        app_url = app_database(server.get_uri("postgres"), "app")
        store = object_store_for(f"file://{tmp_path / 'objects'}", S3Resource())
        resources = stack_resources(clickhouse_resource, app_url, store)
        pool = resources["postgres"].pool()
        with dg.instance_for_test() as instance:  # Dagster's own storage stays up: only the app's Postgres fails
            seed_stack(resources, instance, sessions, exact_quotas(expected))
            assert all(run["success"] for run in tick(resources, instance, at("2026-11-20T02:00:00"))["runs"])

            # 1. Crash-restart while shop's first page waits at its partition lock.
            done: dict[str, Any] = {}
            with psycopg.connect(app_url, autocommit=True) as gate:
                partition_gate(gate, "shop", FAULT_DAY)
                ticking = threading.Thread(target=lambda: done.update(tick(resources, instance, at("2026-11-20T02:30:00"))))
                ticking.start()
                wait_until(lambda: lock_waiters(gate) == 1, 120, "shop's first page at its lock", interval_s=0.05)
                pg_ctl(["-w", "-m", "immediate", "restart"], pgdata=server.pgdata, user=server.system_user)
            ticking.join()
            runs = runs_by_partition(done)
            assert runs[SHOP]["success"] and runs[WEB]["success"], runs
            # The batch retried shop's partition once, alone.
            (retried,) = [e.user_message for e in instance.all_logs(runs[SHOP]["run_id"]) if e.user_message.startswith(f"retrying {SHOP}")]
            assert "connection" in retried, retried

            # 2. Cut off in both attempts of shop's run (as a failover would): a failed run.
            done.clear()
            with psycopg.connect(app_url, autocommit=True) as gate:
                partition_gate(gate, "shop", FAULT_DAY)
                ticking = threading.Thread(target=lambda: done.update(tick(resources, instance, at("2026-11-20T02:40:00"))))
                ticking.start()
                cut: set[int] = set()
                for _ in range(2):  # the first attempt, then the step's retry
                    pid = wait_until(lambda: _waiting_pid(gate, cut), 120, "a shop page at its lock", interval_s=0.05)
                    gate.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    cut.add(pid)
                ticking.join()
            runs = runs_by_partition(done)
            assert not runs[SHOP]["success"] and runs[WEB]["success"], runs
            assert "terminating connection due to administrator command" in runs[SHOP]["error"]
            status = status_report(instance, resources["postgres"].pool(), at("2026-11-20T02:40:00"))
            (shop,) = [s for s in status["scanners"] if s["id"] == "shop"]
            assert shop["failed"] == [FAULT_DAY.isoformat()]
            assert shop["watermark_end"] == (at("2026-11-20T02:30:00") - SETTLE).isoformat()  # none written

            recovered = tick(resources, instance, final)  # 10 minutes on: past the 5-minute backoff
            assert all(run["success"] for run in recovered["runs"]), recovered
            state = stack_state(resources, instance, final, local_objects(tmp_path / "objects"))
        assert_store_state(state, expected, final - SETTLE, sessions)
    finally:
        if pool is not None:
            pool.close()
        # pgserver tracks the postmaster it started: the restarted one is stopped here.
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        server.cleanup()


def _waiting_pid(conn: Any, skip: set[int]) -> int | None:
    rows = conn.execute(
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE NOT l.granted AND l.locktype = 'advisory' AND a.datname = current_database()"
    ).fetchall()
    pids = [pid for (pid,) in rows if pid not in skip]
    return pids[0] if pids else None


def test_clickhouse_unreachable_fails_the_runs_naming_it_and_the_next_tick_recovers(
    clickhouse_resource, postgres_url, tmp_path
):
    sessions = generate_sessions(400, at("2026-11-20T00:05:00"), at("2026-11-20T04:00:00"), seed=12)
    final = at("2026-11-20T02:40:00")
    expected = expected_observation_keys(sessions, final - SETTLE)
    store = object_store_for(f"file://{tmp_path / 'objects'}", S3Resource())
    resources = stack_resources(clickhouse_resource, postgres_url, store)
    with dg.instance_for_test() as instance:
        seed_stack(resources, instance, sessions, exact_quotas(expected))
        assert all(run["success"] for run in tick(resources, instance, at("2026-11-20T02:00:00"))["runs"])
        before = stack_state(resources, instance, at("2026-11-20T02:30:00"), local_objects(tmp_path / "objects"))

        unreachable = f"http://127.0.0.1:{free_port()}"
        broken = {**resources, "clickhouse": ClickHouseResource(url=unreachable, database=clickhouse_resource.database)}
        report = tick(broken, instance, at("2026-11-20T02:30:00"))
        all_failed_naming(report, f"ClickHouse at {unreachable} is unreachable")
        assert {run["partition"] for run in report["runs"]} == {FAULT_DAY.isoformat(), SHOP, WEB}
        after = stack_state(resources, instance, at("2026-11-20T02:30:00"), local_objects(tmp_path / "objects"))
        assert after.observations == before.observations and after.objects == before.objects
        for old, new in zip(before.status["scanners"], after.status["scanners"]):
            assert new["watermark_end"] == old["watermark_end"] and new["failed"] == [FAULT_DAY.isoformat()]

        recovered = tick(resources, instance, final)
        assert all(run["success"] for run in recovered["runs"]), recovered
        state = stack_state(resources, instance, final, local_objects(tmp_path / "objects"))
    assert_store_state(state, expected, final - SETTLE, sessions)


def test_the_command_line_names_an_unreachable_clickhouse_in_one_line_and_writes_nothing(
    zygote, postgres_admin_url, tmp_path
):
    unreachable = f"http://127.0.0.1:{free_port()}"
    home = new_home(tmp_path / "home", postgres_admin_url, SESSION_ASSETS_CLICKHOUSE_URL=unreachable)
    outcome = run_cli(zygote, home, "sweep", "--now", "2026-11-20T02:00:00Z")
    assert outcome.exit == 1 and outcome.stdout == ""
    (line,) = [line for line in outcome.stderr.splitlines() if "Warning" not in line and line.startswith("error")]
    assert line.startswith(f"error: ClickHouse at {unreachable} is unreachable")
    assert "Traceback" not in outcome.stderr
    with home_instance(home) as instance:
        assert instance.get_run_records() == []


HOLD_CHDB = """
import sys
from session_assets.stores import clickhouse
clickhouse.get_client(sys.argv[1], "session_assets")
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_chdb_path_held_by_another_process_fails_runs_naming_it_then_the_next_tick_recovers(
    zygote, postgres_admin_url, tmp_path
):
    """Another process holds the home's chDB path: a tick's runs fail after the
    lock wait with a message naming that process; once it exits, the next tick
    (its own process, as `session-assets sweep` runs) recovers everything."""
    sessions = generate_sessions(400, at("2026-11-20T00:05:00"), at("2026-11-20T04:00:00"), seed=13)
    final = at("2026-11-20T02:40:00")
    expected = expected_observation_keys(sessions, final - SETTLE)
    home = new_home(tmp_path / "home", postgres_admin_url)
    seed_home(zygote, home, session_events(sessions), exact_quotas(expected))
    first = run_cli(zygote, home, "sweep", "--now", "2026-11-20T02:00:00Z")
    assert first.exit == 0 and all(run["success"] for run in first.report["runs"]), first.stderr[-3000:]

    chdb_url = f"chdb://{home.path / 'clickhouse'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_CHDB, chdb_url], cwd=REPO, env=home.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        resources = {
            # The sensor path in this process; it gives up on the lock after 1 s instead of 120.
            "clickhouse": ClickHouseResource(url=chdb_url, lock_timeout_seconds=1),
            "postgres": PostgresResource(url=home.app_url),
            "object_store": object_store_for(f"file://{home.objects}", S3Resource()),
        }
        with home_instance(home) as instance:
            report = tick(resources, instance, at("2026-11-20T02:30:00"))
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    all_failed_naming(report, f"is held by pid {holder.pid}", "chDB allows one process per data path")
    assert {run["partition"] for run in report["runs"]} == {FAULT_DAY.isoformat(), SHOP, WEB}

    recovered = run_cli(zygote, home, "sweep", "--now", final.isoformat())
    assert recovered.exit == 0 and all(run["success"] for run in recovered.report["runs"]), recovered.stdout
    assert_store_state(home_state(zygote, home, final), expected, final - SETTLE, sessions)


class FaultyS3:
    """A loopback HTTP proxy in front of the S3 server: forwards every request, but
    answers 500 InternalError to every PUT while `failing` is set."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.failing = threading.Event()
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "PUT" and proxy.failing.is_set():
                    proxy.refused += 1
                    error = b"<Error><Code>InternalError</Code><Message>injected by the test proxy</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                hop = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in hop:
                        self.send_header(key, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyS3:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_s3_refusing_puts_for_a_tick_fails_the_sweeps_and_the_next_tick_recovers(
    clickhouse_resource, postgres_url, s3_endpoint, s3_bucket
):
    sessions = generate_sessions(400, at("2026-11-20T00:05:00"), at("2026-11-20T04:00:00"), seed=14)
    final = at("2026-11-20T02:40:00")
    expected = expected_observation_keys(sessions, final - SETTLE)
    with FaultyS3(s3_endpoint) as proxy, dg.instance_for_test() as instance:
        s3 = S3Resource(endpoint_url=proxy.url, region_name="us-east-1", max_attempts=2)
        store = object_store_for(f"s3://{s3_bucket}/prefix", s3)
        resources = stack_resources(clickhouse_resource, postgres_url, store)
        seed_stack(resources, instance, sessions, exact_quotas(expected))
        assert all(run["success"] for run in tick(resources, instance, at("2026-11-20T02:00:00"))["runs"])
        before = stack_state(resources, instance, at("2026-11-20T02:30:00"), set(store.list_keys()))

        proxy.failing.set()
        report = runs_by_partition(tick(resources, instance, at("2026-11-20T02:30:00")))
        proxy.failing.clear()
        assert report[FAULT_DAY.isoformat()]["success"]  # rollups never touch S3
        for key in (SHOP, WEB):
            assert not report[key]["success"] and "InternalError" in report[key]["error"], report[key]
            assert "PutObject" in report[key]["error"]
        assert proxy.refused >= 4  # two attempts of two runs, each retried by boto3
        after = stack_state(resources, instance, at("2026-11-20T02:30:00"), set(store.list_keys()))
        assert after.observations == before.observations and after.quotas == before.quotas  # pages rolled back
        assert after.objects == before.objects

        recovered = tick(resources, instance, final)
        assert all(run["success"] for run in recovered["runs"]), recovered
        state = stack_state(resources, instance, final, set(store.list_keys()))
    assert_store_state(state, expected, final - SETTLE, sessions)
