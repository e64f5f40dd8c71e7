"""Bad events already in ClickHouse, and the loader's answer to the same input (SPEC §13).

Production reads PostHog's `events` table directly, so nothing guarantees the
rows the rollup and the sweep see were validated by `load-events`. Each test
inserts such rows as they could sit in that table (raw bytes where needed),
then rolls up, sweeps, rolls up and sweeps again: nothing may crash, nothing
may count twice, and every other session must still be observed. The decided
behaviour of each case is in docs/bad-input.md.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest

from session_assets.stores.events_io import EVENT_COLUMNS
from session_assets.commands.loader import EventFileError, load_events_file
from session_assets.partitions import daily_partitions_def
from session_assets.resources import ClickHouseResource
from tests.support import add_scanner, at, event, materialize_rollup, observed, rollup_metadata, sweep, sweep_metadata

DAY = date(2024, 3, 1)
# Every day the test scanners (start 2024-02-28) read: from the day before their lookback.
DAYS = tuple(str(date(2024, 2, 25) + timedelta(days=n)) for n in range(6))
AS_OF = at("2024-03-01T12:00:00")
T = at("2024-03-01T09:00:00")

U64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1
MAX_COST = Decimal("99999999999999999999999999.999999999999")  # the largest Decimal(38, 12)
TEN_MB = 10 * 1024 * 1024

COUNTERS = (
    "event_count", "pageview_count", "autocapture_count", "rageclick_count", "exception_count",
    "ai_generation_count", "input_tokens", "output_tokens", "cost_usd",
    "first_timestamp", "last_timestamp", "distinct_id", "entry_url",
)  # fmt: skip


@pytest.fixture
def resources(clickhouse_resource, postgres_resource, local_object_store) -> dict[str, Any]:
    return {"clickhouse": clickhouse_resource, "postgres": postgres_resource, "object_store": local_object_store}


# --- helpers -------------------------------------------------------------------


def raw(
    name: str | bytes,
    ts: datetime,
    session_id: str | bytes,
    properties: str | bytes = "{}",
    *,
    team_id: int = 1,
    distinct_id: str | bytes = "user-1",
    inserted_at: datetime | None = None,
) -> dict[str, Any]:
    """An events row exactly as given: properties are text (any bytes), not a dict."""
    row = event("placeholder", ts, "placeholder", team_id=team_id, inserted_at=inserted_at)
    row.update({"event": name, "properties": properties, "$session_id": session_id, "distinct_id": distinct_id})
    return row


def insert_raw(clickhouse: ClickHouseResource, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows through the ClickHouse client, String columns as bytes (so any bytes go in)."""

    def column_value(value: Any) -> Any:
        return value.encode() if isinstance(value, str) else value

    data = [[column_value(row[name]) for name in EVENT_COLUMNS] for row in rows]
    table = clickhouse.events
    clickhouse.client().insert(table.table, data, column_names=list(EVENT_COLUMNS), database=table.database)


def roll(instance, clickhouse: ClickHouseResource, as_of: datetime, *, backfill: bool = False) -> list[dict[str, Any]]:
    """Materialize both rollup days with the counters check; the check must pass."""
    metadata = []
    for day in DAYS:
        result = materialize_rollup(instance, clickhouse, day, as_of, backfill=backfill)
        (check,) = result.get_asset_check_evaluations()
        assert check.passed, (day, check.metadata)
        metadata.append(rollup_metadata(result))
    return metadata


def rollups(clickhouse: ClickHouseResource) -> dict[tuple[int, str, date], dict[str, Any]]:
    """Every rollup row (FINAL) keyed by (team, session id bytes as text, day)."""
    result = clickhouse.client().query(
        f"SELECT team_id, hex(session_id), day, {', '.join(COUNTERS)} FROM session_counter_rollups_v2 FINAL"
    )
    out = {}
    for team_id, hex_id, day, *values in result.result_rows:
        session = bytes.fromhex(hex_id).decode("utf-8", "backslashreplace")
        out[(team_id, session, day)] = dict(zip(COUNTERS, values))
    return out


def quota_used(postgres, team_id: int = 1) -> int:
    with postgres.pool().connection() as conn:
        row = conn.execute("SELECT coalesce(sum(used), 0) FROM team_quotas WHERE team_id = %s", (team_id,)).fetchone()
    return int(row[0])


def observation_count(postgres) -> int:
    with postgres.pool().connection() as conn:
        return conn.execute("SELECT count(*) FROM observations").fetchone()[0]


def sweep_ok(instance, resources, scanner_id: str, as_of: datetime, **kwargs: Any):
    result = sweep(instance, resources, scanner_id, DAY, as_of, raise_on_error=False, **kwargs)
    if not result.success:
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        raise AssertionError(f"sweep of {scanner_id} failed: {failures[0].event_specific_data.error.message}")
    assert all(check.passed for check in result.get_asset_check_evaluations())
    return sweep_metadata(result)


def rerun_adds_nothing(instance, resources, scanner_ids: list[str]) -> None:
    """An incremental re-roll, a backfill re-roll, a later sweep and a backfill sweep change nothing."""
    before_rollups = rollups(resources["clickhouse"])
    before = {s: observed(resources["postgres"], s) for s in scanner_ids}
    used = quota_used(resources["postgres"])
    roll(instance, resources["clickhouse"], AS_OF + timedelta(minutes=5))
    roll(instance, resources["clickhouse"], AS_OF + timedelta(minutes=10), backfill=True)
    assert rollups(resources["clickhouse"]) == before_rollups
    for scanner_id in scanner_ids:
        later = sweep_ok(instance, resources, scanner_id, AS_OF + timedelta(minutes=10))
        assert later["observed"] == 0
        again = sweep_ok(instance, resources, scanner_id, AS_OF + timedelta(minutes=10), backfill=True)
        assert (again["observed"], again["already_observed"]) == (0, len(before[scanner_id]))
        assert observed(resources["postgres"], scanner_id) == before[scanner_id]
    assert quota_used(resources["postgres"]) == used == observation_count(resources["postgres"])


# --- malformed AI numbers --------------------------------------------------------

GOOD_AI = '{"$ai_input_tokens":10,"$ai_output_tokens":5,"$ai_total_cost_usd":"0.25"}'
SATURATING = (
    '{"$ai_input_tokens":9223372036854775807,"$ai_output_tokens":9223372036854775807,'
    '"$ai_total_cost_usd":"99999999999999999999999999"}'
)

# (session, properties of the bad $ai_generation events, how many, its (input, output, cost) contribution)
AI_CASES: list[tuple[str, str, int, tuple[int, int, Decimal]]] = [
    ("cost-nan-text", '{"$ai_total_cost_usd":"NaN","$ai_input_tokens":3}', 1, (3, 0, Decimal(0))),
    ("cost-nan-literal", '{"$ai_total_cost_usd":NaN,"$ai_input_tokens":3}', 1, (0, 0, Decimal(0))),  # not JSON
    ("cost-infinity-literal", '{"$ai_total_cost_usd":Infinity}', 1, (0, 0, Decimal(0))),
    ("cost-negative-text", '{"$ai_total_cost_usd":"-5","$ai_input_tokens":3}', 1, (3, 0, Decimal(0))),
    ("cost-negative", '{"$ai_total_cost_usd":-5}', 1, (0, 0, Decimal(0))),
    ("cost-1e400-text", '{"$ai_total_cost_usd":"1e400","$ai_input_tokens":3}', 1, (3, 0, Decimal(0))),
    ("cost-1e400", '{"$ai_total_cost_usd":1e400}', 1, (0, 0, Decimal(0))),
    ("cost-abc", '{"$ai_total_cost_usd":"abc","$ai_output_tokens":4}', 1, (0, 4, Decimal(0))),
    ("cost-1e26", '{"$ai_total_cost_usd":1e26}', 1, (0, 0, Decimal(0))),  # beyond Decimal(38, 12)
    ("cost-below-1e-12", '{"$ai_total_cost_usd":"0.0000000000009"}', 1, (0, 0, Decimal(0))),
    ("cost-object", '{"$ai_total_cost_usd":{"usd":1}}', 1, (0, 0, Decimal(0))),
    ("tokens-negative", '{"$ai_input_tokens":-5,"$ai_output_tokens":"-5"}', 1, (0, 0, Decimal(0))),
    ("tokens-text", '{"$ai_input_tokens":"abc","$ai_output_tokens":"NaN"}', 1, (0, 0, Decimal(0))),
    ("tokens-float", '{"$ai_input_tokens":2.9,"$ai_output_tokens":"2.9"}', 1, (2, 2, Decimal(0))),  # truncated
    ("tokens-numeric-text", '{"$ai_input_tokens":"7","$ai_output_tokens":" 7"}', 1, (7, 0, Decimal(0))),
    ("tokens-beyond-int64", '{"$ai_input_tokens":99999999999999999999,"$ai_output_tokens":1e30}', 1, (0, 0, Decimal(0))),
    ("tokens-bool", '{"$ai_input_tokens":true,"$ai_output_tokens":false}', 1, (1, 0, Decimal(0))),
    ("tokens-null", '{"$ai_input_tokens":null,"$ai_total_cost_usd":null}', 1, (0, 0, Decimal(0))),
    # Sums that do not fit the column saturate at its maximum instead of wrapping round.
    ("sums-saturate", SATURATING, 3, (U64_MAX, U64_MAX, MAX_COST)),
]  # fmt: skip


def test_malformed_ai_numbers_count_as_zero_and_sums_saturate(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="ai", kind="ai_cost", rule={"max_cost_usd": 1, "max_total_tokens": 1000})
    rows = []
    for n, (sid, props, copies, _) in enumerate(AI_CASES):
        start = T + timedelta(minutes=n)
        rows.append(raw("$ai_generation", start, sid, GOOD_AI))
        rows += [raw("$ai_generation", start + timedelta(seconds=1 + i), sid, props) for i in range(copies)]
    # Saturated on each of two days, and again when the sweep adds the days together.
    midnight = "saturate-across-midnight"
    rows += [raw("$ai_generation", at("2024-02-29T23:50:00") + timedelta(seconds=i), midnight, SATURATING) for i in range(3)]
    rows += [raw("$ai_generation", at("2024-03-01T00:10:00") + timedelta(seconds=i), midnight, SATURATING) for i in range(3)]
    insert_raw(ch, rows)

    roll(instance, ch, AS_OF)
    rolled = rollups(ch)
    expected = {sid: (10 + e[0], 5 + e[1], Decimal("0.25") + e[2]) for sid, _, _, e in AI_CASES}
    expected = {sid: (min(i, U64_MAX), min(o, U64_MAX), min(c, MAX_COST)) for sid, (i, o, c) in expected.items()}
    got = {
        sid: (row["input_tokens"], row["output_tokens"], row["cost_usd"])
        for (_, sid, day), row in rolled.items()
        if day == DAY and sid != midnight
    }
    assert got == expected
    copies = {sid: n for sid, _, n, _ in AI_CASES}
    for (_, sid, _), row in rolled.items():
        assert row["ai_generation_count"] == (3 if sid == midnight else 1 + copies[sid]), sid  # every event counts
    for day in (date(2024, 2, 29), DAY):
        row = rolled[(1, midnight, day)]
        assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (U64_MAX, U64_MAX, MAX_COST)

    meta = sweep_ok(instance, resources, "ai", AS_OF)
    seen = observed(pg, "ai")
    assert set(seen) == {sid for sid, *_ in AI_CASES} | {midnight}
    assert meta["observed"] == len(seen)
    for sid, (input_tokens, output_tokens, cost) in {**expected, midnight: (U64_MAX, U64_MAX, MAX_COST)}.items():
        evidence = seen[sid]["evidence"]
        assert (evidence["input_tokens"], evidence["output_tokens"]) == (input_tokens, output_tokens), sid
        # Evidence text keeps Python's 28 significant digits: exact below 1e16 USD.
        assert Decimal(evidence["cost_usd"]) == +cost, sid
        over = cost > 1 or input_tokens + output_tokens > 1000
        assert seen[sid]["verdict"] == ("over_limit" if over else "ok"), sid
    assert seen["sums-saturate"]["verdict"] == seen[midnight]["verdict"] == "over_limit"

    rerun_adds_nothing(instance, resources, ["ai"])


# --- properties that are not JSON, and a 10 MB blob ---------------------------------


def test_invalid_json_properties_and_a_10_mb_blob(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="all")
    checkout = [{"key": "$current_url", "op": "icontains", "value": "checkout"}]
    add_scanner(instance, pg, scanner_id="checkout", filter={"events": [{"event": "$pageview", "properties": checkout}]})
    blob = json.dumps({"$current_url": "https://x/checkout", "blob": "x" * TEN_MB, "$ai_input_tokens": 4})
    assert len(blob) > TEN_MB
    rows = [
        raw("$pageview", T, "truncated", '{"$current_url":"https://x/checkout"'),
        raw("$ai_generation", T + timedelta(seconds=1), "truncated", '{"$ai_input_tokens":9'),
        raw("$pageview", T, "empty-text", ""),
        raw("$exception", T + timedelta(seconds=1), "empty-text", "not json at all"),
        raw("$pageview", T, "json-array", '["$current_url","https://x/checkout"]'),
        raw("$pageview", T, "json-string", '"https://x/checkout"'),
        raw("$pageview", T, "blob", blob),
        raw("$ai_generation", T + timedelta(seconds=1), "blob", blob),
        raw("$pageview", T, "fine", '{"$current_url":"https://x/checkout"}'),
    ]
    insert_raw(ch, rows)

    roll(instance, ch, AS_OF)
    rolled = {sid: row for (_, sid, day), row in rollups(ch).items() if day == DAY}
    counts = {
        sid: (r["event_count"], r["pageview_count"], r["exception_count"], r["ai_generation_count"], r["input_tokens"])
        for sid, r in rolled.items()
    }
    assert counts == {
        "truncated": (2, 1, 0, 1, 0),  # counted as events; nothing read from the properties
        "empty-text": (2, 1, 1, 0, 0),
        "json-array": (1, 1, 0, 0, 0),
        "json-string": (1, 1, 0, 0, 0),
        "blob": (2, 1, 0, 1, 4),
        "fine": (1, 1, 0, 0, 0),
    }
    assert {sid: r["entry_url"] for sid, r in rolled.items()} == {
        "truncated": "", "empty-text": "", "json-array": "", "json-string": "",
        "blob": "https://x/checkout", "fine": "https://x/checkout",
    }  # fmt: skip

    sweep_ok(instance, resources, "all", AS_OF)
    sweep_ok(instance, resources, "checkout", AS_OF)
    assert set(observed(pg, "all")) == set(rolled)
    assert set(observed(pg, "checkout")) == {"blob", "fine"}  # unreadable properties never match a property filter
    assert observed(pg, "all")["blob"]["evidence"]["entry_url"] == "https://x/checkout"

    rerun_adds_nothing(instance, resources, ["all"])  # "all" holds every session


# --- events without a session ---------------------------------------------------------


def test_events_without_a_session_are_rolled_up_but_never_observed(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="all")
    rows = [
        raw("$pageview", T, "", '{"$current_url":"https://x/"}'),  # no $session_id anywhere
        raw("$exception", T + timedelta(minutes=1), "", "{}"),
        # The column is what counts: a session id only in the properties is no session.
        raw("$pageview", T + timedelta(minutes=2), "", '{"$session_id":"only-in-properties"}'),
        raw("$pageview", T, "", "{}", team_id=2),
        raw("$pageview", T, "fine", "{}"),
    ]
    insert_raw(ch, rows)

    roll(instance, ch, AS_OF)
    rolled = rollups(ch)
    assert {key: row["event_count"] for key, row in rolled.items()} == {
        (1, "", DAY): 3,  # one row per team and day for all its sessionless events
        (2, "", DAY): 1,
        (1, "fine", DAY): 1,
    }

    # More sessionless events arrive: the row is recomputed, not added to.
    insert_raw(ch, [raw("$pageview", T + timedelta(hours=1), "", "{}", inserted_at=AS_OF + timedelta(minutes=1))])
    meta = roll(instance, ch, AS_OF + timedelta(minutes=3))
    assert meta[-1]["mode"] == "incremental"
    assert rollups(ch)[(1, "", DAY)]["event_count"] == 4

    sweep_ok(instance, resources, "all", AS_OF + timedelta(minutes=3))
    assert set(observed(pg, "all")) == {"fine"}
    rerun_adds_nothing(instance, resources, ["all"])


# --- timestamps in 1970 and 2200 ---------------------------------------------------------


def test_far_past_and_far_future_timestamps_are_outside_every_partition(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="all")
    epoch, future = at("1970-01-01T00:00:00"), at("2200-01-01T00:00:00")
    stamp = {"inserted_at": T + timedelta(seconds=30)}  # ingested today, whatever the event time says
    insert_raw(
        ch,
        [
            raw("$pageview", T, "skewed", '{"$current_url":"https://x/"}'),
            raw("$autocapture", T + timedelta(minutes=10), "skewed"),
            raw("$exception", epoch, "skewed", **stamp),
            raw("$exception", future, "skewed", **stamp),
            raw("$pageview", epoch, "epoch-only", **stamp),
            raw("$pageview", future, "future-only", **stamp),
        ],
    )
    keys = daily_partitions_def.get_partition_keys(current_time=AS_OF)
    assert "1970-01-01" not in keys and "2200-01-01" not in keys  # no rollup partition ever reads them

    roll(instance, ch, AS_OF)
    # Late arrivals with the same bad times take the incremental path (late-day detection).
    late = {"inserted_at": AS_OF + timedelta(minutes=1)}
    insert_raw(ch, [raw("$rageclick", epoch, "skewed", **late), raw("$rageclick", future, "future-only", **late)])
    meta = roll(instance, ch, AS_OF + timedelta(minutes=3))
    assert [m["mode"] for m in meta] == ["incremental"] * len(DAYS)
    assert [m["late_days"] for m in meta] == [[]] * len(DAYS)

    rolled = rollups(ch)
    assert list(rolled) == [(1, "skewed", DAY)]
    row = rolled[(1, "skewed", DAY)]
    assert (row["event_count"], row["exception_count"], row["rageclick_count"]) == (2, 0, 0)
    assert (row["first_timestamp"], row["last_timestamp"]) == (T, T + timedelta(minutes=10))

    sweep_ok(instance, resources, "all", AS_OF + timedelta(minutes=3))
    seen = observed(pg, "all")
    assert set(seen) == {"skewed"}
    assert seen["skewed"]["evidence"]["duration_s"] == 600  # the bad times stretch nothing
    rerun_adds_nothing(instance, resources, ["all"])


# --- bytes that are not UTF-8, and NUL -------------------------------------------------


def test_non_utf8_and_nul_bytes_never_block_a_sweep(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="all")
    checkout = [{"key": "$current_url", "op": "icontains", "value": "checkout"}]
    add_scanner(instance, pg, scanner_id="checkout", filter={"events": [{"event": "$pageview", "properties": checkout}]})
    regex = [{"key": "$current_url", "op": "regex", "value": "^https://x/.?checkout$"}]
    add_scanner(instance, pg, scanner_id="regex", filter={"events": [{"event": "$pageview", "properties": regex}]})
    insert_raw(
        ch,
        [
            raw("$pageview", T, "nul-url", '{"$current_url":"https://x/\\u0000checkout"}'),
            raw("$pageview", T, "bad-url", b'{"$current_url":"https://x/\xffcheckout"}'),
            raw("$pageview", T, "bad-key", b'{"\xff":1,"$current_url":"https://x/checkout"}'),
            raw("$pageview", T, "nul-distinct", "{}", distinct_id="user\x00"),
            raw("$pageview", T, "bad-distinct", "{}", distinct_id=b"user\xff"),
            raw(b"$page\xffview", T, "bad-event"),
            raw("$pageview", T, b"nul\x00session"),
            raw("$pageview", T, b"bad\xffsession"),
            # The hex that the driver would show for b"bad\xffsession": a real, different session.
            raw("$pageview", T, b"bad\xffsession".hex()),
            raw("$pageview", T, "fine", '{"$current_url":"https://x/checkout"}'),
        ],
    )

    roll(instance, ch, AS_OF)
    rolled = rollups(ch)
    assert len(rolled) == 10  # every row is rolled up; the sweep decides what it can observe
    assert rolled[(1, "bad-event", DAY)]["pageview_count"] == 0  # another event name, counted as an event

    for scanner_id in ("all", "checkout", "regex"):
        sweep_ok(instance, resources, scanner_id, AS_OF)
    seen = observed(pg, "all")
    # Session ids that are not valid UTF-8 or hold NUL cannot be stored in Postgres as they
    # are: they are never candidates (like ids over 128 characters), and block nothing.
    assert set(seen) == {
        "nul-url", "bad-url", "bad-key", "nul-distinct", "bad-distinct", "bad-event", b"bad\xffsession".hex(), "fine"
    }  # fmt: skip
    # Text shown in evidence is valid UTF-8 without NUL: NUL dropped, bad bytes become U+FFFD.
    assert seen["nul-url"]["evidence"]["entry_url"] == "https://x/checkout"
    assert seen["nul-distinct"]["evidence"]["session"]["distinct_id"] == "user"
    assert seen["bad-distinct"]["evidence"]["session"]["distinct_id"] == "user\ufffd"
    # Properties that are not valid UTF-8 are not valid JSON: nothing is read from them.
    assert seen["bad-url"]["evidence"]["entry_url"] == seen["bad-key"]["evidence"]["entry_url"] == ""
    assert set(observed(pg, "checkout")) == {"nul-url", "fine"}
    assert set(observed(pg, "regex")) == {"nul-url", "fine"}

    rerun_adds_nothing(instance, resources, ["all"])  # "all" holds every session


# --- the loader: what the tests in test_loader.py do not already cover ---------------------

LOADER_NOW = at("2024-06-01T12:00:00")


def _record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event": "$ai_generation",
        "distinct_id": "d",
        "timestamp": "2024-05-01T00:00:00Z",
        "team_id": 1,
        "properties": {"$session_id": "s"},
    }
    record.update(overrides)
    return record


def _props(**properties: Any) -> dict[str, Any]:
    return _record(properties={"$session_id": "s", **properties})


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def _stored(clickhouse: ClickHouseResource) -> list[tuple[str, str]]:
    table = clickhouse.events
    return clickhouse.client().query(
        f"SELECT `$session_id`, properties FROM `{table.database}`.`{table.table}`"
    ).result_rows


LOADER_REJECTS = [
    ("cost NaN as text", _props(**{"$ai_total_cost_usd": "NaN"}), "$ai_total_cost_usd", "'NaN'"),
    ("cost negative as text", _props(**{"$ai_total_cost_usd": "-5"}), "$ai_total_cost_usd", "'-5'"),
    ("tokens beyond Int64", _props(**{"$ai_input_tokens": "99999999999999999999"}), "$ai_input_tokens",
     "not a non-negative integer: '99999999999999999999'"),
    ("tokens 1e30", _props(**{"$ai_output_tokens": 1e30}), "$ai_output_tokens", "not a non-negative integer"),
    ("tokens boolean", _props(**{"$ai_input_tokens": True}), "$ai_input_tokens", "not a non-negative integer: True"),
    ("properties invalid JSON text", _record(properties='{"$session_id": "s"'), "properties", "malformed JSON text"),
    ("timestamp epoch 0", _record(timestamp=0), "timestamp", "before 2000-01-01, too far in the past: 0"),
    ("timestamp 1970 ISO", _record(timestamp="1970-01-01T00:00:00Z"), "timestamp", "before 2000-01-01"),
    ("timestamp 2200", _record(timestamp="2200-01-01T00:00:00Z"), "timestamp", "too far in the future"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "field", "message"), [c[1:] for c in LOADER_REJECTS], ids=[c[0] for c in LOADER_REJECTS])
def test_loader_rejects_with_line_and_field(clickhouse_resource, tmp_path, record, field, message):
    path = _write(tmp_path / "events.jsonl", [_record(), record])
    with pytest.raises(EventFileError) as caught:
        load_events_file(clickhouse_resource, path, now=LOADER_NOW)
    assert f"line 2: field '{field}': " in str(caught.value) and message in str(caught.value)
    assert [(p.line, p.field) for p in caught.value.problems] == [(2, field)]
    assert _stored(clickhouse_resource) == []


def test_loader_rejects_invalid_properties_json_in_a_csv(clickhouse_resource, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text('event,timestamp,distinct_id,session_id,properties\ne,2024-05-01T00:00:00Z,d,s,"{""a"": "\n')
    with pytest.raises(EventFileError, match=r"line 2: field 'properties': malformed JSON text"):
        load_events_file(clickhouse_resource, path, team_id=1, now=LOADER_NOW)
    assert _stored(clickhouse_resource) == []


def test_loader_accepts_what_the_rollup_handles(clickhouse_resource, tmp_path):
    """Sessionless events, Int64-max tokens and a 10 MB property are loaded as they are."""
    blob = "x" * TEN_MB
    path = _write(
        tmp_path / "events.jsonl",
        [
            _record(properties={"$session_id": ""}),
            _record(properties={"$session_id": "max", "$ai_input_tokens": INT64_MAX}),
            _record(properties={"$session_id": "blob", "blob": blob}),
        ],
    )
    assert load_events_file(clickhouse_resource, path, now=LOADER_NOW).rows == 3
    stored = {sid: json.loads(props) for sid, props in _stored(clickhouse_resource)}
    assert stored[""] == {}  # an empty session id means no session
    assert stored["max"]["$ai_input_tokens"] == INT64_MAX  # the rollup's sums saturate
    assert stored["blob"]["blob"] == blob


@pytest.mark.parametrize("cost", ["1e400", 1e30, "100000000000000000000000000", "1e999999999"])
def test_loader_rejects_a_cost_the_rollup_cannot_hold(clickhouse_resource, tmp_path, cost):
    """1e26 USD or more would be counted as 0 by the rollup (Decimal(38, 12)): refused, naming line and field."""
    path = _write(tmp_path / "events.jsonl", [_props(**{"$ai_total_cost_usd": cost})])
    with pytest.raises(EventFileError, match="line 1: field '\\$ai_total_cost_usd': 1e26 USD or more"):
        load_events_file(clickhouse_resource, path, now=LOADER_NOW)
    assert _stored(clickhouse_resource) == []


def test_loader_accepts_the_largest_cost_the_rollup_holds(clickhouse_resource, tmp_path):
    largest = "99999999999999999999999999.999999999999"
    path = _write(tmp_path / "events.jsonl", [_props(**{"$ai_total_cost_usd": largest})])
    assert load_events_file(clickhouse_resource, path, now=LOADER_NOW).rows == 1
    assert json.loads(_stored(clickhouse_resource)[0][1], parse_float=Decimal)["$ai_total_cost_usd"] == Decimal(largest)


@pytest.mark.parametrize("cost", ["1e-999999999", "1e-70", "0.1e-60"])
def test_loader_writes_a_tiny_cost_in_bounded_text(clickhouse_resource, tmp_path, cost):
    """`1e-999999999` is 0 to the rollup; written out in full it would be a gigabyte of zeros."""
    path = _write(tmp_path / "events.jsonl", [_props(**{"$ai_total_cost_usd": cost})])
    assert load_events_file(clickhouse_resource, path, now=LOADER_NOW).rows == 1
    (_, properties), = _stored(clickhouse_resource)
    assert len(properties) < 200
    assert json.loads(properties, parse_float=Decimal)["$ai_total_cost_usd"] == 0


@pytest.mark.parametrize("session_id", ["s\x00x", "\x00"])
def test_loader_rejects_a_session_id_with_nul(clickhouse_resource, tmp_path, session_id):
    """Postgres text cannot hold NUL, so such a session would be rolled up and never observed."""
    path = _write(tmp_path / "events.jsonl", [_record(properties={"$session_id": session_id})])
    with pytest.raises(EventFileError, match="line 1: field '\\$session_id': contains NUL"):
        load_events_file(clickhouse_resource, path, now=LOADER_NOW)
    assert _stored(clickhouse_resource) == []


def test_loader_rejects_a_session_id_with_nul_in_a_csv(clickhouse_resource, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("event,timestamp,distinct_id,session_id\ne,2024-05-01T00:00:00Z,d,s\x00x\n", encoding="utf-8")
    with pytest.raises(EventFileError, match="line 2: field 'session_id': contains NUL"):
        load_events_file(clickhouse_resource, path, team_id=1, now=LOADER_NOW)
    assert _stored(clickhouse_resource) == []


HUGE_NUMBER_TEXT = [
    ("jsonl tokens", "jsonl", "$ai_input_tokens", "not a non-negative integer: '1e999999999'"),
    ("jsonl team", "jsonl", "team_id", "not a positive integer: '1e999999999'"),
    ("csv tokens", "csv", "$ai_output_tokens", "not a non-negative integer: '1e999999999'"),
    ("csv team", "csv", "team_id", "not a positive integer: '1e999999999'"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "field", "message"), [c[1:] for c in HUGE_NUMBER_TEXT], ids=[c[0] for c in HUGE_NUMBER_TEXT])
def test_loader_refuses_a_huge_number_written_as_text_without_converting_it(clickhouse_resource, tmp_path, fmt, field, message):
    """Issue #14: `"1e999999999"` (a 159-byte file) went through int(Decimal(text)), a billion digits: the load hung."""
    if fmt == "jsonl":
        bad = _props(**{field: "1e999999999"}) if field.startswith("$") else _record(team_id="1e999999999")
        path = _write(tmp_path / "events.jsonl", [_record(), bad])
    else:
        path = tmp_path / "events.csv"
        path.write_text(f"event,timestamp,distinct_id,session_id,team_id,{'$ai_output_tokens'}\n"
                        + ("e,2024-05-01T00:00:00Z,d,s,1e999999999,7\n" if field == "team_id"
                           else "e,2024-05-01T00:00:00Z,d,s,1,1e999999999\n"))  # fmt: skip
    with pytest.raises(EventFileError) as caught:
        load_events_file(clickhouse_resource, path, now=LOADER_NOW)
    assert f"line 2: field '{field}': {message}" in str(caught.value)
    assert [(p.line, p.field) for p in caught.value.problems] == [(2, field)]
    assert _stored(clickhouse_resource) == []


@pytest.mark.parametrize(("timestamp", "message"), [(1e308, "too far in the future"), ("1e308", "too far in the future"),
                                                   (-1e308, "before 2000-01-01"), ("1e999999999", "too far in the future")])  # fmt: skip
def test_loader_refuses_an_epoch_beyond_any_time_naming_line_and_field(clickhouse_resource, tmp_path, timestamp, message):
    """Issue #14: a timestamp of 1e308 (JSONL or CSV) escaped as an OverflowError traceback (1e308 * 1000 is inf)."""
    jsonl = _write(tmp_path / "events.jsonl", [_record(), _record(timestamp=timestamp)])
    csv_path = tmp_path / "events.csv"
    csv_path.write_text(f"event,timestamp,distinct_id,session_id\ne,2024-05-01T00:00:00Z,d,s\ne,{timestamp},d,s\n")
    for path, line in ((jsonl, 2), (csv_path, 3)):  # a CSV header is line 1
        with pytest.raises(EventFileError) as caught:
            load_events_file(clickhouse_resource, path, team_id=1, now=LOADER_NOW)
        assert f"line {line}: field 'timestamp': " in str(caught.value) and message in str(caught.value), path
        assert [(p.line, p.field) for p in caught.value.problems] == [(line, "timestamp")]
    assert _stored(clickhouse_resource) == []


@pytest.mark.parametrize("quota", [0, -5, 10**9 + 1, 10**30])
def test_a_sweep_refuses_a_default_monthly_quota_out_of_bounds(instance, resources, quota):
    """Issue #14: `default_monthly_quota` in run config was never validated. It must be 1..10**9:
    anything else fails the step as it reads its config (Dagster's config schema holds no bounds,
    pydantic checks them then), before the sweep does anything."""
    add_scanner(instance, resources["postgres"], scanner_id="quota-config")
    with pytest.raises(Exception, match="default_monthly_quota") as raised:
        sweep(instance, resources, "quota-config", DAY, AS_OF, default_monthly_quota=quota)
    assert "greater than or equal to 1" in str(raised.value) or "less than or equal to 1000000000" in str(raised.value)
    assert observation_count(resources["postgres"]) == 0 and quota_used(resources["postgres"]) == 0


# --- the events table itself -------------------------------------------------------------


def _step_failure(result) -> str:
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failure.event_specific_data.error.message.strip()


@pytest.mark.parametrize("table", ["no_such_events", "nowhere.events"])
def test_a_missing_events_table_is_one_error_naming_it_for_rollups_and_sweeps(instance, resources, table):
    """Issue #14: SESSION_ASSETS_EVENTS_TABLE naming no table (or a database that is not there)
    failed rollups, and sweeps of scanners with event filters, with the engine's raw
    UNKNOWN_TABLE / UNKNOWN_DATABASE traceback. Now: one line naming the table and the
    variable, nothing written; a scanner without an event filter reads only the rollups and
    still sweeps."""
    import dagster as dg

    from session_assets.assets import events, session_counter_rollups

    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="all")
    add_scanner(instance, pg, scanner_id="pageviews", filter={"events": [{"event": "$pageview"}]})
    insert_raw(ch, [raw("$pageview", T, "s1", '{"$current_url":"https://x/"}'), raw("$pageview", T, "s2", "{}")])
    roll(instance, ch, AS_OF)  # with the real table: the sweeps' rollups are there
    wrong = ClickHouseResource(url=ch.url, database=ch.database, events_table=table)
    where = table if "." in table else f"{ch.database}.{table}"

    result = dg.materialize(
        [events, session_counter_rollups], selection=[session_counter_rollups], partition_key=str(DAY),
        resources={"clickhouse": wrong}, instance=instance, tags={"session_assets/as_of": AS_OF.isoformat()},
        raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    message = _step_failure(result)
    assert "\n" not in message and "Traceback" not in message, message
    assert f"the events table {where} does not exist: SESSION_ASSETS_EVENTS_TABLE={table!r} names no table" in message

    with_wrong = {**resources, "clickhouse": wrong}
    failed = sweep(instance, with_wrong, "pageviews", DAY, AS_OF + timedelta(minutes=5), raise_on_error=False)
    assert not failed.success
    message = _step_failure(failed)
    assert "\n" not in message and "Traceback" not in message, message
    assert f"scanner 'pageviews' filters on events, but the events table {where} does not exist" in message
    assert f"SESSION_ASSETS_EVENTS_TABLE={table!r}" in message
    assert observed(pg, "pageviews") == {} and quota_used(pg) == 0

    sweep_ok(instance, with_wrong, "all", AS_OF + timedelta(minutes=5))
    assert set(observed(pg, "all")) == {"s1", "s2"}


# --- unbounded text from visitors ---------------------------------------------------------


def test_a_10_mb_url_and_distinct_id_are_stored_and_observed_bounded(instance, resources):
    """Issue #14: `$current_url` went into the rollups whole (`entry_url`), and from there,
    with the distinct id, into every observation's evidence (jsonb) and batch line: a page
    of such sessions could pass Postgres's 1 GB parameter limit and fail the sweep on every
    run. The rollup keeps a URL's first MAX_ENTRY_URL_CHARS characters and a distinct id's
    first MAX_DISTINCT_ID_CHARS (a page of 1,000 whole 10 MB ids would be 10 GB in the walk); each evidence string
    is cut to MAX_EVIDENCE_TEXT_BYTES of JSON text (escapes counted), the same in Postgres
    and in the batch object."""
    import gzip
    from json.encoder import encode_basestring_ascii as json_text

    from session_assets.assets.rollups import MAX_DISTINCT_ID_CHARS, MAX_ENTRY_URL_CHARS
    from session_assets.core.observations import MAX_EVIDENCE_BYTES, MAX_EVIDENCE_TEXT_BYTES

    def fits(text: str) -> bool:
        return len(json_text(text)) - 2 <= MAX_EVIDENCE_TEXT_BYTES

    def longest_prefix_that_fits(cut: str, whole: str) -> bool:
        return whole.startswith(cut) and fits(cut) and (len(cut) == len(whole) or not fits(whole[: len(cut) + 1]))

    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="all")
    urls = {
        "ascii-url": "https://x/checkout?q=" + "a" * TEN_MB,
        "wide-url": "https://x/" + "é" * (TEN_MB // 2),  # 6 bytes each once escaped in JSON
        "short-url": "https://x/",
    }
    wide_id = "user-" + "😀" * (TEN_MB // 4)  # 12 bytes each once escaped
    rows = [
        raw("$pageview", T, sid, json.dumps({"$current_url": url}, ensure_ascii=False),
            distinct_id=wide_id if sid == "ascii-url" else "user-1")
        for sid, url in urls.items()
    ]  # fmt: skip
    insert_raw(ch, rows)

    roll(instance, ch, AS_OF)
    rolled = {sid: row["entry_url"] for (_, sid, day), row in rollups(ch).items() if day == DAY}
    assert rolled == {sid: url[:MAX_ENTRY_URL_CHARS] for sid, url in urls.items()}
    assert len(rolled["ascii-url"]) == len(rolled["wide-url"]) == MAX_ENTRY_URL_CHARS
    # The distinct id too, in characters (an emoji is one): candidates and the walk hold 1,024.
    ids = {sid: row["distinct_id"] for (_, sid, day), row in rollups(ch).items() if day == DAY}
    assert ids == {"ascii-url": wide_id[:MAX_DISTINCT_ID_CHARS], "wide-url": "user-1", "short-url": "user-1"}

    sweep_ok(instance, resources, "all", AS_OF)
    evidence = {sid: row["evidence"] for sid, row in observed(pg, "all").items()}
    assert set(evidence) == set(urls)
    assert evidence["ascii-url"]["entry_url"] == rolled["ascii-url"]  # 2,048 ASCII characters fit whole
    assert evidence["short-url"]["entry_url"] == "https://x/"
    assert len(evidence["wide-url"]["entry_url"]) < MAX_ENTRY_URL_CHARS  # 2,048 'é' do not: cut further
    assert longest_prefix_that_fits(evidence["wide-url"]["entry_url"], rolled["wide-url"])
    assert longest_prefix_that_fits(evidence["ascii-url"]["session"]["distinct_id"], wide_id)
    assert evidence["short-url"]["session"]["distinct_id"] == "user-1"

    (key,) = resources["object_store"].list_keys("observations/")
    lines = gzip.decompress(resources["object_store"].get(key)).decode().splitlines()
    assert {json.loads(line)["session_id"]: json.loads(line)["evidence"] for line in lines} == evidence
    assert max(len(line) for line in lines) <= MAX_EVIDENCE_BYTES

    rerun_adds_nothing(instance, resources, ["all"])
