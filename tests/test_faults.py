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
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from session_assets import failpoints, postgres
from tests.support import at, cli_env, event, expected_rollups, free_port

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
    log: list[str] = field(default_factory=list)

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
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in (app, dagster):
            postgres.ensure_database(admin_url, name)
            # Test databases only: a commit need not wait for the disk (the server never crashes here).
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
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


def run_executable(home: Home, *args: str) -> Outcome:
    """The installed `session-assets` command, as a user types it."""
    done = subprocess.run([str(EXECUTABLE), *args], env=home.env, capture_output=True, text=True, timeout=300, cwd=home.path)
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


# --- data -----------------------------------------------------------------------

DAY = date(2026, 11, 20)
SCANNERS_YAML = """\
- id: web
  team_id: 1
  name: Web sessions with a pageview
  kind: match
  filter: {counters: {pageview_count: {gte: 1}}}
  start_at: "2026-11-20T00:00:00Z"
- id: shop
  team_id: 2
  name: Shop sessions with a pageview
  kind: match
  filter: {counters: {pageview_count: {gte: 1}}}
  start_at: "2026-11-20T00:00:00Z"
"""
TEAM_OF = {"web": 1, "shop": 2}
SCANNER_START = at("2026-11-20T00:00:00")  # sessions ending after it, started within 26 h: all of ours


@dataclass(frozen=True)
class Session:
    team_id: int
    session_id: str
    start: datetime
    end: datetime
    pageview: bool


def make_sessions(count: int, first_end: datetime, last_end: datetime, seed: int, prefix: str = "s") -> list[Session]:
    rng = random.Random(seed)
    span = int((last_end - first_end).total_seconds())
    sessions = []
    for n in range(count):
        end = first_end + timedelta(seconds=rng.randrange(span))
        start = end - timedelta(seconds=rng.randrange(1, 900))
        sessions.append(Session(1 + n % 2, f"{prefix}-{n:05d}-{rng.getrandbits(32):08x}", start, end, rng.random() < 0.9))
    return sessions


def session_rows(sessions: list[Session]) -> list[dict[str, Any]]:
    rows = []
    for s in sessions:
        first = "$pageview" if s.pageview else "$autocapture"
        rows.append(event(first, s.start, s.session_id, team_id=s.team_id, properties={"$current_url": "https://x/"}))
        rows.append(event("$autocapture", s.end, s.session_id, team_id=s.team_id))
    return rows


def expected_observations(sessions: list[Session], frontier: datetime) -> set[tuple[str, str]]:
    """Computed from the generated sessions alone: what an uninterrupted sweep observes."""
    return {
        (scanner_id, s.session_id)
        for scanner_id, team_id in TEAM_OF.items()
        for s in sessions
        if s.team_id == team_id and s.pageview and SCANNER_START < s.end <= frontier
    }


def seed_home(zygote: Zygote, home: Home, rows: list[dict[str, Any]], quotas: dict[int, int]) -> None:
    (home.path / "rows.pickle").write_bytes(pickle.dumps(rows))
    call(zygote, home, "_seed_events", str(home.path / "rows.pickle"))
    (home.path / "scanners.yaml").write_text(SCANNERS_YAML)
    added = run_cli(zygote, home, "scanners", "add", str(home.path / "scanners.yaml"))
    assert added.exit == 0, added.stderr
    with psycopg.connect(home.app_url, autocommit=True) as conn:
        for team_id, limit in quotas.items():
            conn.execute(
                "INSERT INTO team_quotas (team_id, period, observation_limit) VALUES (%s, %s, %s)",
                (team_id, DAY.replace(day=1), limit),
            )


# --- reading a home's final state ---------------------------------------------------


@dataclass(frozen=True)
class FinalState:
    observations: dict[tuple[str, str], tuple]
    duplicates: int
    batch_rows: dict[str, int]  # object key -> rows
    batch_observations: dict[str, int]  # batch_key -> observations that name it
    objects: set[str]
    quotas: dict[int, tuple[int, int]]  # team -> (limit, used)
    observed_per_team: dict[int, int]
    status: dict[str, Any]


def final_state(zygote: Zygote, home: Home, now: datetime) -> FinalState:
    with psycopg.connect(home.app_url) as conn:
        rows = conn.execute(
            "SELECT scanner_id, session_id, verdict, score, evidence, day FROM observations ORDER BY 1, 2"
        ).fetchall()
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM observations GROUP BY scanner_id, session_id HAVING count(*) > 1) d"
        ).fetchone()[0]
        batches = dict(conn.execute("SELECT object_key, rows FROM observation_batches").fetchall())
        named = dict(conn.execute("SELECT batch_key, count(*) FROM observations GROUP BY batch_key").fetchall())
        quotas = {t: (lim, used) for t, lim, used in conn.execute("SELECT team_id, observation_limit, used FROM team_quotas")}
        per_team = dict(conn.execute("SELECT team_id, count(*) FROM observations GROUP BY team_id").fetchall())
    objects = {p.relative_to(home.objects).as_posix() for p in home.objects.rglob("*") if p.is_file()}
    status = run_cli(zygote, home, "status", "--json", "--now", now.isoformat())
    assert status.exit == 0, status.stderr
    return FinalState(
        observations={(r[0], r[1]): r[2:] for r in rows},
        duplicates=duplicates,
        batch_rows=batches,
        batch_observations=named,
        objects=objects,
        quotas=quotas,
        observed_per_team=per_team,
        status=json.loads(status.stdout),
    )


def assert_consistent(state: FinalState, expected: set[tuple[str, str]], frontier: datetime) -> None:
    """The invariants every home must end with, faults or not."""
    assert state.duplicates == 0
    assert set(state.observations) == expected
    # Every batch object has its row and every row its object; rows count what they carry.
    assert state.objects == set(state.batch_rows)
    assert state.batch_rows == state.batch_observations
    for team_id, (limit, used) in state.quotas.items():
        assert used == state.observed_per_team.get(team_id, 0) <= limit
    for scanner in state.status["scanners"]:
        assert scanner["failed"] == [], scanner
        assert scanner["watermark_end"] == frontier.isoformat(), scanner  # no gap: the frontier is reached
        assert scanner["frontier"] == frontier.isoformat(), scanner
    assert all(not rollup["failed"] for rollup in state.status["rollups"])


# --- 1. kill tests ---------------------------------------------------------------------


@pytest.mark.timeout(400)
def test_twenty_kills_at_every_failpoint_end_where_uninterrupted_ticks_do(zygote, postgres_admin_url, tmp_path):
    """20 sweep ticks SIGKILLed at the five failpoints (a seeded, deterministic
    choice), each followed by more ticks; then uninterrupted ticks. The end state
    is the one computed from the data alone: every settled session observed
    once, watermarks at the frontier, batch objects and rows in one-to-one
    correspondence, quota used = observations (team 2's limit is exact, so a
    leaked or doubled reservation would refuse a session), rollups = raw events."""
    # A burst before the first tick (two pages a scanner), then a steady trickle.
    sessions = make_sessions(2400, at("2026-11-20T00:05:00"), at("2026-11-20T01:00:00"), seed=5) + make_sessions(
        3000, at("2026-11-20T01:00:00"), at("2026-11-20T12:30:00"), seed=6, prefix="t"
    )
    rows = session_rows(sessions)
    final_tick = at("2026-11-20T12:45:00")  # over an hour past the last killed tick: every backoff is over
    frontier = final_tick - timedelta(minutes=35)
    expected = expected_observations(sessions, frontier)
    team2 = sum(1 for scanner_id, _ in expected if scanner_id == "shop")

    home = new_home(tmp_path / "faulty", postgres_admin_url)
    seed_home(zygote, home, rows, quotas={2: team2})

    rng = random.Random(2026_11_20)
    slots = [point for point in POINTS for _ in range(4)]
    rng.shuffle(slots)
    kills: list[tuple[str, str]] = []
    now = at("2026-11-20T01:40:00")  # the first window holds ~1,400 sessions a scanner: two pages
    first = True
    missed = False
    while slots:
        assert now <= final_tick - timedelta(minutes=65), f"ran out of ticks with {len(slots)} kills to go: {kills}"
        # The n-th time the point is reached in this tick; after a miss (the tick did less), the first.
        wanted = f"{slots[0]}:{1 if missed else rng.randint(1, 2)}"
        if first:  # the installed executable, as a user runs it
            env = home.env | {failpoints.ENV: wanted}
            done = subprocess.run(
                [str(EXECUTABLE), "sweep", "--now", now.isoformat()], env=env, capture_output=True, text=True, timeout=300
            )
            outcome = Outcome(done.returncode, done.stdout, done.stderr)
            first = False
        else:
            outcome = run_cli(zygote, home, "sweep", "--now", now.isoformat(), failpoint=wanted)
        missed = outcome.exit != KILLED
        if missed:
            assert outcome.exit == 0, outcome.stderr[-3000:]
            home.log.append(f"{now.isoformat()} {wanted}: not reached")
        else:
            kills.append((now.isoformat(), wanted))
            slots.pop(0)
        now += timedelta(minutes=20)

    # Uninterrupted: the ordinary executable, then the zygote's children.
    done = run_executable(home, "sweep", "--now", final_tick.isoformat())
    assert done.exit == 0, done.stderr[-3000:]
    report = done.report
    assert report["runs"] and all(run["success"] for run in report["runs"]), report
    assert len(kills) == 20 and {p.split(":")[0] for _, p in kills} == set(POINTS)

    state = final_state(zygote, home, final_tick)
    assert_consistent(state, expected, frontier)
    assert state.quotas[2] == (team2, team2)
    call(zygote, home, "_dump_rollups", str(home.path / "rollups.pickle"))
    rollups = pickle.loads((home.path / "rollups.pickle").read_bytes())
    import pandas as pd

    pd.testing.assert_frame_equal(rollups, expected_rollups(rows, final_tick))
