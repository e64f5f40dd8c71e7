from __future__ import annotations
import random
from datetime import timedelta
from tests import oracle
from tests.support import at
from tests.test_properties import History, _event, run_history

def ev(name, ts, sid, team=1, inserted=None, rng=random.Random(1)):
    return _event(name, ts, sid, team, inserted or ts + timedelta(seconds=2), rng)

def test_long_session_not_passed_with_a_tick_gap(chdb_url, postgres_resource, tmp_path):
    events = [ev("$pageview", at("2024-03-03T22:00:00"), "long"), ev("$autocapture", at("2024-03-05T04:00:00"), "long")]
    scanner = oracle.Scanner(id="scan-0", team_id=1, start_at=at("2024-03-04T00:00:00"), filter={"counters": {"event_count": {"gte": 2}}})
    ticks = [at("2024-03-05T02:00:00"), at("2024-03-05T05:00:00"), at("2024-03-06T01:00:00")]
    run_history(History(events, [scanner], ticks), chdb_url, postgres_resource, tmp_path)

def test_scanner_starting_before_2am_and_a_session_from_two_days_before(chdb_url, postgres_resource, tmp_path):
    events = [ev("$pageview", at("2024-03-04T23:30:00"), "long"), ev("$pageview", at("2024-03-05T12:00:00"), "long"),
              ev("$autocapture", at("2024-03-06T01:30:00"), "long")]
    scanner = oracle.Scanner(id="scan-0", team_id=1, start_at=at("2024-03-06T01:00:00"), filter={"counters": {"pageview_count": {"gte": 2}}})
    ticks = [at("2024-03-06T03:00:00"), at("2024-03-07T01:00:00")]
    run_history(History(events, [scanner], ticks), chdb_url, postgres_resource, tmp_path)

def test_debug_long(chdb_url, postgres_resource, tmp_path):
    events = [ev("$pageview", at("2024-03-03T22:00:00"), "long"), ev("$autocapture", at("2024-03-05T04:00:00"), "long")]
    scanner = oracle.Scanner(id="scan-0", team_id=1, start_at=at("2024-03-04T00:00:00"), filter={"counters": {"event_count": {"gte": 2}}})
    ticks = [at("2024-03-05T02:00:00"), at("2024-03-05T05:00:00"), at("2024-03-06T01:00:00")]
    m = oracle.Sweeps(events, [scanner])
    for t in ticks:
        m.tick(t)
        print(t, m.partitions, m.observations)
    assert False
