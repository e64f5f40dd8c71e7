"""Realism and reproducibility checks for session_assets.commands.demo_data."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from benchmarks.bulk_events import generate_bulk_events, uuid_bytes_to_strings, uuid_bytes_to_uuids
from session_assets.commands.demo_data import EVENT_COLUMNS, SESSION_INACTIVITY, generate_events

UTC = timezone.utc
NOW = datetime(2024, 6, 10, 13, 37, 42, 123456, tzinfo=UTC)
DAYS = 3
TEAMS = (1, 2, 3)
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
LATE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def events() -> dict[str, list[Any]]:
    return generate_events(days=DAYS, now=NOW)


@pytest.fixture(scope="module")
def props(events: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [json.loads(p) for p in events["properties"]]


@pytest.fixture(scope="module")
def sessions(events: dict[str, list[Any]]) -> dict[str, list[int]]:
    """Row indices per $session_id, in timestamp order (rows are sorted)."""
    out: dict[str, list[int]] = defaultdict(list)
    for i, sid in enumerate(events["$session_id"]):
        out[sid].append(i)
    return dict(out)


def _span(events: dict[str, list[Any]], rows: list[int]) -> timedelta:
    return events["timestamp"][rows[-1]] - events["timestamp"][rows[0]]


# -- shape -------------------------------------------------------------------


def test_columns_lengths_and_types(events: dict[str, list[Any]]) -> None:
    assert tuple(events) == EVENT_COLUMNS
    n = len(events["uuid"])
    assert n > 1000
    assert all(len(col) == n for col in events.values())
    assert all(isinstance(v, uuid.UUID) and v.version == 7 for v in events["uuid"])
    assert len(set(events["uuid"])) == n
    for name in ("event", "properties", "distinct_id", "$session_id"):
        assert all(isinstance(v, str) for v in events[name]), name
    for name in ("timestamp", "inserted_at"):
        assert all(isinstance(v, datetime) and v.utcoffset() == timedelta(0) for v in events[name]), name
    assert all(type(v) is int for v in events["team_id"])
    # Microsecond precision is actually used, not just whole seconds.
    assert sum(ts.microsecond != 0 for ts in events["timestamp"]) > 0.9 * n


def test_sorted_by_timestamp_then_uuid(events: dict[str, list[Any]]) -> None:
    keys = [(ts, u.int) for ts, u in zip(events["timestamp"], events["uuid"])]
    assert keys == sorted(keys)


def test_timestamps_within_window(events: dict[str, list[Any]]) -> None:
    assert min(events["timestamp"]) >= NOW - timedelta(days=DAYS)
    assert max(events["timestamp"]) <= NOW
    # The window is actually covered, from its first hours to its last.
    assert min(events["timestamp"]) < NOW - timedelta(days=DAYS) + timedelta(hours=3)
    assert max(events["timestamp"]) > NOW - timedelta(hours=3)


def test_properties_are_compact_json_with_session_and_lib(
    events: dict[str, list[Any]], props: list[dict[str, Any]]
) -> None:
    for raw, p, sid, event in zip(events["properties"], props, events["$session_id"], events["event"]):
        assert isinstance(p, dict)
        assert '": ' not in raw and '", "' not in raw  # compact separators
        assert p["$session_id"] == sid
        assert p["$lib"] == ("posthog-python" if event == "$ai_generation" else "web")


# -- web behaviour ------------------------------------------------------------


def test_web_event_mix(events: dict[str, list[Any]], props: list[dict[str, Any]]) -> None:
    counts = Counter(events["event"])
    n = len(events["event"])
    assert counts["$pageview"] > 0.15 * n
    assert counts["$autocapture"] > 0.15 * n
    assert 0 < counts["$rageclick"] < 0.05 * n
    assert 0 < counts["$exception"] < 0.05 * n
    assert counts["$pageleave"] > 0

    urls = {p["$current_url"] for p, e in zip(props, events["event"]) if e == "$pageview"}
    assert all(re.fullmatch(r"https://shop\.example\.com/[a-z0-9/]*", u) for u in urls)
    assert "https://shop.example.com/checkout" in urls
    assert "https://shop.example.com/pricing" in urls
    assert any(re.fullmatch(r"https://shop\.example\.com/products/\d+", u) for u in urls)

    event_types = Counter(p["$event_type"] for p, e in zip(props, events["event"]) if e == "$autocapture")
    assert set(event_types) == {"click", "submit", "change"}
    assert event_types["click"] > event_types["submit"]

    for p, e in zip(props, events["event"]):
        if e == "$exception":
            assert isinstance(p["$exception_type"], str) and p["$exception_type"]
            assert isinstance(p["$exception_message"], str) and p["$exception_message"]
        if e in ("$pageview", "$autocapture", "$rageclick", "$exception", "$pageleave"):
            assert p["$current_url"].startswith("https://shop.example.com/")


def test_no_gap_over_30_minutes_inside_a_session(
    events: dict[str, list[Any]], sessions: dict[str, list[int]]
) -> None:
    ts = events["timestamp"]
    gaps = [ts[b] - ts[a] for rows in sessions.values() for a, b in zip(rows, rows[1:])]
    assert max(gaps) <= SESSION_INACTIVITY
    # Realistic spacing: quick interactions, minutes of reading, and idle stretches.
    assert sum(g < timedelta(seconds=10) for g in gaps) > 0.2 * len(gaps)
    assert any(timedelta(minutes=1) < g < timedelta(minutes=5) for g in gaps)
    assert any(g > timedelta(minutes=5) for g in gaps)


def test_users_return_with_a_new_session_after_inactivity(
    events: dict[str, list[Any]], sessions: dict[str, list[int]]
) -> None:
    ts = events["timestamp"]
    by_user: dict[tuple[int, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    for rows in sessions.values():
        key = (events["team_id"][rows[0]], events["distinct_id"][rows[0]])
        # A session belongs to one user and team.
        assert {(events["team_id"][i], events["distinct_id"][i]) for i in rows} == {key}
        by_user[key].append((ts[rows[0]], ts[rows[-1]]))
    multi = {k: sorted(v) for k, v in by_user.items() if len(v) > 1}
    assert len(multi) >= len(TEAMS)
    for team in TEAMS:
        # Some user's next session begins after > 30 min of inactivity.
        assert any(
            later[0] - earlier[1] > SESSION_INACTIVITY
            for (t, _), spans in multi.items()
            if t == team
            for earlier, later in zip(spans, spans[1:])
        ), team


# -- AI -----------------------------------------------------------------------


def test_ai_generation_properties(events: dict[str, list[Any]], props: list[dict[str, Any]]) -> None:
    ai_rows = [i for i, e in enumerate(events["event"]) if e == "$ai_generation"]
    assert len(ai_rows) > 50
    for i in ai_rows:
        p, raw = props[i], events["properties"][i]
        assert type(p["$ai_input_tokens"]) is int and p["$ai_input_tokens"] > 0
        assert type(p["$ai_output_tokens"]) is int and p["$ai_output_tokens"] > 0
        assert isinstance(p["$ai_model"], str) and p["$ai_model"]
        cost = p["$ai_total_cost_usd"]
        assert isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost > 0
        # A plain fixed-point JSON number, up to 9 decimals, never an exponent.
        match = re.search(r'"\$ai_total_cost_usd":(-?[0-9.eE+-]+)[,}]', raw)
        assert match and re.fullmatch(r"\d+\.\d{1,9}", match.group(1)), match
        assert cost == pytest.approx(p["$ai_input_cost_usd"] + p["$ai_output_cost_usd"], abs=2e-9)
    assert len({props[i]["$ai_model"] for i in ai_rows}) >= 3


def test_some_ai_sessions_mix_with_pageviews(events: dict[str, list[Any]], sessions: dict[str, list[int]]) -> None:
    kinds = [{events["event"][i] for i in rows} for rows in sessions.values()]
    assert any("$ai_generation" in k and "$pageview" in k for k in kinds)
    assert any(k == {"$ai_generation"} for k in kinds)


# -- time edges ---------------------------------------------------------------


def test_each_team_has_a_session_longer_than_24h(
    events: dict[str, list[Any]], sessions: dict[str, list[int]]
) -> None:
    long_by_team: Counter[int] = Counter()
    ts = events["timestamp"]
    for rows in sessions.values():
        if _span(events, rows) > timedelta(hours=24):
            long_by_team[events["team_id"][rows[0]]] += 1
            gaps = [ts[b] - ts[a] for a, b in zip(rows, rows[1:])]
            assert max(gaps) <= SESSION_INACTIVITY
            assert timedelta(minutes=10) < sum(gaps, timedelta()) / len(gaps) < timedelta(minutes=30)
    assert all(long_by_team[t] >= 1 for t in TEAMS), long_by_team


def test_sessions_cross_midnight(events: dict[str, list[Any]], sessions: dict[str, list[int]]) -> None:
    crossing_teams = set()
    for rows in sessions.values():
        first, last = events["timestamp"][rows[0]], events["timestamp"][rows[-1]]
        if first.date() != last.date() and last - first < timedelta(hours=24):
            crossing_teams.add(events["team_id"][rows[0]])
    assert crossing_teams == set(TEAMS)


def test_late_arriving_events(events: dict[str, list[Any]]) -> None:
    lags = [ins - ts for ts, ins in zip(events["timestamp"], events["inserted_at"])]
    assert all(ins <= NOW for ins in events["inserted_at"])
    assert all(lag >= timedelta(0) for lag in lags)
    late = [lag for lag in lags if lag > LATE]
    assert 0.01 <= len(late) / len(lags) <= 0.03
    assert all(timedelta(hours=1) <= lag <= timedelta(hours=30) for lag in late)
    assert max(late) > timedelta(hours=6)  # some are very late, not just a little
    on_time = [(ts, lag) for ts, lag in zip(events["timestamp"], lags) if lag <= LATE]
    assert all(lag <= timedelta(seconds=10) for _, lag in on_time)
    # Below 0.5 s only where the cap at `now` cut the delay short.
    assert all(lag >= timedelta(seconds=0.5) or ts + lag == NOW for ts, lag in on_time)


# -- ids and teams --------------------------------------------------------------


def test_id_formats(events: dict[str, list[Any]], sessions: dict[str, list[int]]) -> None:
    for sid, rows in sessions.items():
        assert len(sid) == 36 and UUID7.match(sid), sid
        # Like PostHog, the session id embeds the session's start (ms).
        first = events["timestamp"][rows[0]]
        assert uuid.UUID(sid).int >> 80 == (first - EPOCH) // timedelta(milliseconds=1)
    for team, did in zip(events["team_id"], events["distinct_id"]):
        assert re.fullmatch(rf"user-{team}-\d+", did), did
    for ts, u in zip(events["timestamp"], events["uuid"]):
        assert u.int >> 80 == (ts - EPOCH) // timedelta(milliseconds=1)


def test_teams_and_volumes(events: dict[str, list[Any]]) -> None:
    per_team = Counter(events["team_id"])
    assert set(per_team) == set(TEAMS)
    assert len(set(per_team.values())) == len(TEAMS)  # volumes differ
    assert max(per_team.values()) < 2 * min(per_team.values())  # ... but only a little

    other = generate_events(days=2, now=NOW, teams=(5, 42), sessions_per_team_per_day=10)
    assert set(other["team_id"]) == {5, 42}


def test_reproducible_and_seed_sensitive(events: dict[str, list[Any]]) -> None:
    assert generate_events(days=DAYS, now=NOW) == events
    other = generate_events(days=DAYS, now=NOW, seed=8)
    assert other["uuid"] != events["uuid"]
    assert other["$session_id"] != events["$session_id"]
    assert other["properties"] != events["properties"]


def test_one_day_window_and_bad_arguments() -> None:
    now = datetime(2024, 3, 1, 0, 5, tzinfo=UTC)  # just after midnight: little room
    out = generate_events(days=1, now=now, sessions_per_team_per_day=15)
    assert out["timestamp"] and min(out["timestamp"]) >= now - timedelta(days=1)
    assert max(out["timestamp"]) <= now and max(out["inserted_at"]) <= now
    # A naive `now` means UTC.
    assert generate_events(days=1, now=now.replace(tzinfo=None), sessions_per_team_per_day=15) == out
    with pytest.raises(ValueError):
        generate_events(days=0, now=now)


# -- bulk ---------------------------------------------------------------------

BULK_DAY = date(2024, 6, 1)
BULK_N = 200_000


@pytest.fixture(scope="module")
def bulk() -> dict[str, np.ndarray]:
    start = time.perf_counter()
    out = generate_bulk_events(n_events=BULK_N, day=BULK_DAY)
    elapsed = time.perf_counter() - start
    print(f"\ngenerate_bulk_events: {BULK_N:,} events in {elapsed:.2f}s = {BULK_N / elapsed:,.0f} events/s")
    return out


def test_bulk_shape_and_types(bulk: dict[str, np.ndarray]) -> None:
    assert tuple(bulk) == EVENT_COLUMNS
    assert all(len(col) == BULK_N for col in bulk.values())
    assert bulk["uuid"].dtype == np.dtype("V16")
    assert bulk["timestamp"].dtype == np.dtype("datetime64[us]")
    assert bulk["inserted_at"].dtype == np.dtype("datetime64[us]")
    assert bulk["team_id"].dtype == np.int64
    assert set(bulk["team_id"].tolist()) == set(TEAMS)
    for name in ("event", "properties", "distinct_id", "$session_id"):
        assert bulk[name].dtype == object and isinstance(bulk[name][0], str)


def test_bulk_times_within_the_day(bulk: dict[str, np.ndarray]) -> None:
    ts = bulk["timestamp"]
    start = np.datetime64(BULK_DAY.isoformat(), "us")
    assert ts.min() >= start and ts.max() < start + np.timedelta64(1, "D")
    lag = (bulk["inserted_at"] - ts).astype(np.int64)
    assert lag.min() >= 500_000 and lag.max() <= 10_000_000
    # Sessions are contiguous runs; inside one, time moves forward in < 30 min steps.
    sid = bulk["$session_id"]
    same = sid[1:] == sid[:-1]
    steps = np.diff(ts.astype(np.int64))[same]
    assert steps.min() >= 0 and steps.max() <= 30 * 60 * 1_000_000
    assert len(set(sid.tolist())) > BULK_N // 30


def test_bulk_event_mix_and_properties(bulk: dict[str, np.ndarray]) -> None:
    counts = Counter(bulk["event"].tolist())
    assert set(counts) == {"$pageview", "$autocapture", "$pageleave", "$rageclick", "$exception", "$ai_generation"}
    rows = np.random.default_rng(0).choice(BULK_N, 5000, replace=False)
    for i in rows.tolist():
        p = json.loads(bulk["properties"][i])
        event = bulk["event"][i]
        assert p["$session_id"] == bulk["$session_id"][i]
        assert p["$lib"] == ("posthog-python" if event == "$ai_generation" else "web")
        assert re.fullmatch(rf"user-{bulk['team_id'][i]}-\d+", bulk["distinct_id"][i])
        if event == "$ai_generation":
            assert type(p["$ai_input_tokens"]) is int and type(p["$ai_output_tokens"]) is int
            assert isinstance(p["$ai_total_cost_usd"], float) and p["$ai_total_cost_usd"] > 0
            assert re.search(r'"\$ai_total_cost_usd":\d\.\d{9}}', bulk["properties"][i])
        else:
            assert p["$current_url"].startswith("https://shop.example.com/")
        if event == "$autocapture":
            assert p["$event_type"] in {"click", "submit", "change"}
        if event == "$exception":
            assert p["$exception_type"] and p["$exception_message"]


def test_bulk_uuids(bulk: dict[str, np.ndarray]) -> None:
    head = bulk["uuid"][:1000]
    as_uuid = uuid_bytes_to_uuids(head)
    assert [str(u) for u in as_uuid] == uuid_bytes_to_strings(head)
    assert all(u.version == 7 for u in as_uuid)
    ms = bulk["timestamp"][:1000].astype("datetime64[ms]").astype(np.int64)
    assert [u.int >> 80 for u in as_uuid] == ms.tolist()
    assert len(np.unique(bulk["uuid"])) == BULK_N
    assert all(UUID7.match(s) for s in bulk["$session_id"][:1000])


def test_bulk_reproducible() -> None:
    a = generate_bulk_events(n_events=5000, day=BULK_DAY)
    b = generate_bulk_events(n_events=5000, day=BULK_DAY)
    c = generate_bulk_events(n_events=5000, day=BULK_DAY, seed=12)
    for name in EVENT_COLUMNS:
        assert np.array_equal(a[name], b[name]), name
    assert not np.array_equal(a["uuid"], c["uuid"])
    assert len(generate_bulk_events(n_events=0, day=BULK_DAY)["uuid"]) == 0
    assert len(generate_bulk_events(n_events=1, day=BULK_DAY)["properties"]) == 1
