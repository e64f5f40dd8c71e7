"""Sweeps of (scanner, day) partitions on real chDB, pgserver and object stores:
every eligibility rule of SPEC §6 at its boundary, and the watermark contract."""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from session_assets.stores import sql
from session_assets.core import watermarks
from session_assets.assets.scanning import SweepPlan, candidates_statement
from session_assets.core.days import SETTLE
from session_assets.scanners import compile_filter, parse_scanner, store
from tests.support import (
    add_scanner,
    at,
    event,
    insert_rows,
    materialize_rollup,
    observed,
    sweep,
    sweep_metadata,
)

DAY = date(2024, 3, 1)


@pytest.fixture
def resources(clickhouse_resource, postgres_resource, local_object_store) -> dict[str, Any]:
    return {"clickhouse": clickhouse_resource, "postgres": postgres_resource, "object_store": local_object_store}


def session(sid: str, start: datetime, end: datetime, team_id: int = 1, **kw: Any) -> list[dict[str, Any]]:
    rows = [event("$pageview", start, sid, team_id=team_id, properties={"$current_url": "https://x/"}, **kw)]
    if end != start:
        rows.append(event("$autocapture", end, sid, team_id=team_id, **kw))
    return rows


# What the test scanners' sweeps read: from the day before their lookback (they start on
# 2024-02-28, so from 2024-02-25) to the as-of day.
SWEPT_DAYS = tuple(str(date(2024, 2, 25) + timedelta(days=n)) for n in range(6))


def roll(instance, resources, as_of: datetime, days=SWEPT_DAYS) -> None:
    for day in days:
        materialize_rollup(instance, resources["clickhouse"], day, as_of, with_check=False)


def test_a_sweep_observes_settled_sessions_and_records_the_watermark(instance, resources):
    add_scanner(instance, resources["postgres"])
    insert_rows(resources["clickhouse"], session("a", at("2024-03-01T09:00:00"), at("2024-03-01T09:10:00")))
    insert_rows(resources["clickhouse"], session("b", at("2024-03-01T09:30:00"), at("2024-03-01T11:00:00")))
    as_of = at("2024-03-01T11:30:00")  # frontier 10:55: b has not gone quiet yet
    roll(instance, resources, as_of)
    result = sweep(instance, resources, "errors", DAY, as_of)
    meta = sweep_metadata(result)
    assert set(observed(resources["postgres"], "errors")) == {"a"}
    assert meta["observed"] == 1 and meta["candidates"] == 1
    assert meta["frontier"] == (as_of - SETTLE).timestamp()
    assert meta["watermark_end"] == (as_of - SETTLE).timestamp() and meta["watermark_session_id"] == ""
    assert meta["complete"] is False
    assert all(check.passed for check in result.get_asset_check_evaluations())

    later = at("2024-03-01T12:00:00")
    roll(instance, resources, later)
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, later))
    assert set(observed(resources["postgres"], "errors")) == {"a", "b"}
    assert (meta["observed"], meta["already_observed"]) == (1, 0)  # a was not a candidate again


def test_settle_cutoff_is_inclusive(instance, resources):
    add_scanner(instance, resources["postgres"])
    as_of = at("2024-03-01T12:00:00")
    cutoff = as_of - SETTLE
    insert_rows(resources["clickhouse"], session("on-cutoff", at("2024-03-01T11:00:00"), cutoff))
    insert_rows(resources["clickhouse"], session("one-second-later", at("2024-03-01T11:00:00"), cutoff + timedelta(seconds=1)))
    roll(instance, resources, as_of)
    sweep(instance, resources, "errors", DAY, as_of)
    assert set(observed(resources["postgres"], "errors")) == {"on-cutoff"}


def test_keyset_excludes_the_watermark_itself_and_keeps_ties_across_pages(instance, resources):
    """Five sessions end in the same microsecond; pages of 2; quota stops the walk after 3."""
    add_scanner(instance, resources["postgres"])
    end = at("2024-03-01T10:00:00.123456")
    for sid in ("t1", "t2", "t3", "t4", "t5"):
        insert_rows(resources["clickhouse"], session(sid, at("2024-03-01T09:50:00"), end))
    insert_rows(resources["clickhouse"], session("after", at("2024-03-01T09:50:00"), end + timedelta(microseconds=1)))
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of, page_size=2, default_monthly_quota=3))
    assert set(observed(resources["postgres"], "errors")) == {"t1", "t2", "t3"}
    assert (meta["watermark_end"], meta["watermark_session_id"]) == (end.timestamp(), "t3")
    assert meta["quota_skipped"] == 3 and meta["complete"] is False

    with resources["postgres"].pool().connection() as conn:
        conn.execute("UPDATE team_quotas SET observation_limit = 100 WHERE team_id = 1")
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of + timedelta(minutes=5), page_size=2))
    assert set(observed(resources["postgres"], "errors")) == {"t1", "t2", "t3", "t4", "t5", "after"}
    # Strictly after (end, t3): t3 is not even a candidate again.
    assert (meta["candidates"], meta["observed"], meta["already_observed"]) == (3, 3, 0)


def test_lookback_of_26_hours_from_the_watermark(instance, resources):
    add_scanner(instance, resources["postgres"], start_at="2024-03-01T10:00:00Z")
    watermark = at("2024-03-01T10:00:00")
    insert_rows(resources["clickhouse"], session("started-26h-before", watermark - timedelta(hours=26), at("2024-03-01T10:30:00")))
    insert_rows(
        resources["clickhouse"],
        session("started-26h-1s-before", watermark - timedelta(hours=26, seconds=1), at("2024-03-01T10:30:00")),
    )
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of, days=("2024-02-28", "2024-02-29", "2024-03-01"))
    sweep(instance, resources, "errors", DAY, as_of)
    assert set(observed(resources["postgres"], "errors")) == {"started-26h-before"}


def test_session_id_length_and_team_isolation(instance, resources):
    add_scanner(instance, resources["postgres"])
    start, end = at("2024-03-01T09:00:00"), at("2024-03-01T09:05:00")
    ok, too_long = "x" * 128, "y" * 129
    # Characters, not bytes (SPEC §13; Postgres's length() counts characters too).
    accented_ok, accented_too_long, emoji_ok = "é" * 128, "è" * 129, "😀" * 128
    for sid in (ok, too_long, "", accented_ok, accented_too_long, emoji_ok):
        insert_rows(resources["clickhouse"], session(sid, start, end))
    insert_rows(resources["clickhouse"], session("shared", start, end, team_id=1))
    insert_rows(resources["clickhouse"], session("shared", start, end, team_id=2) * 3)  # team 2: 6 events
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    sweep(instance, resources, "errors", DAY, as_of)
    seen = observed(resources["postgres"], "errors")
    assert set(seen) == {ok, "shared", accented_ok, emoji_ok}
    assert seen["shared"]["evidence"]["event_count"] == 2  # team 1's counters only


@pytest.mark.parametrize(("rate", "threshold"), [(0.0, 0), (0.00004, 0), (0.29, 2900), (1.0, 10000)])
def test_deterministic_salted_sampling(instance, resources, rate, threshold):
    add_scanner(instance, resources["postgres"], sample_rate=rate)
    ids = [f"s{n:03d}" for n in range(200)]
    starts = [at("2024-03-01T08:00:00") + timedelta(seconds=n) for n in range(len(ids))]
    insert_rows(
        resources["clickhouse"],
        [row for sid, start in zip(ids, starts) for row in session(sid, start, start + timedelta(minutes=1))],
    )
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of))
    # Expected set computed by ClickHouse from the SPEC's formula, independently of the package's SQL.
    expected = {
        row[0]
        for row in resources["clickhouse"].client().query(
            "SELECT sid FROM (SELECT arrayJoin({ids:Array(String)}) AS sid) "
            "WHERE cityHash64(concat(sid, 'errors')) % 10000 < {t:UInt32}",
            parameters={"ids": ids, "t": threshold},
        ).result_rows
    }
    assert set(observed(resources["postgres"], "errors")) == expected
    assert meta["sampled_out"] == 200 - len(expected)
    if rate == 0.29:
        assert 30 < len(expected) < 90


def test_late_events_surface_a_session_on_a_later_sweep(instance, resources):
    add_scanner(
        instance, resources["postgres"], kind="match", filter={"counters": {"exception_count": {"gte": 1}}}
    )
    insert_rows(resources["clickhouse"], session("quiet", at("2024-03-01T09:00:00"), at("2024-03-01T09:10:00")))
    t1 = at("2024-03-01T12:00:00")
    roll(instance, resources, t1)
    sweep(instance, resources, "errors", DAY, t1)
    assert observed(resources["postgres"], "errors") == {}

    t2 = t1 + timedelta(minutes=5)
    late = event("$exception", at("2024-03-01T09:05:00"), "quiet", inserted_at=t1 + timedelta(minutes=2))
    insert_rows(resources["clickhouse"], [late])
    roll(instance, resources, t2, days=("2024-03-01",))
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, t2), "scanner_candidate_windows")
    seen = observed(resources["postgres"], "errors")
    assert set(seen) == {"quiet"} and seen["quiet"]["evidence"]["session"]["late"] is True
    assert meta["late_candidates"] == 1


def test_a_run_failing_half_way_reruns_without_gap_or_duplicate(instance, resources, tmp_path):
    add_scanner(instance, resources["postgres"])
    ids = [f"s{n}" for n in range(7)]
    for n, sid in enumerate(ids):
        start = at("2024-03-01T08:00:00") + timedelta(minutes=n)
        insert_rows(resources["clickhouse"], session(sid, start, start + timedelta(seconds=30)))
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    # The second batch object cannot be written: a directory sits at its key.
    blocker = tmp_path / "objects/observations/team=1/scanner=errors/date=2024-03-01/000002.jsonl.gz"
    blocker.mkdir(parents=True)
    failed = sweep(instance, resources, "errors", DAY, as_of, page_size=3, raise_on_error=False)
    assert not failed.success
    first = observed(resources["postgres"], "errors")
    assert set(first) == {"s0", "s1", "s2"}  # page 1 committed, page 2 rolled back whole

    blocker.rmdir()
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of, page_size=3))
    final = observed(resources["postgres"], "errors")
    assert set(final) == set(ids)
    assert all(final[s]["created_at"] == first[s]["created_at"] for s in first)  # retries keep created_at
    assert (meta["observed"], meta["already_observed"]) == (4, 3)
    with resources["postgres"].pool().connection() as conn:
        used = conn.execute("SELECT used FROM team_quotas WHERE team_id = 1").fetchone()[0]
        batches = conn.execute("SELECT seq, rows FROM observation_batches ORDER BY seq").fetchall()
    assert used == len(ids)
    assert batches == [(1, 3), (2, 3), (3, 1)]
    keys = list(resources["object_store"].list_keys("observations/"))
    assert len(keys) == 3  # no orphan


def test_batches_go_to_s3_as_gzipped_jsonl(instance, clickhouse_resource, postgres_resource, s3_object_store):
    resources = {"clickhouse": clickhouse_resource, "postgres": postgres_resource, "object_store": s3_object_store}
    add_scanner(instance, postgres_resource)
    insert_rows(clickhouse_resource, session("s3-session", at("2024-03-01T09:00:00"), at("2024-03-01T09:10:00")))
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of))
    (key,) = list(s3_object_store.list_keys("observations/"))
    assert key == "observations/team=1/scanner=errors/date=2024-03-01/000001.jsonl.gz"
    assert meta["batch_keys"] == [s3_object_store.location(key)]
    lines = gzip.decompress(s3_object_store.get(key)).decode().splitlines()
    assert [json.loads(line)["session_id"] for line in lines] == ["s3-session"]


def test_reenable_resumes_from_the_watermark_or_from_now(instance, resources):
    add_scanner(instance, resources["postgres"], scanner_id="resume")
    add_scanner(instance, resources["postgres"], scanner_id="skip")
    t1 = at("2024-03-01T08:00:00")
    roll(instance, resources, t1)
    for scanner_id in ("resume", "skip"):
        sweep(instance, resources, scanner_id, DAY, t1)
        store.set_enabled(resources["postgres"].pool(), scanner_id, False)
    insert_rows(resources["clickhouse"], session("while-disabled", at("2024-03-01T08:30:00"), at("2024-03-01T08:40:00")))
    t2 = at("2024-03-01T12:00:00")
    roll(instance, resources, t2)
    store.set_enabled(resources["postgres"].pool(), "resume", True)
    store.set_enabled(resources["postgres"].pool(), "skip", True, start_at=t2 - SETTLE)  # --from-now
    # Inserted after the roll as of t2, so stamped after it.
    insert_rows(
        resources["clickhouse"],
        session("after-enable", at("2024-03-01T11:30:00"), at("2024-03-01T11:40:00"), inserted_at=t2 + timedelta(minutes=1)),
    )
    t3 = at("2024-03-01T12:30:00")
    roll(instance, resources, t3)
    for scanner_id in ("resume", "skip"):
        sweep(instance, resources, scanner_id, DAY, t3)
    assert set(observed(resources["postgres"], "resume")) == {"while-disabled", "after-enable"}
    assert set(observed(resources["postgres"], "skip")) == {"after-enable"}


def test_an_invalid_stored_scanner_fails_alone_and_without_retry(instance, resources):
    add_scanner(instance, resources["postgres"], scanner_id="broken")
    add_scanner(instance, resources["postgres"], scanner_id="fine")
    insert_rows(resources["clickhouse"], session("s", at("2024-03-01T09:00:00"), at("2024-03-01T09:10:00")))
    with resources["postgres"].pool().connection() as conn:
        conn.execute("""UPDATE scanners SET filter = '{"counters": {"bogus_count": {"gte": 1}}}' WHERE id = 'broken'""")
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    failed = sweep(instance, resources, "broken", DAY, as_of, raise_on_error=False)
    assert not failed.success
    failure = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failure) == 1  # not retried
    assert "bogus_count" in str(failure[0].event_specific_data.error)
    assert set(observed(resources["postgres"], "fine")) == set()
    sweep(instance, resources, "fine", DAY, as_of)
    assert set(observed(resources["postgres"], "fine")) == {"s"}


def test_a_backfill_recomputes_the_partition_and_dedupes_against_sweeps(instance, resources):
    add_scanner(instance, resources["postgres"])
    for n in range(4):
        start = at("2024-03-01T08:00:00") + timedelta(minutes=10 * n)
        insert_rows(resources["clickhouse"], session(f"s{n}", start, start + timedelta(minutes=1)))
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    sweep(instance, resources, "errors", DAY, as_of)
    before = observed(resources["postgres"], "errors")
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of + timedelta(minutes=5), backfill=True))
    assert (meta["candidates"], meta["observed"], meta["already_observed"]) == (4, 0, 4)
    assert observed(resources["postgres"], "errors") == before


def test_the_walk_merges_many_parts_in_key_order_without_buffering_them(clickhouse_resource):
    """A sweep writes its candidates in 8k-row blocks, so a window spans many parts.
    The walk merges them in (end, id) order with one reader and no chunk buffer per
    part: with chDB in the run's process that buffer cost ~135 MB over 8 parts."""
    client = clickhouse_resource.client()
    params = {"scanner_id": "walk-plan", "team_id": 1, "day": DAY, "as_of": at("2024-03-01T23:00:00"), "window_id": "w1"}
    insert = (
        "INSERT INTO scanner_candidates (scanner_id, team_id, day, window_id, session_id, session_end, window_as_of, sampled) "
        "SELECT {scanner_id:String}, 1, {day:Date}, {window_id:String}, concat('s', toString(number * 3 + {part:UInt8})), "
        "{as_of:DateTime64(6, 'UTC')} - toIntervalSecond(number * 3 + {part:UInt8}), {as_of:DateTime64(6, 'UTC')}, 1 "
        "FROM numbers(100)"
    )
    client.command("SYSTEM STOP MERGES scanner_candidates")
    try:
        for part in range(3):  # one part each, their keys interleaved
            client.command(insert, parameters={**params, "part": part})
        walk = sql.load("clickhouse/candidates_walk.sql")
        plan = "\n".join(row[0] for row in client.query("EXPLAIN PIPELINE " + walk, parameters=sql.bind(walk, params)).result_rows)
        rows = client.query(walk, parameters=sql.bind(walk, params)).result_rows
    finally:
        client.command("SYSTEM START MERGES scanner_candidates")
    assert "MergingSortedTransform 3 → 1" in plan, plan
    assert "BufferChunks" not in plan, plan
    keys = [(row[4], row[1]) for row in rows]
    assert len(keys) == 300 and keys == sorted(keys)


def test_candidates_are_stored_in_granules_of_1024_rows(clickhouse_resource):
    """The walk, the stats read and background merges each hold a decompressed granule
    of every column of every part of a window: 1024-row granules keep that to ~1.3 MB
    a part instead of ~2.3 MB at ClickHouse's default 8192 (migration 006)."""
    client = clickhouse_resource.client()
    client.command(
        "INSERT INTO scanner_candidates (scanner_id, team_id, day, window_id, session_id, session_end, window_as_of, sampled) "
        "SELECT 'granules', 1, {day:Date}, 'w', concat('s', toString(number)), {as_of:DateTime64(6, 'UTC')}, "
        "{as_of:DateTime64(6, 'UTC')}, 1 FROM numbers(5000)",
        parameters={"day": DAY, "as_of": at("2024-03-01T23:00:00")},
    )
    parts = client.query(
        "SELECT rows, marks FROM system.parts WHERE database = currentDatabase() AND table = 'scanner_candidates' "
        "AND active AND rows >= 5000"
    ).result_rows
    assert parts, "the 5000-row part is missing"
    for rows, marks in parts:
        granules = marks - 1  # the last mark closes the part
        assert rows / granules <= 1024, (rows, marks)


def test_the_candidates_insert_folds_sessions_in_the_rollups_key_order(clickhouse_resource):
    """Each session's day rows are folded in (team_id, session_id, day) order, one
    session at a time, not in a hash table of the window's sessions spilled to disk
    (+42 MB at 1M sessions, the sweep's memory peak; migration 007)."""
    scanner = parse_scanner({"id": "fold-plan", "team_id": 1, "name": "Fold plan", "kind": "match", "start_at": "2024-02-20T00:00:00Z"})
    compiled = compile_filter(scanner.filter)
    as_of = at("2024-03-02T02:00:00")
    start = watermarks.StartingPoint(watermarks.Watermark(end=scanner.start_at), "scanner start")
    window = watermarks.window(start.watermark, scanner.start_at)
    plan = SweepPlan(
        f"{DAY}|fold-plan", DAY, scanner, compiled, start, window, window.read_days(as_of), [], as_of, at("2024-03-02T00:00:00"), as_of
    )
    insert, params = candidates_statement(clickhouse_resource, [plan, plan], "w")  # two scanners' entries
    select = insert[insert.index("\nSELECT") :]  # the INSERT's own query, settings included
    client = clickhouse_resource.client()
    client.command(  # two days of a few sessions: two day partitions to read
        "INSERT INTO session_counter_rollups_v2 (team_id, day, session_id, first_timestamp, last_timestamp, computed_as_of) "
        "SELECT 1, {day:Date} - number % 2, toString(number), {at:DateTime64(6, 'UTC')}, {at:DateTime64(6, 'UTC')}, "
        "{at:DateTime64(6, 'UTC')} FROM numbers(10)",
        parameters={"day": DAY, "at": at("2024-03-01T01:00:00")},
    )
    plan = "\n".join(row[0] for row in client.query("EXPLAIN PIPELINE " + select, parameters=sql.bind(select, params)).result_rows)
    assert "AggregatingInOrderTransform" in plan, plan
    assert "AggregatingTransform" not in plan.replace("AggregatingInOrderTransform", ""), plan


def test_a_partitions_materialization_previews_its_flagged_sessions(instance, resources, monkeypatch):
    """Issue #13: an analyst reads a scanner's results in the UI: the flagged sessions (linked to
    their PostHog replay when SESSION_ASSETS_POSTHOG_URL is set), a summary that says what
    'already observed' means, and the batch objects. A session id is the SDK's text: it is
    shown literally, never as markdown or HTML."""
    monkeypatch.setenv("SESSION_ASSETS_POSTHOG_URL", "https://eu.posthog.com/")
    add_scanner(instance, resources["postgres"])
    hostile = "x|[y](javascript:z)<b>"
    for sid in ("plain", hostile):
        insert_rows(resources["clickhouse"], session(sid, at("2024-03-01T09:00:00"), at("2024-03-01T09:10:00")))
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of))
    preview = meta["flagged_sessions"]
    assert meta["flagged"] == 2 and meta["dagster/row_count"] == 2
    assert "[plain](https://eu.posthog.com/project/1/replay/plain)" in preview
    assert "https://eu.posthog.com/project/1/replay/x%7C%5By%5D%28javascript%3Az%29%3Cb%3E" in preview
    assert hostile not in preview and "<b>" not in preview and "](javascript" not in preview
    assert meta["summary"] == "2 sessions found in the window: 2 new observations"
    assert len(meta["batch_keys"]) == 1

    again = sweep_metadata(sweep(instance, resources, "errors", DAY, as_of + timedelta(minutes=5), backfill=True))
    assert again["summary"] == "2 sessions found in the window: 0 new observations, 2 already observed by an earlier sweep or backfill"
    assert again["flagged_sessions"] == "No flagged session among the 0 new observations."


@pytest.mark.parametrize("page_size", [0, -5, 10_001, 10**12])
def test_a_sweep_refuses_a_page_size_out_of_bounds(instance, resources, page_size):
    """Issue #14: `page_size` in run config had no bounds (0, -5 or 10**12 put every candidate
    in one page: one transaction, one object). It must be 1..10_000: anything else fails the
    step as it reads its config, naming page_size, before the sweep does anything."""
    from session_assets.assets.scanning import MAX_PAGE_SIZE, ScannerRunConfig

    add_scanner(instance, resources["postgres"], scanner_id="page-config")
    failed = sweep(instance, resources, "page-config", DAY, at("2024-03-01T12:00:00"), page_size=page_size,
                   raise_on_error=False)  # fmt: skip
    assert not failed.success and not failed.get_asset_materialization_events()
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    error = str(failure.event_specific_data.error)
    assert "page_size" in error
    assert "greater than or equal to 1" in error or "less than or equal to 10000" in error
    assert observed(resources["postgres"], "page-config") == {}
    assert [ScannerRunConfig(page_size=n).page_size for n in (1, MAX_PAGE_SIZE)] == [1, 10_000]


def _store_rows(postgres) -> tuple[int, int]:
    with postgres.pool().connection() as conn:
        observations = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
        batches = conn.execute("SELECT count(*) FROM observation_batches").fetchone()[0]
    return observations, batches


def test_a_candidates_query_past_its_time_limit_fails_its_partitions_naming_the_scanners(instance, resources):
    """Issue #14: a candidates pass had no time limit (a costly filter over a big day ran
    until the run's hour was up). Its INSERT ... SELECT now carries max_execution_time
    (SESSION_ASSETS_CANDIDATE_QUERY_SECONDS): past it, the partition fails, not retried in
    the run, with one line naming the scanner and the limit, and nothing is written in
    Postgres or the object store. A shared pass of one team's scanners fails each of its
    partitions naming them all. A microsecond is past any pass that reads a row; with the
    default limit the same partitions sweep."""
    import logging

    from session_assets.assets.scanning import ScannerRunConfig, SweepRecords, plan_sweep, sweep_plans
    from session_assets.resources import ClickHouseResource
    from session_assets.settings import DEFAULT_CANDIDATE_QUERY_SECONDS

    ch, pg = resources["clickhouse"], resources["postgres"]
    for scanner_id in ("heavy", "light"):
        add_scanner(instance, pg, scanner_id=scanner_id, filter={"events": [{"event": "$pageview"}]})
    start = at("2024-03-01T06:00:00")
    insert_rows(ch, [row for n in range(500) for row in session(f"s{n:03d}", start + timedelta(seconds=n), start + timedelta(seconds=n + 60))])
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    tiny = ClickHouseResource(url=ch.url, database=ch.database, candidate_query_seconds=1e-6)
    with_tiny = {**resources, "clickhouse": tiny}

    # One partition, its own run (the asset): one failure, not retried, naming scanner and limit.
    failed = sweep(instance, with_tiny, "heavy", DAY, as_of, raise_on_error=False)
    assert not failed.success and not failed.get_asset_materialization_events()
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message.strip()
    assert "\n" not in message
    assert "the candidates query of scanner 'heavy' (team 1, 2024-03-01) ran past its time limit of 1e-06 s " \
           "(SESSION_ASSETS_CANDIDATE_QUERY_SECONDS) and was stopped" in message, message
    assert _store_rows(pg) == (0, 0) and not list(resources["object_store"].list_keys())

    # Both scanners in one shared pass (a batch's): each partition fails naming both.
    records = SweepRecords(instance)
    plans = [plan_sweep(records, f"{DAY}|{s}", store.get(pg.pool(), s), as_of) for s in ("heavy", "light")]
    outcomes = list(sweep_plans(logging.getLogger("test"), tiny, pg, resources["object_store"], plans, ScannerRunConfig(), retries=1))
    assert [(o.plan.scanner.id, str(o.error)) for o in outcomes] == [
        (own, f"the candidates query of scanner {own!r} (team 1, 2024-03-01, in one pass with {other!r}) ran past "
              "its time limit of 1e-06 s (SESSION_ASSETS_CANDIDATE_QUERY_SECONDS) and was stopped; nothing was "
              "observed for it: narrow its filter or raise the limit")
        for own, other in (("heavy", "light"), ("light", "heavy"))
    ]  # fmt: skip
    assert _store_rows(pg) == (0, 0) and not list(resources["object_store"].list_keys())

    # The limit alone stopped them: with the default each partition sweeps every session.
    assert ch.candidate_query_seconds == DEFAULT_CANDIDATE_QUERY_SECONDS
    for scanner_id in ("heavy", "light"):
        assert sweep_metadata(sweep(instance, resources, scanner_id, DAY, as_of))["observed"] == 500
    assert _store_rows(pg)[0] == 1000
