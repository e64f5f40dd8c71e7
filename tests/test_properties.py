"""Property tests: random event histories swept tick by tick through the package's
real code path (`execute_tick`, as `session-assets sweep --now` and the sensor run
it) on real chDB, Postgres and a local object store, compared with the independent
oracle in tests/oracle.py.

Histories mix two teams with the same session ids, events in the same microsecond,
sessions that end in the same microsecond, cross midnight or last 20-40 h, late
inserts (up to 40 h after the event), session ids of length 0, 1, 128 and 129,
sample rates 0, 0.00004, 0.29 and 1, and up to three scanners of kinds match and
threshold with assorted filters; ticks fall anywhere or exactly on the edges
(a session's end on the frontier, a microsecond before it, just after it settles).

After every tick: the rollup rows of every day the tick rolled equal a fresh
aggregation as of the tick; the same (scanner, day) partitions were swept, to the
same watermark and completeness; the observations (verdict, score, day, late)
equal the oracle's, none twice, and every batch object holds exactly its rows.
After the last tick (every day settled, every event inserted): nothing eligible
was lost, and every rollup row equals a fresh aggregation of all events.

`pytest --slow tests/test_properties.py` runs the hypothesis "slow" profile
(200 random examples, shrunk on failure) instead of the CI budget.

The last section holds plain examples of the discrepancies the oracle found.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from hypothesis.control import currently_in_test_context
from hypothesis import HealthCheck, Phase, event, example, given, note, settings
from hypothesis import strategies as st

from session_assets.definitions import build_definitions
from session_assets.stores.events_io import EVENT_COLUMNS, insert_events
from session_assets.resources import ClickHouseResource, object_store_for, PostgresResource
from session_assets.scanners import parse_scanner
from session_assets.scanners import store as scanner_store
from session_assets.stores import sql
from session_assets.core import tick_plan
from session_assets.partitions import scanner_partitions_def
from session_assets.sensors import rollups_job, run_requests
from session_assets.tick_state import read_tick_state
from session_assets.commands.ticks import execute_request
from tests import oracle
from tests.support import at

UTC = oracle.UTC
D0 = date(2024, 3, 4)
T0 = oracle.day_start(D0)

# --- generating histories --------------------------------------------------------

TEAMS = (1, 1, 2)  # team 2 holds the same session ids as team 1
# The same ids in several teams; lengths 0, 1, 128 and 129 at the eligibility edges.
SESSION_IDS = ("a", "b", "c", "d", "e", "s-1", "S-1", "z" * 128, "y" * 129, "")
URLS = ("https://shop/checkout", "https://shop/Checkout/done", "https://shop/home", "")
EVENT_NAMES = ("$pageview", "$pageview", "$autocapture", "$rageclick", "$exception", "$ai_generation", "signup")
FILTERS: tuple[dict[str, Any], ...] = (
    {},
    {},
    {"min_duration_seconds": 60},
    {"max_duration_seconds": 3600},
    {"counters": {"exception_count": {"gte": 1}}},
    {"counters": {"event_count": {"lte": 2}}},
    {"counters": {"pageview_count": {"gt": 0}, "rageclick_count": {"lt": 2}}},
    {"counters": {"duration_s": {"gte": 1}, "input_tokens": {"eq": 0}}},
    {"events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "icontains", "value": "/CHECKOUT"}]}]},
    {"events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "exact", "value": "https://shop/home"}]}]},
)
RATES = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.29, 0.29, 0.00004, 0.0)
LATEST_LATE_INSERT = timedelta(hours=40)  # well inside the 48 h lateness horizon
TICK_MODES = ("planned", "planned", "planned", "sweeps first", "rollups lost")


def _event(name: str, ts: datetime, sid: str, team: int, inserted_at: datetime, rng: random.Random) -> dict[str, Any]:
    props: dict[str, Any] = {"$session_id": sid}
    if name == "$pageview":
        props["$current_url"] = rng.choice(URLS)
    if name == "$ai_generation":
        props.update({"$ai_input_tokens": rng.randint(0, 500), "$ai_output_tokens": rng.randint(0, 90), "$ai_total_cost_usd": rng.choice([0, 0.001, 0.25])})
    return {
        "uuid": uuid.UUID(int=rng.getrandbits(128)),
        "event": name,
        "properties": json.dumps(props),
        "timestamp": ts,
        "team_id": team,
        "distinct_id": rng.choice(["u1", "u2"]),
        "$session_id": sid,
        "inserted_at": inserted_at,
    }


HOURS = 3600


def _plain(name: str, ts: str, sid: str, team: int = 1, inserted: str | None = None) -> dict[str, Any]:
    """An event at `ts` (ISO, UTC), inserted 2 s later unless `inserted` says when."""
    when = at(ts)
    rng = random.Random(f"{name} {ts} {sid} {team}")
    return _event(name, when, sid, team, at(inserted) if inserted else when + timedelta(seconds=2), rng)


def boundary_history() -> "History":
    """Every eligibility edge at once, checked on every run (hypothesis explicit example)."""
    events = [
        # Settle cutoff, inclusive: "on-cutoff" ends exactly on the first tick's frontier.
        _plain("$pageview", "2024-03-04T09:50:00", "on-cutoff"),
        _plain("$exception", "2024-03-04T10:00:00.000001", "on-cutoff"),
        _plain("$pageview", "2024-03-04T09:50:00", "after-cutoff"),
        _plain("$rageclick", "2024-03-04T10:00:00.000002", "after-cutoff"),
        # Keyset ties: three sessions end in the same microsecond, on the second tick's frontier.
        *[_plain("$pageview", "2024-03-04T11:00:00.500000", sid) for sid in ("tie-1", "tie-2", "tie-3")],
        # Session id lengths 1, 128 (eligible), 0 and 129 (never).
        *[_plain("$autocapture", "2024-03-04T08:00:00", sid) for sid in ("a", "z" * 128, "", "y" * 129)],
        # Lookback: the scanner starts at 06:00, so sessions must start at or after 04:00 the day before.
        _plain("$pageview", "2024-03-03T04:00:00", "lookback-in"),
        _plain("$pageview", "2024-03-04T07:00:00", "lookback-in"),
        _plain("$pageview", "2024-03-03T03:59:59.999999", "lookback-out"),
        _plain("$pageview", "2024-03-04T07:00:00", "lookback-out"),
        # Ended before the scanner started, and exactly when it started.
        _plain("$pageview", "2024-03-04T05:00:00", "before-start"),
        _plain("$pageview", "2024-03-04T06:00:00", "at-start"),
        # Across midnight.
        _plain("$pageview", "2024-03-04T23:50:00", "midnight"),
        _plain("$exception", "2024-03-05T00:10:00", "midnight"),
        # Late: all of it inserted long after the watermark passed it; then an exception of
        # "quiet" arrives late, after it was observed without one.
        _plain("$pageview", "2024-03-04T11:40:00", "late", inserted="2024-03-05T02:00:00"),
        _plain("$exception", "2024-03-04T11:45:00", "late", inserted="2024-03-05T02:00:00"),
        _plain("$pageview", "2024-03-04T09:00:00", "quiet"),
        _plain("$exception", "2024-03-04T09:10:00", "quiet", inserted="2024-03-04T20:00:00"),
        # Team 2 has sessions with the same ids.
        _plain("$exception", "2024-03-04T09:00:00", "a", team=2),
        _plain("$exception", "2024-03-04T09:00:00", "tie-1", team=2),
        _plain("$rageclick", "2024-03-04T09:05:00", "tie-1", team=2),
    ]
    start = at("2024-03-04T06:00:00")
    scanners = [
        oracle.Scanner("edges", 1, start),
        oracle.Scanner("errors", 1, start, filter={"counters": {"exception_count": {"gte": 1}}}),
        oracle.Scanner("scored", 2, at("2024-03-04T00:00:00"), kind="threshold", weights={"exception_count": 2, "rageclick_count": 1}, flag_at=3),
        oracle.Scanner("sampled", 1, start, sample_rate=0.29),
    ]
    ticks = [
        at("2024-03-04T10:35:00.000001"),
        at("2024-03-04T11:35:00.500000"),
        at("2024-03-04T12:40:00"),
        at("2024-03-05T03:00:00"),
        at("2024-03-06T00:36:00"),
    ]
    return History(events, scanners, ticks)


@st.composite
def histories(draw) -> "History":
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    # Shared end times: sessions that end in the same microsecond (keyset ties).
    anchors = [
        T0 + timedelta(seconds=draw(st.integers(0, 48 * HOURS)), microseconds=draw(st.sampled_from([0, 1, 999_999])))
        for _ in range(2)
    ]
    events: list[dict[str, Any]] = []
    moments: list[datetime] = []  # where ticks are interesting: when sessions settle
    edges: list[datetime] = []  # session starts and ends
    for _ in range(draw(st.integers(3, 14))):
        team = draw(st.sampled_from(TEAMS))
        sid = draw(st.sampled_from(SESSION_IDS))
        shape = draw(st.sampled_from(["point", "short", "short", "midnight", "pause", "long", "tie"]))
        if shape == "pause":  # a pause shorter than the inactivity timeout, across a midnight
            midnight = oracle.day_start(D0 + timedelta(days=draw(st.integers(1, 2))))
            start = midnight - timedelta(minutes=draw(st.integers(2, 40)))
            end = midnight + timedelta(minutes=draw(st.integers(1, 25)), microseconds=draw(st.integers(0, 999_999)))
            moments += [midnight + timedelta(minutes=draw(st.integers(1, 34))), end + timedelta(minutes=1)]
        elif shape == "tie":
            end = draw(st.sampled_from(anchors))
            start = end - timedelta(seconds=draw(st.sampled_from([0, 40, 3000])))
        elif shape == "midnight":  # across a midnight
            midnight = oracle.day_start(D0 + timedelta(days=draw(st.integers(1, 2))))
            start = midnight - timedelta(seconds=draw(st.integers(1, HOURS)), microseconds=draw(st.integers(0, 999_999)))
            end = midnight + timedelta(seconds=draw(st.integers(0, HOURS)))
        else:
            start = T0 + timedelta(seconds=draw(st.integers(0, 48 * HOURS)), microseconds=draw(st.integers(0, 999_999)))
            length = {"point": 0, "short": draw(st.integers(1, 3 * HOURS)), "long": draw(st.integers(20 * HOURS, 40 * HOURS))}
            end = start + timedelta(seconds=length[shape])
        if shape == "pause":  # nothing in the last minutes before midnight and the first after
            times = sorted([start, min(start + timedelta(minutes=1), end), end])
        else:
            times = sorted([start, end] + [start + (end - start) * rng.random() for _ in range(draw(st.integers(0, 2)))])
        if draw(st.booleans()):
            times.append(rng.choice(times))  # two events of the session in the same microsecond
        # Late inserts: none, some events, the whole session, or its tail (inserted well after the fact).
        lateness = draw(st.sampled_from(["none", "none", "some", "all", "tail"]))
        moments.append(end + oracle.SETTLE)
        edges += [start, end]
        if end - start > oracle.LOOKBACK:  # inside a long session, once the lookback has passed its start
            moments.append(start + oracle.LOOKBACK + oracle.SETTLE)
        delay = timedelta(seconds=draw(st.integers(HOURS, int(LATEST_LATE_INSERT.total_seconds()))))
        for n, ts in enumerate(times):
            late = {"none": False, "some": rng.random() < 0.4, "all": True, "tail": n == len(times) - 1}[lateness]
            jitter = timedelta(seconds=rng.randint(0, 600))
            inserted = end + delay - jitter if late else ts + timedelta(seconds=2)
            events.append(_event(draw(st.sampled_from(EVENT_NAMES)), ts, sid, team, min(inserted, ts + LATEST_LATE_INSERT), rng))

    scanners = []
    added: dict[str, float] = {}  # scanner id -> fraction of the ticks after which it is added
    for n in range(draw(st.integers(1, 3))):
        # Most exist from the start; some are created later, with a start_at in the past.
        added[f"scan-{n}"] = draw(st.sampled_from([0.0, 0.0, 0.0, 0.5, 0.9]))
        kind = draw(st.sampled_from(["match", "match", "threshold"]))
        scanners.append(
            oracle.Scanner(
                id=f"scan-{n}",
                team_id=draw(st.sampled_from(TEAMS)),
                # Anywhere in the first day and a half, in the first 2 h of a later day (its lookback
                # reaches two days back), or exactly at a session's start or end (keyset edges).
                start_at=draw(
                    st.one_of(
                        st.integers(-2 * HOURS, 36 * HOURS).map(lambda s: T0 + timedelta(seconds=s)),
                        st.integers(-2 * HOURS, 12 * HOURS).map(lambda s: T0 + timedelta(seconds=s)),
                        st.tuples(st.integers(1, 2), st.integers(0, 2 * HOURS)).map(
                            lambda d: T0 + timedelta(days=d[0], seconds=d[1])
                        ),
                        st.sampled_from(sorted(edges)),
                    )
                ),
                filter=draw(st.sampled_from(FILTERS)),
                sample_rate=draw(st.sampled_from(RATES)),
                kind=kind,
                weights={"exception_count": 2, "rageclick_count": 1} if kind == "threshold" else {},
                flag_at=2 if kind == "threshold" else 0,
            )
        )

    # The last tick sees every event inserted and every day settled.
    final = max(
        oracle.day_start(max(e["timestamp"] for e in events).date() + timedelta(days=1)) + oracle.SETTLE + timedelta(minutes=1),
        max(e["inserted_at"] for e in events) + timedelta(minutes=1),
    )
    # Ticks anywhere, or at an interesting moment: exactly when a session settles (its end on
    # the frontier), a microsecond before, or up to 90 minutes after (so that late events find
    # the watermark past the session); sometimes two ticks 5 minutes apart, as the sensor runs them.
    span = final - T0
    anywhere = st.integers(30, int(span.total_seconds() // 60) - 6).map(lambda m: T0 + timedelta(minutes=m))
    near = st.tuples(
        st.sampled_from(sorted(moments)),
        st.sampled_from([timedelta(0), timedelta(microseconds=-1), timedelta(minutes=5), timedelta(minutes=47), timedelta(minutes=90)]),
    ).map(lambda m: m[0] + m[1])
    chosen = set(draw(st.lists(st.one_of(anywhere, near), min_size=1, max_size=3)))
    if draw(st.booleans()):
        chosen.add(max(chosen) + timedelta(minutes=5))
    ticks = sorted(t for t in chosen if T0 + timedelta(minutes=30) <= t < final - timedelta(minutes=1)) + [final]

    # How each tick's runs went: as planned; sweeps ahead of the rollups queued behind them; or
    # the tick's rollup runs lost (failed, never ran). The last tick goes as planned.
    modes = [draw(st.sampled_from(TICK_MODES)) for _ in ticks[:-1]] + ["planned"]
    # Inserts visible only after their stamp: stamped up to VISIBILITY_LAG before a tick's
    # runs, visible from the next tick on (the loader stamps a batch when it starts).
    for e in events:
        if len(ticks) > 1 and rng.random() < 0.2:
            j = rng.randrange(len(ticks) - 1)
            stamp = ticks[j] - timedelta(seconds=rng.randint(0, int(oracle.VISIBILITY_LAG.total_seconds()) - 1))
            if e["timestamp"] <= stamp:
                e["inserted_at"], e["_visible_tick"] = stamp, j + 1
    # At-least-once ingestion: some events stored again later (same uuid, session and time).
    for e in list(events):
        if rng.random() < 0.1:
            events.append({**e, "inserted_at": e["inserted_at"] + timedelta(minutes=rng.randint(1, 600))})
    scanner_ticks = {sid: int(fraction * (len(ticks) - 1)) for sid, fraction in added.items()}
    # A team that runs out of quota, whose limit is raised at some tick (the last one at the latest).
    quotas = {}
    if draw(st.booleans()):
        quotas[draw(st.sampled_from(TEAMS))] = (draw(st.integers(0, 2)), draw(st.integers(0, len(ticks) - 1)))
    return History(events, scanners, ticks, modes, scanner_ticks, quotas)


@dataclass
class History:
    events: list[dict[str, Any]]
    scanners: list[oracle.Scanner]
    ticks: list[datetime]
    modes: list[str] | None = None  # per tick: planned | sweeps first | rollups lost
    added: dict[str, int] | None = None  # scanner id -> the tick before which it is created
    quotas: dict[int, tuple[int, int]] | None = None  # team -> (limit at first, tick it is raised at)

    def mode(self, k: int) -> str:
        return self.modes[k] if self.modes else "planned"

    def describe(self) -> str:
        lines = [f"scanner {s} added before tick {(self.added or {}).get(s.id, 0)}" for s in self.scanners]
        lines += [f"quota of team {t}: {limit}, raised at tick {k}" for t, (limit, k) in (self.quotas or {}).items()]
        lines += [
            f"event {e['team_id']} {e['$session_id'][:8]!r} {e['event']} ts={e['timestamp'].isoformat()} "
            f"ins={e['inserted_at'].isoformat()} visible from tick {e.get('_visible_tick', 0)}"
            for e in sorted(self.events, key=lambda e: (e["team_id"], e["$session_id"], e["timestamp"]))
        ]
        lines += [f"tick {k} {t.isoformat()} {self.mode(k)}" for k, t in enumerate(self.ticks)]
        return "\n".join(lines)


# --- driving the package ---------------------------------------------------------


class Stack:
    """A fresh ClickHouse database, a cleaned Postgres database, a fresh Dagster instance."""

    def __init__(self, chdb_url: str, postgres: PostgresResource, folder: Path):
        self.clickhouse = ClickHouseResource(url=chdb_url, database=f"p_{uuid.uuid4().hex[:12]}")
        self.clickhouse.migrate()
        self.postgres = postgres
        self.pool = postgres.pool()
        with self.pool.connection() as conn:
            conn.execute("TRUNCATE scanners, observations, observation_batches, team_quotas RESTART IDENTITY CASCADE")
        self.object_store = object_store_for(f"file://{folder / uuid.uuid4().hex}", S3Resource())
        self.defs = build_definitions(
            {"clickhouse": self.clickhouse, "postgres": self.postgres, "object_store": self.object_store}
        )

    def set_quota(self, team_id: int, period: date, limit: int) -> None:
        with self.pool.connection() as conn:
            conn.execute(sql.load("postgres/quota_set.sql"), {"team_id": team_id, "period": period, "limit": limit})

    def insert(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        columns = {name: [e[name] for e in events] for name in EVENT_COLUMNS}
        insert_events(self.clickhouse.client(), self.clickhouse.events, columns)

    def add_scanner(self, scanner: oracle.Scanner) -> None:
        rule: dict[str, Any] = {}
        if scanner.kind == "threshold":
            rule = {"score": " + ".join(f"{name} * {w}" for name, w in scanner.weights.items()), "flag_at": scanner.flag_at}
        definition = {
            "id": scanner.id,
            "team_id": scanner.team_id,
            "name": f"property scanner {scanner.id}",
            "kind": scanner.kind,
            "filter": scanner.filter,
            "rule": rule,
            "sample_rate": scanner.sample_rate,
            "start_at": scanner.start_at.isoformat(),
        }
        scanner_store.save(self.pool, parse_scanner(definition, source="property test"))

    def observations(self) -> dict[tuple[str, str], tuple[str, float | None, date, bool]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT scanner_id, session_id, verdict, score, day, (evidence->'session'->>'late')::boolean FROM observations"
            ).fetchall()
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}

    def batches_agree(self) -> None:
        """Every batch row names an object holding exactly the observations written with it (SPEC §8)."""
        with self.pool.connection() as conn:
            batches = conn.execute("SELECT scanner_id, object_key, rows FROM observation_batches").fetchall()
            rows = conn.execute("SELECT scanner_id, session_id, verdict, batch_key FROM observations").fetchall()
        by_key: dict[str, set[tuple[str, str, str]]] = {}
        for scanner_id, session_id, verdict, key in rows:
            by_key.setdefault(key, set()).add((scanner_id, session_id, verdict))
        assert sorted(b[1] for b in batches) == sorted(by_key), "batch rows and observations' batch keys differ"
        for scanner_id, key, count in batches:
            lines = [json.loads(line) for line in gzip.decompress(self.object_store.get(key)).splitlines()]
            assert len(lines) == count == len(by_key[key])
            assert {(o["scanner_id"], o["session_id"], o["verdict"]) for o in lines} == by_key[key]

    def duplicates(self) -> list[tuple]:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT scanner_id, session_id, count(*) FROM observations GROUP BY 1, 2 HAVING count(*) > 1"
            ).fetchall()

    def rollups(self) -> dict[tuple[int, date, str], dict[str, Any]]:
        result = self.clickhouse.client().query(
            "SELECT team_id, day, session_id, event_count, pageview_count, autocapture_count, rageclick_count, "
            "exception_count, ai_generation_count, input_tokens, output_tokens, cost_usd, first_timestamp, "
            "last_timestamp, max_inserted_at, distinct_id, entry_url FROM session_counter_rollups_v2 FINAL"
        )
        out = {}
        for row in result.named_results():
            key = (int(row.pop("team_id")), row.pop("day"), row.pop("session_id"))
            for column in ("first_timestamp", "last_timestamp", "max_inserted_at"):
                row[column] = _utc(row[column])
            out[key] = row
        return out


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def assert_rollups_match(actual: dict, expected: dict, days: set[date] | None, what: str) -> None:
    """Rows of `days` (None: every row present) equal the oracle's counters."""
    if days is not None:
        actual = {k: v for k, v in actual.items() if k[1] in days}
        expected = {k: v for k, v in expected.items() if k[1] in days}
        assert set(actual) == set(expected), f"{what}: rollup keys differ: extra {set(actual) - set(expected)}, missing {set(expected) - set(actual)}"
    for key, row in actual.items():
        assert key in expected, f"{what}: unexpected rollup row {key}"
        want = expected[key]
        got = {name: row[name] for name in oracle.COUNTERS if name != "cost_usd"}
        assert got == {name: want[name] for name in got}, f"{what}: counters of {key}"
        assert row["cost_usd"] == want["cost_usd"], f"{what}: cost of {key}"
        for column in ("first_timestamp", "last_timestamp", "max_inserted_at"):
            assert row[column] == want[column], f"{what}: {column} of {key}"
        assert row["distinct_id"] in want["distinct_ids"], f"{what}: distinct_id of {key}"
        assert row["entry_url"] in want["entry_urls"], f"{what}: entry_url of {key}"


def expected_observations(model: oracle.Model) -> dict[tuple[str, str], tuple[str, float | None, date, bool]]:
    return {key: (o.verdict, o.score, o.day, o.late) for key, o in model.observations.items()}


def tick_requests(stack: "Stack", instance: dg.DagsterInstance, now: datetime, mode: str) -> list[dg.RunRequest]:
    """The sensor's requests for this tick, in the order the run queue gets to them."""
    plan = tick_plan.plan_tick(read_tick_state(instance, stack.pool, now))
    if plan.add_scanner_partitions:
        instance.add_dynamic_partitions(scanner_partitions_def.name, plan.add_scanner_partitions)
    requests = run_requests(plan, now, "property test")
    rollups = [r for r in requests if r.job_name == rollups_job.name]
    sweep_runs = [r for r in requests if r.job_name != rollups_job.name]
    if mode == "sweeps first":  # the rollup runs still queued behind the sweeps
        return sweep_runs + rollups
    if mode == "rollups lost":  # the rollup runs failed or never ran
        return sweep_runs
    return rollups + sweep_runs


def run_history(history: History, chdb_url: str, postgres: PostgresResource, folder: Path) -> "Stack":
    """Drive the package tick by tick, checking every run against the model; the stores."""
    stack = Stack(chdb_url, postgres, folder)
    model = oracle.Model(history.events)
    added = history.added or {}
    quotas = history.quotas or {}
    period = date(2024, 3, 1)  # every tick of a history falls in March 2024
    for team, (limit, _) in quotas.items():
        stack.set_quota(team, period, limit)
        model.set_quota(team, limit)
    rolled: set[date] = set()
    with dg.DagsterInstance.ephemeral() as instance:
        for k, now in enumerate(history.ticks):
            stack.insert([e for e in history.events if e.get("_visible_tick", 0) == k])
            for scanner in history.scanners:
                if added.get(scanner.id, 0) == k:
                    stack.add_scanner(scanner)
                    model.add_scanner(scanner)
            for team, (_, raised_at) in quotas.items():
                if raised_at == k:
                    stack.set_quota(team, period, oracle.DEFAULT_MONTHLY_QUOTA)
                    model.set_quota(team, oracle.DEFAULT_MONTHLY_QUOTA)
            for run in (r for request in tick_requests(stack, instance, now, history.mode(k))
                        for r in execute_request(stack.defs, instance, request)):  # fmt: skip
                assert run["success"], f"tick {k} {now}: failed run {run}"
                partition = run["partition"]
                if "|" not in partition:
                    day = date.fromisoformat(partition)
                    model.roll(day, now, k)
                    rolled.add(day)
                    # The day and the earlier days its late pass re-rolled read as the model says.
                    days = {day, *model.rollups[day].late_days}
                    expected = {key: v for d in days for key, v in model.rows(d).items()}
                    assert_rollups_match(stack.rollups(), expected, days, f"tick {k} {now}: rollups of {partition}")
                    continue
                day_text, scanner_id = partition.split("|")
                want = model.sweep(scanner_id, date.fromisoformat(day_text), now, k)
                got = (datetime.fromisoformat(run["watermark_end"]), run["watermark_session_id"], run["complete"])
                assert got == (*want.watermark, want.complete), f"tick {k} {now}: watermark of {partition}"
                seen = datetime.fromisoformat(run["seen_until"]) if run["seen_until"] else None
                assert seen == want.seen_until, f"tick {k} {now}: seen_until of {partition}"

            assert stack.observations() == expected_observations(model), f"tick {k} {now}: observations"
            assert stack.duplicates() == []
            stack.batches_agree()

    final = history.ticks[-1]
    if currently_in_test_context():  # what the examples covered, in hypothesis's statistics
        for o in model.observations.values():
            event("observed late" if o.late else "observed")
        for s in oracle.sessions(history.events, final):
            if s.end - s.start > oracle.LOOKBACK:
                event("session longer than the lookback")
        for k in range(len(history.ticks)):
            event(f"tick mode: {history.mode(k)}")
        if any(e.get("_visible_tick", 0) for e in history.events):
            event("insert visible after its stamp")
        if len({e["uuid"] for e in history.events}) < len(history.events):
            event("an event stored twice")
        if quotas:
            event("quota ran out and was raised")
        if any(added.values()):
            event("scanner created later with a past start")
    # Nothing lost (SPEC §5, §6 "Late data"), checked without the oracle's walk: after the last
    # tick, every session of the scanner's team with a valid id, ended after the scanner
    # started, no longer than the lookback, passing the filter and the sample has been
    # observed. (Its events all arrived within 40 h, inside the 48 h lateness horizon, so
    # the sweep after the last of them considers it whole; every quota was raised by then.)
    observed = stack.observations()
    for scanner in history.scanners:
        for s in oracle.sessions(history.events, final):
            if (
                s.team_id == scanner.team_id
                and 1 <= len(s.session_id) <= oracle.MAX_SESSION_ID_LENGTH
                and s.end > scanner.start_at
                and s.end - s.start <= oracle.LOOKBACK
                and scanner.holds(s)
                and oracle.sampled(s.session_id, scanner.id, scanner.sample_rate)
            ):
                assert (scanner.id, s.session_id) in observed, f"lost: {scanner.id} {s.session_id!r}"
    # Every rolled day equals a fresh aggregation of everything; other rows (late events of
    # days no partition rolled) are complete aggregations too.
    everything = oracle.rollups(history.events, final)
    final_rows = stack.rollups()
    assert_rollups_match(final_rows, everything, rolled, "final")
    assert_rollups_match(final_rows, everything, None, "final")
    return stack


# --- the properties --------------------------------------------------------------


# CI budget: a few derandomized examples, and a failure is reported as found rather than
# shrunk for minutes (each example costs seconds); `pytest --slow` loads the "slow"
# profile (tests/conftest.py): many more random examples, shrunk.
SLOW = settings.get_current_profile_name() == "slow"
BUDGET: dict[str, Any] = (
    {}
    if SLOW
    else {"max_examples": 8, "derandomize": True, "phases": [Phase.explicit, Phase.reuse, Phase.generate]}
)


@pytest.mark.timeout(3600 if SLOW else 600)  # 200 examples of a few seconds each, then shrinking
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    **BUDGET,
)
@given(history=histories())
@example(history=boundary_history())
def test_sweeps_match_the_oracle(history, chdb_url, postgres_resource, tmp_path):
    note(history.describe())
    run_history(history, chdb_url, postgres_resource, tmp_path)


# --- discrepancies the oracle found, as plain examples -----------------------------


def ticked(history: History, chdb_url: str, postgres: PostgresResource, folder: Path) -> dict[str, dict[str, Any]]:
    """Run the ticks (checked against the model); {session_id: evidence} of the first scanner."""
    stack = run_history(history, chdb_url, postgres, folder)
    with stack.pool.connection() as conn:
        rows = conn.execute(
            "SELECT session_id, evidence FROM observations WHERE scanner_id = %s", (history.scanners[0].id,)
        ).fetchall()
    return dict(rows)


def test_a_session_longer_than_the_lookback_is_not_observed_whatever_the_tick_cadence(chdb_url, postgres_resource, tmp_path):
    """SPEC §6.3: a session that started more than 26 h before the watermark is no candidate;
    the late-data rule is for sessions the watermark already passed.

    The package also applies its late branch (max_inserted_at newer than the previous sweep,
    lookback widened to 48 + 26 h) to sessions the watermark has not passed yet: whether this
    30-hour session is observed then depends on the tick cadence.
    """
    events = [_plain("$pageview", "2024-03-03T22:00:00", "long"), _plain("$autocapture", "2024-03-05T04:00:00", "long")]
    scanner = oracle.Scanner("scan-0", 1, at("2024-03-04T00:00:00"), filter={"counters": {"event_count": {"gte": 2}}})
    cadences = {
        "3-hour gap": [at("2024-03-05T02:00:00"), at("2024-03-05T05:00:00"), at("2024-03-06T01:00:00")],
        "5-minute ticks": [at("2024-03-05T02:00:00"), at("2024-03-05T04:30:00"), at("2024-03-05T04:35:00"), at("2024-03-06T01:00:00")],
    }
    seen = {}
    for name, ticks in cadences.items():
        seen[name] = set(ticked(History(events, [scanner], ticks), chdb_url, postgres_resource, tmp_path))
    assert seen == {"3-hour gap": set(), "5-minute ticks": set()}


def test_a_scanner_starting_before_2am_sees_whole_sessions_from_two_days_before(chdb_url, postgres_resource, tmp_path):
    """SPEC §6.1/§6.3: start and counters are those of the whole session.

    A scanner starting at 01:00 looks back to 23:00 two days before (26 h), but the sensor
    rolls up only from the day before the scanner's start: the earlier day's events are
    missing from the sessions it sees. "too-early" (started 21:00, before the lookback) is
    then observed, and "counted" (3 events, started 23:30) is observed with 2.
    """
    events = [
        _plain("$pageview", "2024-03-04T21:00:00", "too-early"),
        _plain("$pageview", "2024-03-05T12:00:00", "too-early"),
        _plain("$autocapture", "2024-03-06T01:30:00", "too-early"),
        _plain("$pageview", "2024-03-04T23:30:00", "counted"),
        _plain("$pageview", "2024-03-05T12:00:00", "counted"),
        _plain("$autocapture", "2024-03-06T01:30:00", "counted"),
    ]
    scanner = oracle.Scanner("scan-0", 1, at("2024-03-06T01:00:00"))
    ticks = [at("2024-03-06T03:00:00"), at("2024-03-07T01:00:00")]
    seen = ticked(History(events, [scanner], ticks), chdb_url, postgres_resource, tmp_path)
    assert {sid: evidence.get("event_count") for sid, evidence in seen.items()} == {"counted": 3}


def test_city_hash64_matches_clickhouse(clickhouse_resource):
    rng = random.Random(5)
    alphabet = "abcXYZ-_0123é€"
    texts = ["", "a", "ab", "abc"] + [
        "".join(rng.choice(alphabet) for _ in range(n)) for n in [*range(0, 200), *(rng.randint(0, 400) for _ in range(100))]
    ]
    result = clickhouse_resource.client().query(
        "SELECT toString(cityHash64(s)) FROM (SELECT arrayJoin({texts:Array(String)}) AS s)", parameters={"texts": texts}
    )
    theirs = [int(row[0]) for row in result.result_rows]
    assert len(theirs) == len(texts)
    mismatches = [(t, h) for t, h in zip(texts, theirs) if oracle.city_hash64(t) != h]
    assert mismatches == []
