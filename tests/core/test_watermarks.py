from __future__ import annotations

from datetime import date, timedelta

from session_assets.core.coverage import VISIBILITY_LAG
from session_assets.core.days import SETTLE
from session_assets.core.watermarks import (
    LATENESS_HORIZON,
    LOOKBACK,
    Watermark,
    frontier,
    is_complete,
    next_watermark,
    passed,
    seen_until,
    starting_point,
    window,
)
from tests.support import at

DAY = date(2024, 3, 1)
SCANNER_START = at("2024-02-20T00:00:00")


def test_a_new_scanner_starts_at_its_start_time():
    start = at("2024-03-01T09:25:00")
    point = starting_point(DAY, start, own=None, previous_day=None, backfill=False)
    assert point.watermark == Watermark(start) and point.source == "scanner start"


def test_own_partition_wins_then_the_previous_day():
    own = Watermark(at("2024-03-01T10:00:00"), "s9", at("2024-03-01T10:40:00"))
    previous = Watermark(at("2024-02-29T23:59:00"), "s1", at("2024-03-01T00:40:00"))
    assert starting_point(DAY, SCANNER_START, own, previous, False).watermark == own
    assert starting_point(DAY, SCANNER_START, None, previous, False).watermark == previous


def test_enable_from_now_moves_the_start_past_an_old_watermark():
    old = Watermark(at("2024-02-25T10:00:00"), "s1", at("2024-02-25T10:40:00"))
    restart = at("2024-03-01T09:00:00")
    point = starting_point(DAY, restart, old, None, False)
    assert point.watermark.key == (restart, "") and point.watermark.seen_until == old.seen_until


def test_a_backfill_recomputes_from_the_day_start():
    own = Watermark(at("2024-03-01T10:00:00"), "s9")
    point = starting_point(DAY, SCANNER_START, own, None, backfill=True)
    assert point.watermark.key == (at("2024-03-01T00:00:00"), "") and point.source == "backfill"


def test_frontier_is_the_settle_cutoff_of_what_the_sweep_saw_capped_at_day_end():
    noon = at("2024-03-01T12:00:00")
    assert seen_until(noon, at("2024-03-01T11:50:00")) == at("2024-03-01T11:50:00")  # stale rollups
    assert seen_until(noon, at("2024-03-01T12:10:00")) == noon  # never past the as-of time
    assert seen_until(noon, None) is None
    assert frontier(DAY, at("2024-03-01T11:50:00")) == at("2024-03-01T11:50:00") - SETTLE
    assert frontier(DAY, at("2024-03-03T00:00:00")) == at("2024-03-02T00:00:00")
    assert frontier(DAY, None) is None


def test_window_bounds():
    mark = Watermark(at("2024-03-01T10:00:00"), "s1", at("2024-03-01T10:40:00"))
    w = window(mark, SCANNER_START)
    assert w.min_start == mark.end - LOOKBACK
    assert w.late_since == mark.seen_until - VISIBILITY_LAG and w.late_floor == mark.end - LATENESS_HORIZON
    assert w.window_start == w.late_floor - LOOKBACK
    assert window(Watermark(mark.end, "s1"), SCANNER_START).params(at("2024-03-01T11:00:00"))["late_enabled"] is False


def test_a_sweep_reads_from_the_day_before_its_earliest_start_to_its_as_of_day():
    """Later days too: a session that went on after the frontier (past midnight) shows its end."""
    mark = Watermark(at("2024-03-01T23:50:00"), "", at("2024-03-02T00:25:00"))
    w = window(mark, SCANNER_START)
    days = w.read_days(at("2024-03-02T00:30:00"))
    assert days[0] == (mark.end - LATENESS_HORIZON - LOOKBACK).date() - timedelta(days=1)
    assert days[-1] == date(2024, 3, 2)
    assert days == [days[0] + timedelta(days=n) for n in range(len(days))]


def test_late_data_is_never_looked_for_before_the_scanner_start():
    mark = Watermark(at("2024-03-01T10:00:00"), "s1", at("2024-03-01T10:40:00"))
    restarted = at("2024-03-01T09:00:00")
    assert window(mark, restarted).late_floor == restarted


def test_without_a_session_id_the_watermark_compares_on_end_alone():
    """SPEC §6.1: `end > watermark_end` when no session id is stored: a session ending exactly at
    a new scanner's start, or at a finished walk's frontier, is behind it, not after it."""
    start = at("2024-03-01T10:00:00")
    assert passed((start, "a"), Watermark(start))
    assert not passed((start, "b"), Watermark(start, "a"))
    assert passed((start, "a"), Watermark(start, "a"))
    assert not passed((start + timedelta(microseconds=1), ""), Watermark(start))


def test_finished_walk_moves_to_the_frontier_and_a_stopped_one_to_its_last_session():
    previous = Watermark(at("2024-03-01T10:00:00"), "s1", at("2024-03-01T10:30:00"))
    edge = at("2024-03-01T11:00:00")
    last = (at("2024-03-01T10:30:00"), "s7")
    refused = (at("2024-03-01T10:31:00"), "s8")
    seen = at("2024-03-01T11:35:00")
    assert next_watermark(previous, edge, last, None, seen) == Watermark(edge, "", seen)
    assert next_watermark(previous, edge, (edge, "s8"), None, seen).key == (edge, "s8")
    assert next_watermark(previous, edge, last, refused, seen) == Watermark(*last, seen)
    assert next_watermark(previous, edge, None, (edge, "s9"), seen).key == previous.key


def test_a_walk_stopped_at_a_late_session_keeps_what_the_previous_sweep_saw():
    """Issue #11.3: quota refused a session behind the watermark; had the late mark moved on,
    the next sweep would no longer count it as late and it would be lost."""
    previous = Watermark(at("2024-03-01T10:00:00"), "s5", at("2024-03-01T10:35:00"))
    late = (at("2024-03-01T09:00:00"), "s2")
    new = next_watermark(previous, at("2024-03-01T11:00:00"), None, late, at("2024-03-01T11:35:00"))
    assert new == previous
    # Stopped after the late ones, at a session past the watermark: what was seen moves on.
    fresh = (at("2024-03-01T10:20:00"), "s9")
    assert next_watermark(previous, at("2024-03-01T11:00:00"), late, fresh, at("2024-03-01T11:35:00")).seen_until == at(
        "2024-03-01T11:35:00"
    )


def test_a_sweep_that_read_nothing_keeps_its_watermark_and_what_it_saw():
    """Issue #11.1: "no rollups yet" used to record a newer as-of while reading nothing."""
    previous = Watermark(at("2024-03-01T10:00:00"), "s5", at("2024-03-01T10:35:00"))
    assert next_watermark(previous, None, None, None, None) == previous


def test_the_watermark_never_moves_backwards_nor_what_it_saw():
    previous = Watermark(at("2024-03-01T10:00:00"), "s5", at("2024-03-01T10:35:00"))
    earlier_frontier = at("2024-03-01T09:00:00")
    new = next_watermark(previous, earlier_frontier, None, None, at("2024-03-01T09:35:00"))
    assert new == previous


def test_complete_needs_the_frontier_at_day_end_and_a_finished_walk():
    day_end = at("2024-03-02T00:00:00")
    assert is_complete(DAY, day_end, True)
    assert not is_complete(DAY, day_end - timedelta(microseconds=1), True)
    assert not is_complete(DAY, day_end, False)
    assert not is_complete(DAY, None, True)
