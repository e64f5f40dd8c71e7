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
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pandas as pd
import psycopg
import pytest
import yaml

from session_assets import failpoints, postgres
from session_assets.days import SETTLE
from tests.support import (
    FAULT_DAY,
    FAULT_SCANNERS,
    StoreState,
    assert_store_state,
    at,
    cli_env,
    expected_observation_keys,
    expected_rollups,
    fault_scanner_definitions,
    generate_sessions,
    local_objects,
    session_events,
    store_state,
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
    app, dagster = f"t_{uuid.uuid4().hex[:12]}", f"t_{uuid.uuid4().hex[:12]}"
    for name in (app, dagster):
        postgres.ensure_database(admin_url, name)
    app_url = postgres.with_database(admin_url, app)
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
    from session_assets import stack
    from session_assets.resources import build_resources
    from tests.support import insert_rows

    stack.bring_up()
    rows = pickle.loads(Path(rows_path).read_bytes())
    insert_rows(build_resources(deferred=False)["clickhouse"], rows)


def _dump_rollups(path: str) -> None:
    from session_assets import stack
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
