"""Property tests: random event histories swept tick by tick through the package's
real code path (`execute_tick`, as `session-assets sweep --now` runs it) on real
chDB, Postgres and a local object store, compared with the independent oracle in
tests/oracle.py.

`pytest --slow tests/test_properties.py` runs the hypothesis "slow" profile
(many more examples) instead of the CI budget.
"""

from __future__ import annotations

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
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from session_assets.definitions import build_definitions
from session_assets.events_io import EVENT_COLUMNS, insert_events
from session_assets.resources import ClickHouseResource, ObjectStoreResource, PostgresResource
from session_assets.scanners import parse_scanner
from session_assets.scanners import store as scanner_store
from session_assets.sensors import execute_tick
from tests import oracle
from tests.support import at

UTC = oracle.UTC
D0 = date(2024, 3, 4)
T0 = oracle.day_start(D0)

# --- generating histories --------------------------------------------------------

TEAMS = (1, 2)
# The same ids in several teams; lengths 0, 1, 128 and 129 at the eligibility edges.
SESSION_IDS = ("a", "b", "s-1", "S-1", "z" * 128, "y" * 129, "")
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
RATES = (1.0, 1.0, 1.0, 0.29, 0.29, 0.00004, 0.0)
LATEST_LATE_INSERT = timedelta(hours=40)  # well inside the 48 h lateness horizon


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


@st.composite
def histories(draw) -> "History":
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    # Shared end times: sessions that end in the same microsecond (keyset ties).
    anchors = [T0 + timedelta(seconds=draw(st.integers(0, 60 * 3600)), microseconds=draw(st.sampled_from([0, 1, 999_999]))) for _ in range(2)]
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 9))):
        team = draw(st.sampled_from(TEAMS))
        sid = draw(st.sampled_from(SESSION_IDS))
        shape = draw(st.sampled_from(["point", "short", "short", "midnight", "long", "tie"]))
        if shape == "tie":
            end = draw(st.sampled_from(anchors))
            start = end - timedelta(seconds=draw(st.sampled_from([0, 40, 3000])))
        else:
            start = T0 + timedelta(seconds=draw(st.integers(0, 60 * 3600)), microseconds=draw(st.integers(0, 999_999)))
            if shape == "midnight":  # across a midnight
                midnight = oracle.day_start(start.date() + timedelta(days=1))
                start = midnight - timedelta(seconds=draw(st.integers(1, 3600)))
                end = midnight + timedelta(seconds=draw(st.integers(0, 3600)))
            else:
                length = {"point": 0, "short": draw(st.integers(1, 3 * 3600)), "long": draw(st.integers(20 * 3600, 50 * 3600))}[shape]
                end = start + timedelta(seconds=length)
        times = [start, end] + [start + (end - start) * rng.random() for _ in range(draw(st.integers(0, 2)))]
        if draw(st.booleans()):
            times.append(rng.choice(times))  # two events in the same microsecond
        for ts in times:
            if draw(st.integers(0, 5)) == 0:  # late: inserted well after its timestamp
                inserted = ts + timedelta(seconds=draw(st.integers(3600, int(LATEST_LATE_INSERT.total_seconds()))))
            else:
                inserted = ts + timedelta(seconds=2)
            events.append(_event(draw(st.sampled_from(EVENT_NAMES)), ts, sid, team, inserted, rng))

    scanners = []
    for n in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["match", "match", "threshold"]))
        scanners.append(
            oracle.Scanner(
                id=f"scan-{n}",
                team_id=draw(st.sampled_from(TEAMS)),
                start_at=T0 + timedelta(seconds=draw(st.integers(0, 60 * 3600))),
                filter=draw(st.sampled_from(FILTERS)),
                sample_rate=draw(st.sampled_from(RATES)),
                kind=kind,
                weights={"exception_count": 2, "rageclick_count": 1} if kind == "threshold" else {},
                flag_at=2 if kind == "threshold" else 0,
            )
        )

    # Every day settled, every event inserted: the last tick must see everything.
    last_day = max(max(e["timestamp"], e["inserted_at"]) for e in events).date()
    final = max(
        oracle.day_start(last_day + timedelta(days=1)) + oracle.SETTLE + timedelta(minutes=1),
        max(e["inserted_at"] for e in events) + timedelta(minutes=1),
    )
    offsets = draw(st.lists(st.integers(60, int((final - T0).total_seconds() // 60) - 1), min_size=1, max_size=4, unique=True))
    ticks = [T0 + timedelta(minutes=m) for m in sorted(offsets)] + [final]
    return History(events, scanners, ticks)


@dataclass
class History:
    events: list[dict[str, Any]]
    scanners: list[oracle.Scanner]
    ticks: list[datetime]

    def describe(self) -> str:
        lines = [f"scanner {s}" for s in self.scanners]
        lines += [
            f"event {e['team_id']} {e['$session_id'][:8]!r} {e['event']} ts={e['timestamp'].isoformat()} ins={e['inserted_at'].isoformat()}"
            for e in sorted(self.events, key=lambda e: (e["team_id"], e["$session_id"], e["timestamp"]))
        ]
        lines += [f"tick {t.isoformat()}" for t in self.ticks]
        return "\n".join(lines)


# --- driving the package ---------------------------------------------------------


class Stack:
    """A fresh ClickHouse database, a cleaned Postgres database, a fresh Dagster instance."""

    def __init__(self, chdb_url: str, postgres: PostgresResource, folder: Path):
        self.clickhouse = ClickHouseResource(url=chdb_url, database=f"p_{uuid.uuid4().hex[:12]}")
        self.postgres = postgres
        self.pool = postgres.pool()
        with self.pool.connection() as conn:
            conn.execute("TRUNCATE scanners, observations, observation_batches, team_quotas RESTART IDENTITY CASCADE")
        self.object_store = ObjectStoreResource(url=f"file://{folder / uuid.uuid4().hex}", s3=S3Resource())
        self.defs = build_definitions(
            {"clickhouse": self.clickhouse, "postgres": self.postgres, "object_store": self.object_store}
        )

    def insert(self, events: list[dict[str, Any]]) -> None:
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

    def duplicates(self) -> list[tuple]:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT scanner_id, session_id, count(*) FROM observations GROUP BY 1, 2 HAVING count(*) > 1"
            ).fetchall()

    def rollups(self) -> dict[tuple[int, date, str], dict[str, Any]]:
        result = self.clickhouse.client().query(
            "SELECT team_id, day, session_id, event_count, pageview_count, autocapture_count, rageclick_count, "
            "exception_count, ai_generation_count, input_tokens, output_tokens, cost_usd, first_timestamp, "
            "last_timestamp, max_inserted_at, distinct_id, entry_url FROM session_counter_rollups FINAL"
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


def expected_observations(model: oracle.Sweeps) -> dict[tuple[str, str], tuple[str, float | None, date, bool]]:
    return {key: (o.verdict, o.score, o.day, o.late) for key, o in model.observations.items()}


def run_history(history: History, chdb_url: str, postgres: PostgresResource, folder: Path) -> None:
    stack = Stack(chdb_url, postgres, folder)
    stack.insert(history.events)
    for scanner in history.scanners:
        stack.add_scanner(scanner)
    model = oracle.Sweeps(history.events, history.scanners)
    rolled: set[date] = set()
    with dg.DagsterInstance.ephemeral() as instance:
        for now in history.ticks:
            before = dict(model.partitions)
            report = execute_tick(stack.defs, instance, stack.pool, now)
            model.tick(now)
            failed = [run for run in report["runs"] if not run["success"]]
            assert not failed, f"tick {now}: failed runs {failed}"

            # Rollups: every day rolled by this tick reads as a fresh aggregation as of the tick.
            days = {date.fromisoformat(r["partition"]) for r in report["runs"] if "|" not in r["partition"]}
            rolled |= days
            assert_rollups_match(stack.rollups(), oracle.rollups(history.events, now), days, f"tick {now}")

            # Sweeps: the same partitions swept, ending at the same watermarks.
            swept = {
                (r["partition"].split("|")[1], date.fromisoformat(r["partition"].split("|")[0])): r
                for r in report["runs"]
                if "|" in r["partition"]
            }
            expected = {key: p for key, p in model.partitions.items() if before.get(key) != p}
            assert set(swept) == set(expected), f"tick {now}: swept {sorted(swept)}, oracle {sorted(expected)}"
            for key, run in swept.items():
                partition = expected[key]
                got = (datetime.fromisoformat(run["watermark_end"]), run["watermark_session_id"], run["complete"])
                assert got == (*partition.watermark, partition.complete(key[1])), f"tick {now}: watermark of {key}"

            assert stack.observations() == expected_observations(model), f"tick {now}: observations"
            assert stack.duplicates() == []

    final = history.ticks[-1]
    for o in model.observations.values():
        event("observed late" if o.late else "observed")
    for s in oracle.sessions(history.events, final):
        if s.end - s.start > oracle.LOOKBACK:
            event("session longer than the lookback")
    # Nothing lost: after the last tick (every day settled, every event inserted), every
    # session the SPEC makes eligible without any walk subtleties has been observed.
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


# --- the properties --------------------------------------------------------------


# CI budget: a few derandomized examples; `--slow` loads the "slow" profile (tests/conftest.py).
SLOW = settings.get_current_profile_name() == "slow"
BUDGET: dict[str, Any] = {} if SLOW else {"max_examples": 10, "derandomize": True}
import os
if os.environ.get("NOSHRINK"):
    from hypothesis import Phase
    BUDGET["phases"] = [Phase.explicit, Phase.reuse, Phase.generate]
if os.environ.get("NEX"):
    BUDGET["max_examples"] = int(os.environ["NEX"])
    BUDGET["derandomize"] = False


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    **BUDGET,
)
@given(history=histories())
def test_sweeps_match_the_oracle(history, chdb_url, postgres_resource, tmp_path):
    note(history.describe())
    run_history(history, chdb_url, postgres_resource, tmp_path)


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
