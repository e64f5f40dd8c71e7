"""The pure tick planner: what the sweep sensor requests, given the records."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from session_assets.core.days import SETTLE
from session_assets.core.tick_plan import (
    Batch,
    PartitionState,
    ScannerState,
    TickState,
    backoff,
    plan_tick,
    runs,
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
    assert keys(plan) == ["rollups:2024-03-01", "rollups:2024-03-02", "scanner:2024-03-01|s"]
    assert plan.waiting["2024-03-02|s"] == "rollups have not advanced since the last sweep"
    later = at("2024-03-02T00:50:00")
    rollups = {d: rolled(at("2024-03-02T00:45:00"), d) for d in rollups}
    assert "scanner:2024-03-02|s" in keys(plan_tick(state(later, [scanner], rollups, sweeps)))


def test_sweeps_follow_the_rollups_they_need():
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    now = at("2024-03-01T12:05:00")
    before = rolled(at("2024-03-01T12:00:00"), date(2024, 2, 28))  # read by the 26 h lookback
    yesterday = rolled(at("2024-03-01T12:00:00"), date(2024, 2, 29))
    today = rolled(at("2024-03-01T12:00:00"), date(2024, 3, 1))
    swept_at_12 = {("s", date(2024, 3, 1)): swept(at("2024-03-01T12:00:00"), at("2024-03-01T12:00:00") - SETTLE)}
    # Today's rollup runs first in this tick, so the sweep queued behind it can move.
    plan = plan_tick(state(now, [scanner], {date(2024, 2, 28): before, date(2024, 2, 29): yesterday, date(2024, 3, 1): today}, swept_at_12))
    assert keys(plan) == ["rollups:2024-03-01", "scanner:2024-03-01|s"]
    # With today's rollup still running, a sweep could not get past its last frontier: wait.
    busy = PartitionState(materialized_at=today.materialized_at, covered_until=today.covered_until, in_flight=True)
    plan = plan_tick(state(now, [scanner], {date(2024, 2, 28): before, date(2024, 2, 29): yesterday, date(2024, 3, 1): busy}, swept_at_12))
    assert keys(plan) == [] and plan.waiting["2024-03-01|s"] == "rollups have not advanced since the last sweep"
    # Never rolled up and not being rolled: wait for the rollups.
    failing = PartitionState(failures=1, last_failure_at=now)
    plan = plan_tick(state(now, [scanner], {date(2024, 2, 28): before, date(2024, 2, 29): yesterday, date(2024, 3, 1): failing}))
    assert plan.waiting["2024-03-01|s"] == "rollups of 2024-03-01 not materialized"


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
    (retry,) = [r for r in ready.requests if r.asset == "scanner"]
    assert (retry.reason, retry.attempt) == ("retry", 2)
    again = plan_tick(state(failed_at + backoff(2) + timedelta(minutes=5), [scanner], rollups, failed))
    (later,) = [r for r in again.requests if r.asset == "scanner"]
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


CAP = 40  # a cap below the partitions open, as with thousands of scanners


def test_catch_up_after_a_two_day_outage_is_in_order_and_capped():
    scanners = [ScannerState(f"s{n:02d}", True, at("2024-02-28T00:00:00")) for n in range(30)]
    now = at("2024-03-03T10:00:00")
    last = at("2024-03-01T10:00:00")  # no sweep for two days; the rollups caught up first
    days = [date(2024, 2, 28) + timedelta(days=n) for n in range(5)]
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in days}
    sweeps = {(s.id, d): swept(at("2024-03-01T09:00:00"), last - SETTLE, complete=d < date(2024, 3, 1))
              for s in scanners for d in days[:3]}  # fmt: skip
    plan = plan_tick(state(now, scanners, rollups, sweeps), max_requests=CAP)
    # Never rolled days the scanners' 26 h lookback reads (and the day before it), and today.
    rolled_now = ["rollups:2024-02-25", "rollups:2024-02-26", "rollups:2024-02-27", "rollups:2024-03-03"]
    assert [k for k in keys(plan) if k.startswith("rollups")] == rolled_now
    assert keys(plan)[:4] == rolled_now  # never starved by the catch-up
    swept_now = [r for r in plan.requests if r.asset == "scanner"]
    assert len(swept_now) == CAP and plan.deferred == 3 * 30 - CAP
    assert [r.day for r in swept_now] == sorted(r.day for r in swept_now)
    assert {r.day for r in swept_now} == {date(2024, 3, 1), date(2024, 3, 2)}  # oldest first


def test_new_scanners_become_partitions_and_disabled_ones_are_not_swept():
    now = at("2024-03-01T12:00:00")
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in (date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1))}
    new = ScannerState("new", True, at("2024-03-01T09:00:00"))
    off = ScannerState("off", False, at("2024-02-01T00:00:00"))
    plan = plan_tick(state(now, [new, off], rollups, known={"off"}))
    assert plan.add_scanner_partitions == ["new"]
    assert keys(plan) == ["rollups:2024-03-01", "scanner:2024-03-01|new"]


def test_the_plan_depends_on_records_only():
    """The sensor cursor is a cache: the same records give the same plan, with or without it."""
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    now = at("2024-03-01T12:00:00")
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in (date(2024, 2, 29), date(2024, 3, 1))}
    assert plan_tick(state(now, [scanner], rollups)) == plan_tick(state(now, [scanner], rollups))


# --- issue #11: fairness, quota, coverage --------------------------------------------------


def _tick_outcome(state_: TickState, plan) -> TickState:
    """Apply a plan as if every requested run succeeded at once: the rollups cover `now`,
    each swept partition reached the frontier the plan saw (the tick's rollups in place)."""
    now = state_.now
    rollups = dict(state_.rollups)
    for r in plan.requests:
        if r.asset == "rollups":
            rollups[r.day] = rolled(now, r.day)
    sweeps = dict(state_.sweeps)
    for r in plan.requests:
        if r.asset == "scanner":
            edge = min(now - SETTLE, datetime.combine(r.day + timedelta(days=1), datetime.min.time(), now.tzinfo))
            sweeps[(r.scanner_id, r.day)] = PartitionState(
                materialized_at=now, succeeded_as_of=now, frontier=edge, watermark_end=edge, seen_until=now,
                complete=edge >= datetime.combine(r.day + timedelta(days=1), datetime.min.time(), now.tzinfo),
            )  # fmt: skip
    return TickState(now, state_.start_date, state_.scanners, state_.known_scanner_partitions, rollups, sweeps)


def test_every_open_partition_is_swept_within_a_bounded_number_of_ticks():
    """Issue #11: with more open partitions than the per-tick cap, requests sorted by
    (day, scanner) served the same 40 scanners every tick and starved the rest. Served
    longest-waiting first, 100 scanners over 50 ticks (across a midnight) each get swept at
    least every ceil(open / cap) ticks, and yesterday completes for every one of them."""
    scanners = [ScannerState(f"s{n:03d}", True, at("2024-03-01T08:00:00"), team_id=n % 3) for n in range(100)]
    current = state(at("2024-03-01T21:00:00"), scanners, rollups={d: rolled(at("2024-03-01T20:55:00"), d)
                    for d in (date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1))})  # fmt: skip
    first_swept: dict[tuple[str, date], int] = {}
    last_swept: dict[tuple[str, date], int] = {}
    gaps: list[int] = []
    for tick in range(50):
        plan = plan_tick(current, max_requests=CAP)
        for r in plan.requests:
            if r.asset == "scanner":
                key = (r.scanner_id, r.day)
                if key in last_swept:
                    gaps.append(tick - last_swept[key])
                first_swept.setdefault(key, tick)
                last_swept[key] = tick
        current = _tick_outcome(current, plan)
        current = TickState(current.now + timedelta(minutes=5), START, scanners, current.known_scanner_partitions,
                            current.rollups, current.sweeps)  # fmt: skip
    bound = -(-2 * len(scanners) // CAP)  # open: today and yesterday around midnight
    assert max(gaps) <= bound
    for day in (date(2024, 3, 1), date(2024, 3, 2)):
        firsts = [t for (sid, d), t in first_swept.items() if d == day]
        assert len(firsts) == len(scanners) and max(firsts) - min(firsts) < bound
    assert all(current.sweeps[(s.id, date(2024, 3, 1))].complete for s in scanners)


def test_a_quota_stopped_partition_of_a_finished_day_is_retried_when_its_team_has_quota_again():
    """Issue #11: it used to wait for ever ("rollups have not advanced")."""
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"), team_id=7)
    now = at("2024-03-03T12:00:00")
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in (date(2024, 2, 28), date(2024, 2, 29),
               date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3))}  # fmt: skip
    day_end = at("2024-03-02T00:00:00")
    stopped = PartitionState(materialized_at=now, succeeded_as_of=now, frontier=day_end,
                             watermark_end=at("2024-03-01T15:00:00"), seen_until=now, quota_stopped=True)  # fmt: skip
    sweeps = {("s", date(2024, 3, 1)): stopped}
    for d in (date(2024, 3, 2), date(2024, 3, 3)):
        sweeps[("s", d)] = PartitionState(materialized_at=now, frontier=now - timedelta(minutes=5) - SETTLE,
                                          watermark_end=now - SETTLE, seen_until=now, quota_stopped=True)  # fmt: skip
    out = TickState(now, START, [scanner], {"s"}, rollups, sweeps, teams_out_of_quota=frozenset({7}))
    plan = plan_tick(out)
    assert plan.waiting["2024-03-01|s"] == "team 7 has no observation quota left this month"
    assert "scanner:2024-03-01|s" not in keys(plan)
    freed = plan_tick(TickState(now, START, [scanner], {"s"}, rollups, sweeps))
    (retry,) = [r for r in freed.requests if r.asset == "scanner" and r.day == date(2024, 3, 1)]
    assert retry.reason == "quota freed"


def test_a_sweep_after_midnight_waits_for_the_next_days_rollups():
    """Issue #11.4: a sweep of yesterday reads today's rollups too (a session that paused before
    the frontier and went on after midnight), so today's failing rollups hold it back."""
    scanner = ScannerState("s", True, at("2024-03-01T08:00:00"))
    now = at("2024-03-02T00:50:00")
    rollups = {d: rolled(at("2024-03-02T00:45:00"), d) for d in (date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1))}
    rollups[date(2024, 3, 2)] = PartitionState(failures=1, last_failure_at=now)  # never rolled, backing off
    sweeps = {("s", date(2024, 3, 1)): swept(at("2024-03-02T00:10:00"), at("2024-03-01T23:35:00"))}
    plan = plan_tick(state(now, [scanner], rollups, sweeps))
    assert plan.waiting["2024-03-01|s"] == "rollups of 2024-03-02 not materialized"
    # Rolled, but lagging: yesterday's sweep reaches no further than today's rollups allow.
    rollups[date(2024, 3, 2)] = rolled(at("2024-03-02T00:05:00"), date(2024, 3, 2))
    rollups[date(2024, 3, 2)] = PartitionState(materialized_at=at("2024-03-02T00:05:00"), covered_until=at("2024-03-02T00:05:00"),
                                               failures=1, last_failure_at=now)  # fmt: skip
    plan = plan_tick(state(now, [scanner], rollups, sweeps))
    assert plan.waiting["2024-03-01|s"] == "rollups have not advanced since the last sweep"


def test_a_backdated_scanner_gets_every_rollup_day_its_first_sweep_reads():
    """Issue #11.6: the sweep reads from start_at - 26 h; all of those days are rolled first (or,
    older than the catch-up window, named as waiting for a hand backfill)."""
    now = at("2024-03-10T12:00:00")
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in (date(2024, 3, 9), date(2024, 3, 10))}
    recent = ScannerState("recent", True, at("2024-03-07T06:00:00"))
    plan = plan_tick(state(now, [recent], rollups))
    rolled_days = [r.day for r in plan.requests if r.asset == "rollups"]
    assert rolled_days == [date(2024, 3, 5), date(2024, 3, 6), date(2024, 3, 7), date(2024, 3, 8), date(2024, 3, 10)]
    assert "scanner:2024-03-07|recent" in keys(plan)
    ancient = ScannerState("ancient", True, at("2024-01-20T06:00:00"))
    plan = plan_tick(state(now, [ancient], rollups))
    assert "older than the catch-up window" in plan.waiting["2024-01-18"]
    assert plan.waiting["2024-03-03|ancient"].startswith("rollups of 2024-01-18, 2024-01-19")


def test_a_scanner_without_a_watermark_in_the_watched_days_resumes_from_its_last_one():
    from session_assets.core.tick_plan import next_sweep_start
    from session_assets.core.watermarks import Watermark

    last = Watermark(at("2024-03-02T00:00:00"), "", at("2024-03-02T01:00:00"))
    scanner = ScannerState("s", True, at("2024-03-01T06:00:00"), resume_from=last)
    assert next_sweep_start({}, scanner, date(2024, 3, 5)) == last
    swept_before = {("s", date(2024, 3, 4)): swept(at("2024-03-05T00:40:00"), at("2024-03-05T00:00:00"), True)}
    assert next_sweep_start(swept_before, scanner, date(2024, 3, 5)).end == at("2024-03-05T00:00:00")


# --- issue #12: batches -----------------------------------------------------------------


def test_due_partitions_go_in_batches_by_team_and_retries_alone_only_after_failing_alone():
    """Due partitions go in at most `batches` batch runs, a team's together, longest-waiting
    first; a partition whose own sweep failed is retried in a run of its own, while one whose
    whole batch stopped (a store down for the tick) is retried with the next batch."""
    scanners = [ScannerState(f"s{n}", True, at("2024-03-01T08:00:00"), team_id=n % 3) for n in range(9)]
    now = at("2024-03-01T12:00:00")
    rollups = {d: rolled(now - timedelta(minutes=5), d) for d in (date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1))}
    failed_at = now - timedelta(minutes=10)
    sweeps = {
        ("s0", date(2024, 3, 1)): PartitionState(failures=1, last_failure_at=failed_at, failed_alone=True),
        ("s1", date(2024, 3, 1)): PartitionState(failures=1, last_failure_at=failed_at, failed_alone=False),
    }
    plan = plan_tick(state(now, scanners, rollups, sweeps))
    planned = runs(plan.requests, batches=2)
    singles = [r for r in planned if not isinstance(r, Batch)]
    batches = [r for r in planned if isinstance(r, Batch)]
    assert [r.partition_key for r in singles if r.asset == "scanner"] == ["2024-03-01|s0"]
    assert len(batches) == 2
    swept = [key for b in batches for key in b.partitions]
    assert sorted(swept) == sorted(f"2024-03-01|s{n}" for n in range(1, 9))
    teams = [{int(key.split("|s")[1]) % 3 for key in b.partitions} for b in batches]
    assert teams[0].isdisjoint(teams[1])  # a team's partitions share one candidates pass
    assert len({r.run_key(now) for r in planned}) == len(planned)
    one = runs(plan.requests, batches=1)
    assert sum(isinstance(r, Batch) for r in one) == 1
