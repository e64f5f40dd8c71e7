"""The pure tick planner: what the sweep sensor requests, given the records."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from session_assets.days import SETTLE
from session_assets.sweeps import (
    MAX_REQUESTS_PER_TICK,
    PartitionState,
    ScannerState,
    TickState,
    backoff,
    plan_tick,
)
from tests.support import at

START = date(2024, 1, 1)


def rolled(as_of: datetime, day: date) -> PartitionState:
    complete = as_of >= datetime.combine(day + timedelta(days=1), datetime.min.time(), as_of.tzinfo) + SETTLE
    return PartitionState(materialized_at=as_of, covered_until=as_of, complete=complete)


def swept(as_of: datetime, frontier: datetime, complete: bool = False) -> PartitionState:
    return PartitionState(materialized_at=as_of, frontier=frontier, complete=complete, watermark_end=frontier)


def state(now, scanners=(), rollups=None, sweeps=None, known=None) -> TickState:
    scanners = list(scanners)
    return TickState(
        now=now,
        start_date=START,
        scanners=scanners,
        known_scanner_partitions={s.id for s in scanners} if known is None else known,
        rollups=rollups or {},
        sweeps=sweeps or {},
    )


def keys(plan) -> list[str]:
    return [f"{r.asset}:{r.partition_key}" for r in plan.requests]


def test_a_new_day_rolls_today_and_yesterday_until_yesterday_settles():
    now = at("2024-03-02T00:20:00")
    plan = plan_tick(state(now, rollups={date(2024, 3, 1): rolled(at("2024-03-02T00:15:00"), date(2024, 3, 1))}))
    assert keys(plan) == ["rollups:2024-03-01", "rollups:2024-03-02"]
    settled = at("2024-03-02T00:40:00")
    plan = plan_tick(state(settled, rollups={date(2024, 3, 1): rolled(settled, date(2024, 3, 1))}))
    assert keys(plan) == ["rollups:2024-03-02"]


def test_settle_window_crossing_midnight_keeps_yesterday_open_and_gates_today():
    """At 00:20 yesterday's sessions may still be settling; today's sweep has nothing reachable yet."""
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    now = at("2024-03-02T00:20:00")
    before = at("2024-03-02T00:15:00")
    rollups = {
        date(2024, 2, 28): rolled(before, date(2024, 2, 28)),  # read by the first sweep's 26 h lookback
        date(2024, 2, 29): rolled(before, date(2024, 2, 29)),
        date(2024, 3, 1): rolled(before, date(2024, 3, 1)),
        date(2024, 3, 2): rolled(before, date(2024, 3, 2)),
    }
    sweeps = {("s", date(2024, 3, 1)): swept(at("2024-03-02T00:10:00"), at("2024-03-01T23:35:00"))}
    plan = plan_tick(state(now, [scanner], rollups, sweeps))
    # Yesterday: the rollups reach 00:15 - 35 min = 23:40, past its last frontier 23:35.
    # Today: the same frontier is still before the day starts, so there is nothing to do yet.
    assert keys(plan) == ["rollups:2024-03-01", "rollups:2024-03-02", "sweep:2024-03-01|s"]
    assert plan.waiting["2024-03-02|s"] == "rollups have not advanced since the last sweep"
    later = at("2024-03-02T00:50:00")
    rollups = {d: rolled(at("2024-03-02T00:45:00"), d) for d in rollups}
    assert "sweep:2024-03-02|s" in keys(plan_tick(state(later, [scanner], rollups, sweeps)))


def test_sweeps_follow_the_rollups_they_need():
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    now = at("2024-03-01T12:05:00")
    before = rolled(at("2024-03-01T12:00:00"), date(2024, 2, 28))  # read by the 26 h lookback
    yesterday = rolled(at("2024-03-01T12:00:00"), date(2024, 2, 29))
    today = rolled(at("2024-03-01T12:00:00"), date(2024, 3, 1))
    swept_at_12 = {("s", date(2024, 3, 1)): swept(at("2024-03-01T12:00:00"), at("2024-03-01T12:00:00") - SETTLE)}
    # Today's rollup runs first in this tick, so the sweep queued behind it can move.
    plan = plan_tick(state(now, [scanner], {date(2024, 2, 28): before, date(2024, 2, 29): yesterday, date(2024, 3, 1): today}, swept_at_12))
    assert keys(plan) == ["rollups:2024-03-01", "sweep:2024-03-01|s"]
    # With today's rollup still running, a sweep could not get past its last frontier: wait.
    busy = PartitionState(materialized_at=today.materialized_at, covered_until=today.covered_until, in_flight=True)
    plan = plan_tick(state(now, [scanner], {date(2024, 2, 28): before, date(2024, 2, 29): yesterday, date(2024, 3, 1): busy}, swept_at_12))
    assert keys(plan) == [] and plan.waiting["2024-03-01|s"] == "rollups have not advanced since the last sweep"
    # Never rolled up and not being rolled: wait for the rollups.
    failing = PartitionState(failures=1, last_failure_at=now)
    plan = plan_tick(state(now, [scanner], {date(2024, 2, 28): before, date(2024, 2, 29): yesterday, date(2024, 3, 1): failing}))
    assert plan.waiting["2024-03-01|s"] == "rollups not materialized"


def test_a_failed_partition_is_retried_with_a_new_key_after_backoff():
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    rollups = {
        date(2024, 2, 29): rolled(at("2024-03-01T11:00:00"), date(2024, 2, 29)),
        date(2024, 3, 1): rolled(at("2024-03-01T11:00:00"), date(2024, 3, 1)),
    }
    failed_at = at("2024-03-01T11:00:00")
    failed = {("s", date(2024, 3, 1)): PartitionState(failures=2, last_failure_at=failed_at)}
    too_soon = plan_tick(state(failed_at + backoff(2) - timedelta(seconds=1), [scanner], rollups, failed))
    assert too_soon.waiting["2024-03-01|s"] == "backing off after 2 failure(s)"
    ready = plan_tick(state(failed_at + backoff(2), [scanner], rollups, failed))
    (retry,) = [r for r in ready.requests if r.asset == "sweep"]
    assert (retry.reason, retry.attempt) == ("retry", 2)
    again = plan_tick(state(failed_at + backoff(2) + timedelta(minutes=5), [scanner], rollups, failed))
    (later,) = [r for r in again.requests if r.asset == "sweep"]
    assert retry.run_key(ready_now := failed_at + backoff(2)) != later.run_key(ready_now + timedelta(minutes=5))
    assert backoff(1) == timedelta(minutes=5) and backoff(10) == timedelta(hours=1)


def test_in_flight_partitions_are_not_doubled():
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    now = at("2024-03-01T12:00:00")
    rollups = {
        date(2024, 2, 28): rolled(now, date(2024, 2, 28)),
        date(2024, 2, 29): rolled(now, date(2024, 2, 29)),
        date(2024, 3, 1): PartitionState(materialized_at=now, covered_until=now, in_flight=True),
    }
    sweeps = {("s", date(2024, 3, 1)): PartitionState(in_flight=True)}
    plan = plan_tick(state(now, [scanner], rollups, sweeps))
    assert plan.requests == []
    assert plan.waiting == {"2024-03-01": "run in flight", "2024-03-01|s": "run in flight"}


def test_catch_up_after_a_two_day_outage_is_in_order_and_capped():
    scanners = [ScannerState(f"s{n:02d}", True, at("2024-02-28T00:00:00")) for n in range(30)]
    now = at("2024-03-03T10:00:00")
    last = at("2024-03-01T10:00:00")  # no sweep for two days; the rollups caught up first
    days = [date(2024, 2, 28) + timedelta(days=n) for n in range(5)]
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in days}
    sweeps = {(s.id, d): swept(at("2024-03-01T09:00:00"), last - SETTLE, complete=d < date(2024, 3, 1))
              for s in scanners for d in days[:3]}  # fmt: skip
    plan = plan_tick(state(now, scanners, rollups, sweeps))
    # Never rolled days the scanners' 26 h lookback reads (and the day before it), and today.
    rolled_now = ["rollups:2024-02-25", "rollups:2024-02-26", "rollups:2024-02-27", "rollups:2024-03-03"]
    assert [k for k in keys(plan) if k.startswith("rollups")] == rolled_now
    assert keys(plan)[:4] == rolled_now  # never starved by the catch-up
    swept_now = [r for r in plan.requests if r.asset == "sweep"]
    assert len(swept_now) == MAX_REQUESTS_PER_TICK and plan.deferred == 3 * 30 - MAX_REQUESTS_PER_TICK
    assert [r.day for r in swept_now] == sorted(r.day for r in swept_now)
    assert {r.day for r in swept_now} == {date(2024, 3, 1), date(2024, 3, 2)}  # oldest first


def test_new_scanners_become_partitions_and_disabled_ones_are_not_swept():
    now = at("2024-03-01T12:00:00")
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in (date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1))}
    new = ScannerState("new", True, at("2024-03-01T09:00:00"))
    off = ScannerState("off", False, at("2024-02-01T00:00:00"))
    plan = plan_tick(state(now, [new, off], rollups, known={"off"}))
    assert plan.add_scanner_partitions == ["new"]
    assert keys(plan) == ["rollups:2024-03-01", "sweep:2024-03-01|new"]


def test_the_plan_depends_on_records_only():
    """The sensor cursor is a cache: the same records give the same plan, with or without it."""
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    now = at("2024-03-01T12:00:00")
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in (date(2024, 2, 29), date(2024, 3, 1))}
    assert plan_tick(state(now, [scanner], rollups)) == plan_tick(state(now, [scanner], rollups))
