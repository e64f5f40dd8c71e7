from __future__ import annotations

from datetime import date, timedelta

from session_assets.days import SETTLE
from session_assets.watermarks import (
    LATENESS_HORIZON,
    LOOKBACK,
    Watermark,
    frontier,
    is_complete,
    next_watermark,
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
    assert point.watermark.key == (restart, "") and point.watermark.as_of == old.as_of


def test_a_backfill_recomputes_from_the_day_start():
    own = Watermark(at("2024-03-01T10:00:00"), "s9")
    point = starting_point(DAY, SCANNER_START, own, None, backfill=True)
    assert point.watermark.key == (at("2024-03-01T00:00:00"), "") and point.source == "backfill"


def test_frontier_is_the_settle_cutoff_capped_at_day_end():
    assert frontier(DAY, at("2024-03-01T12:00:00"), at("2024-03-01T11:50:00")) == at("2024-03-01T11:50:00") - SETTLE
    assert frontier(DAY, at("2024-03-01T12:00:00"), at("2024-03-01T12:10:00")) == at("2024-03-01T12:00:00") - SETTLE
    assert frontier(DAY, at("2024-03-03T00:00:00"), at("2024-03-03T00:00:00")) == at("2024-03-02T00:00:00")
    assert frontier(DAY, at("2024-03-01T12:00:00"), None) is None


def test_window_bounds():
    mark = Watermark(at("2024-03-01T10:00:00"), "s1", at("2024-03-01T10:40:00"))
    w = window(mark, at("2024-03-01T11:00:00"), SCANNER_START)
    assert w.min_start == mark.end - LOOKBACK
    assert w.late_since == mark.as_of and w.late_floor == mark.end - LATENESS_HORIZON
    assert w.window_start == w.late_floor - LOOKBACK
    assert window(Watermark(mark.end, "s1"), w.frontier, SCANNER_START).params()["late_enabled"] is False


def test_late_data_is_never_looked_for_before_the_scanner_start():
    mark = Watermark(at("2024-03-01T10:00:00"), "s1", at("2024-03-01T10:40:00"))
    restarted = at("2024-03-01T09:00:00")
    assert window(mark, at("2024-03-01T11:00:00"), restarted).late_floor == restarted


def test_finished_walk_moves_to_the_frontier_and_a_stopped_one_to_its_last_session():
    previous = Watermark(at("2024-03-01T10:00:00"), "s1")
    edge = at("2024-03-01T11:00:00")
    last = (at("2024-03-01T10:30:00"), "s7")
    as_of = at("2024-03-01T11:35:00")
    assert next_watermark(previous, edge, last, True, as_of).key == (edge, "")
    assert next_watermark(previous, edge, (edge, "s8"), True, as_of).key == (edge, "s8")
    assert next_watermark(previous, edge, last, False, as_of).key == last
    assert next_watermark(previous, edge, None, False, as_of).key == previous.key


def test_the_watermark_never_moves_backwards():
    previous = Watermark(at("2024-03-01T10:00:00"), "s5")
    earlier_frontier = at("2024-03-01T09:00:00")
    assert next_watermark(previous, earlier_frontier, None, True, at("2024-03-01T09:35:00")).key == previous.key
    assert next_watermark(previous, None, None, True, at("2024-03-01T09:35:00")).key == previous.key


def test_complete_needs_the_frontier_at_day_end_and_a_finished_walk():
    day_end = at("2024-03-02T00:00:00")
    assert is_complete(DAY, day_end, True)
    assert not is_complete(DAY, day_end - timedelta(microseconds=1), True)
    assert not is_complete(DAY, day_end, False)
    assert not is_complete(DAY, None, True)
