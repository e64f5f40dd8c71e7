"""load_events_file against a real chDB: round trips, rejection of bad rows, idempotent retries, flat memory."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from session_assets.commands.loader import MAX_LINE_BYTES, EventFileError, LoadReport, RowProblem, load_events_file
from session_assets.resources import ClickHouseResource

UTC = timezone.utc
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
COLUMNS = ("uuid", "event", "properties", "timestamp", "team_id", "distinct_id", "$session_id", "inserted_at")


def read_events(resource: ClickHouseResource) -> list[dict[str, Any]]:
    """Every row of the events table as a dict, times made UTC-aware, ordered by time then id."""
    table = resource.events
    result = resource.client().query(
        f"SELECT uuid, event, properties, timestamp, team_id, distinct_id, `$session_id`, inserted_at "
        f"FROM `{table.database}`.`{table.table}` ORDER BY timestamp, uuid"
    )
    rows = []
    for values in result.result_rows:
        row = dict(zip(COLUMNS, values, strict=True))
        for key in ("timestamp", "inserted_at"):
            if row[key].tzinfo is None:
                row[key] = row[key].replace(tzinfo=UTC)
        row["uuid"] = str(row["uuid"])
        row["properties"] = json.loads(row["properties"])
        rows.append(row)
    return rows


def count_events(resource: ClickHouseResource) -> int:
    table = resource.events
    return resource.client().query(f"SELECT count() FROM `{table.database}`.`{table.table}`").result_rows[0][0]


def stored_properties(resource: ClickHouseResource, event_uuid: str) -> str:
    table = resource.events
    return (
        resource.client()
        .query(
            f"SELECT properties FROM `{table.database}`.`{table.table}` WHERE uuid = {{id:UUID}}",
            parameters={"id": event_uuid},
        )
        .result_rows[0][0]
    )


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def good_record(n: int, **overrides: Any) -> dict[str, Any]:
    record = {
        "uuid": str(uuid.UUID(int=n + 1)),
        "event": "$pageview",
        "distinct_id": f"user-{n % 7}",
        "timestamp": f"2024-05-{1 + n % 28:02d}T10:{n % 60:02d}:00.{n:06d}Z",
        "team_id": 1,
        "properties": {"$session_id": f"sess-{n // 5}", "$current_url": f"https://shop.example.com/p/{n}"},
    }
    record.update(overrides)
    return record


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------


def test_jsonl_round_trip_keeps_every_field(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    ids = [str(uuid.uuid4()) for _ in range(6)]
    records = [
        {  # web event, team 1, microseconds and Z
            "uuid": ids[0], "event": "$pageview", "distinct_id": "alice", "timestamp": "2024-05-01T10:00:00.123456Z",
            "team_id": 1, "properties": {"$session_id": "s-1", "$current_url": "https://shop.example.com/é", "n": 3},
        },
        {  # AI event, team 2: tokens as a numeric string, cost as an exponent float, offset time, kept inserted_at
            "uuid": ids[1], "event": "$ai_generation", "distinct_id": "bob", "timestamp": "2024-05-02T12:00:00+02:00",
            "team_id": 2, "inserted_at": "2024-05-02T10:00:05.5Z",
            "properties": {"$session_id": "s-2", "$ai_model": "gpt-4o-mini", "$ai_input_tokens": "1200",
                           "$ai_output_tokens": 350, "$ai_total_cost_usd": 1.2e-05},
        },
        {  # AI event, team 3: cost as a string; session id at the top level; naive time means UTC
            "uuid": ids[2], "event": "$ai_generation", "distinct_id": "carol", "timestamp": "2024-05-03 08:30:00",
            "team_id": "3", "$session_id": "s-3",
            "properties": {"$ai_input_tokens": 10, "$ai_output_tokens": 0, "$ai_total_cost_usd": "0.003100"},
        },
        {  # no uuid: derived; `session_id` spelling; epoch milliseconds
            "event": "$autocapture", "distinct_id": "dave", "timestamp": 1714723200250, "team_id": 1,
            "session_id": "s-4", "properties": {"$event_type": "click"},
        },
        {  # no session at all, properties as JSON text (straight from an events table)
            "uuid": ids[4], "event": "server_event", "distinct_id": "erin", "timestamp": "2024-05-05T00:00:00Z",
            "team_id": 2, "properties": json.dumps({"plan": "pro", "$session_id": None}),
        },
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "export.jsonl", records[:3] + [""] + records[3:])  # a blank line is skipped

    report = load_events_file(clickhouse_resource, path, now=NOW)

    assert report == LoadReport(path=str(path), rows=5, batches=1, skipped_duplicate_batches=0, seconds=report.seconds)
    rows = read_events(clickhouse_resource)
    derived = next(r for r in rows if r["distinct_id"] == "dave")
    assert uuid.UUID(derived["uuid"]).version == 5
    assert rows == [
        {
            "uuid": ids[0], "event": "$pageview", "distinct_id": "alice", "team_id": 1, "$session_id": "s-1",
            "timestamp": datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC), "inserted_at": NOW,
            "properties": {"$session_id": "s-1", "$current_url": "https://shop.example.com/é", "n": 3},
        },
        {
            "uuid": ids[1], "event": "$ai_generation", "distinct_id": "bob", "team_id": 2, "$session_id": "s-2",
            "timestamp": datetime(2024, 5, 2, 10, 0, tzinfo=UTC),
            "inserted_at": datetime(2024, 5, 2, 10, 0, 5, 500000, tzinfo=UTC),
            "properties": {"$session_id": "s-2", "$ai_model": "gpt-4o-mini", "$ai_input_tokens": 1200,
                           "$ai_output_tokens": 350, "$ai_total_cost_usd": 0.000012},
        },
        {
            "uuid": derived["uuid"], "event": "$autocapture", "distinct_id": "dave", "team_id": 1, "$session_id": "s-4",
            "timestamp": datetime(2024, 5, 3, 8, 0, 0, 250000, tzinfo=UTC), "inserted_at": NOW,
            "properties": {"$event_type": "click", "$session_id": "s-4"},
        },
        {
            "uuid": ids[2], "event": "$ai_generation", "distinct_id": "carol", "team_id": 3, "$session_id": "s-3",
            "timestamp": datetime(2024, 5, 3, 8, 30, tzinfo=UTC), "inserted_at": NOW,
            "properties": {"$ai_input_tokens": 10, "$ai_output_tokens": 0, "$ai_total_cost_usd": 0.0031,
                           "$session_id": "s-3"},
        },
        {
            "uuid": ids[4], "event": "server_event", "distinct_id": "erin", "team_id": 2, "$session_id": "",
            "timestamp": datetime(2024, 5, 5, tzinfo=UTC), "inserted_at": NOW, "properties": {"plan": "pro"},
        },
    ]  # fmt: skip
    # Rollup SQL reads costs with toDecimal128OrNull, which takes no exponent: fixed-point text.
    assert '"$ai_total_cost_usd":0.000012}' in stored_properties(clickhouse_resource, ids[1])
    assert '"$ai_total_cost_usd":0.003100,' in stored_properties(clickhouse_resource, ids[2])

    # The derived uuid depends only on the file: the same load elsewhere gives the same id.
    other = ClickHouseResource(url=clickhouse_resource.url, database=clickhouse_resource.database + "_b")
    other.migrate()
    load_events_file(other, path, now=NOW + timedelta(hours=1))
    assert derived["uuid"] in {r["uuid"] for r in read_events(other)}


def test_csv_round_trip_maps_columns_and_properties(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["event", "timestamp", "user_id", "session_id", "$current_url", "$ai_input_tokens",
                      "$ai_output_tokens", "$ai_total_cost_usd", "$ai_model", "note", "inserted_at"])  # fmt: skip
        out.writerow(["$pageview", "2024-05-10T09:00:00Z", "u-1", "s-1", "https://x.test/a", "", "", "", "", "", ""])
        out.writerow(["$ai_generation", "2024-05-10T09:00:05.25+00:00", "u-1", "s-1", "", "12", "7", "0.00042",
                      "gpt-4o", "multi\nline, with comma", "2024-05-10T09:01:00Z"])  # fmt: skip
        out.writerow(["$ai_generation", "2024-05-10T09:00:09Z", "u-2", "", "", "3", "1", "1e-6", "", "", ""])

    report = load_events_file(clickhouse_resource, path, team_id=42, now=NOW)

    assert (report.rows, report.batches) == (3, 1)
    rows = read_events(clickhouse_resource)
    for row in rows:
        assert uuid.UUID(row["uuid"]).version == 5
        del row["uuid"]
    assert rows == [
        {
            "event": "$pageview", "distinct_id": "u-1", "team_id": 42, "$session_id": "s-1",
            "timestamp": datetime(2024, 5, 10, 9, 0, tzinfo=UTC), "inserted_at": NOW,
            "properties": {"$current_url": "https://x.test/a", "$session_id": "s-1"},
        },
        {
            "event": "$ai_generation", "distinct_id": "u-1", "team_id": 42, "$session_id": "s-1",
            "timestamp": datetime(2024, 5, 10, 9, 0, 5, 250000, tzinfo=UTC),
            "inserted_at": datetime(2024, 5, 10, 9, 1, tzinfo=UTC),
            "properties": {"$ai_input_tokens": 12, "$ai_output_tokens": 7, "$ai_total_cost_usd": 0.00042,
                           "$ai_model": "gpt-4o", "note": "multi\nline, with comma", "$session_id": "s-1"},
        },
        {
            "event": "$ai_generation", "distinct_id": "u-2", "team_id": 42, "$session_id": "",
            "timestamp": datetime(2024, 5, 10, 9, 0, 9, tzinfo=UTC), "inserted_at": NOW,
            "properties": {"$ai_input_tokens": 3, "$ai_output_tokens": 1, "$ai_total_cost_usd": 0.000001},
        },
    ]  # fmt: skip


def test_csv_with_bom_crlf_and_team_column(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "\ufeffevent,timestamp,distinct_id,$session_id,team_id\r\n"
        "$pageview,2024-05-10T09:00:00Z,d-1,s-1,7\r\n"
        "\r\n"
        "$pageleave,2024-05-10T09:05:00Z,d-1,s-1,8\r\n".encode()
    )
    load_events_file(clickhouse_resource, path, now=NOW)
    assert [(r["event"], r["team_id"], r["$session_id"]) for r in read_events(clickhouse_resource)] == [
        ("$pageview", 7, "s-1"),
        ("$pageleave", 8, "s-1"),
    ]


def test_csv_properties_column_is_merged(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    path = tmp_path / "dump.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["uuid", "event", "timestamp", "distinct_id", "$session_id", "team_id", "properties", "plan"])
        row_id = str(uuid.uuid4())
        out.writerow(
            [row_id, "$pageview", "2024-05-10T09:00:00Z", "d", "s", "5", '{"$browser":"Firefox","n":2}', "pro"]
        )
    load_events_file(clickhouse_resource, path, now=NOW)
    [row] = read_events(clickhouse_resource)
    assert (row["uuid"], row["team_id"]) == (row_id, 5)
    assert row["properties"] == {"$browser": "Firefox", "n": 2, "plan": "pro", "$session_id": "s"}


def test_gzip_input_in_both_formats(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    jsonl = tmp_path / "export.ndjson.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as handle:
        for n in range(30):
            handle.write(json.dumps(good_record(n)) + "\n")
    table_csv = tmp_path / "more.csv.gz"
    with gzip.open(table_csv, "wt", encoding="utf-8", newline="") as handle:
        handle.write("event,timestamp,distinct_id,session_id\n$pageview,2024-05-20T00:00:00Z,z,s-z\n")

    assert load_events_file(clickhouse_resource, jsonl, now=NOW, batch_size=7).batches == 5
    assert load_events_file(clickhouse_resource, table_csv, team_id=9, now=NOW).rows == 1
    rows = read_events(clickhouse_resource)
    assert len(rows) == 31
    assert [(r["team_id"], r["$session_id"]) for r in rows if r["distinct_id"] == "z"] == [(9, "s-z")]

    not_gzip = tmp_path / "broken.jsonl.gz"
    not_gzip.write_bytes(b'{"event": "plain text, not gzip"}\n')
    with pytest.raises(EventFileError, match="broken.jsonl.gz: not a readable gzip file"):
        load_events_file(clickhouse_resource, not_gzip, now=NOW)


def test_format_from_option_or_extension(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text("event,timestamp,distinct_id,session_id\n$pageview,2024-05-20T00:00:00Z,z,s\n")
    with pytest.raises(EventFileError, match=r"events\.txt: cannot tell the format"):
        load_events_file(clickhouse_resource, path, team_id=1, now=NOW)
    with pytest.raises(EventFileError, match="unknown format 'xml'"):
        load_events_file(clickhouse_resource, path, fmt="xml", team_id=1, now=NOW)
    assert load_events_file(clickhouse_resource, path, fmt="csv", team_id=1, now=NOW).rows == 1


# ---------------------------------------------------------------------------
# bad input: nothing is loaded, the message names line and field
# ---------------------------------------------------------------------------

FUTURE = (NOW + timedelta(days=2)).isoformat()
LONG_SESSION = "s" * 129

BAD_JSONL: list[tuple[str, Any, str, str]] = [
    # (case, the bad line, field, part of the message)
    ("missing event", {**good_record(9), "event": None}, "event", "missing"),
    ("empty event", good_record(9, event=""), "event", "missing"),
    ("event not a string", good_record(9, event=5), "event", "not a string"),
    ("missing distinct_id", {k: v for k, v in good_record(9).items() if k != "distinct_id"}, "distinct_id", "missing"),
    ("missing timestamp", good_record(9, timestamp=None), "timestamp", "missing"),
    ("unparseable timestamp", good_record(9, timestamp="yesterday"), "timestamp", "not an ISO 8601 time: 'yesterday'"),
    ("timestamp before 2000", good_record(9, timestamp="1999-12-31T23:59:59Z"), "timestamp", "before 2000-01-01"),
    ("timestamp far future", good_record(9, timestamp=FUTURE), "timestamp", "more than 1 day after the load time"),
    ("bad inserted_at", good_record(9, inserted_at="soon"), "inserted_at", "not an ISO 8601 time"),
    ("session id too long", good_record(9, properties={"$session_id": LONG_SESSION}), "$session_id", "longer than 128"),
    ("negative tokens", good_record(9, properties={"$ai_input_tokens": -1}), "$ai_input_tokens", "non-negative integer"),
    ("fractional tokens", good_record(9, properties={"$ai_output_tokens": 1.5}), "$ai_output_tokens", "non-negative integer"),
    ("text tokens", good_record(9, properties={"$ai_input_tokens": "many"}), "$ai_input_tokens", "non-negative integer"),
    ("NaN cost", '{"event":"e","distinct_id":"d","timestamp":"2024-05-01T00:00:00Z","team_id":1,'
                 '"properties":{"$ai_total_cost_usd":NaN}}', "$ai_total_cost_usd", "not a non-negative finite number: NaN"),
    ("text cost", good_record(9, properties={"$ai_total_cost_usd": "abc"}), "$ai_total_cost_usd", "finite number: 'abc'"),
    ("negative cost", good_record(9, properties={"$ai_total_cost_usd": -1}), "$ai_total_cost_usd", "finite number: -1"),
    ("infinite cost", '{"event":"e","distinct_id":"d","timestamp":"2024-05-01T00:00:00Z","team_id":1,'
                      '"properties":{"$ai_total_cost_usd":1e999}}', "$ai_total_cost_usd", "finite number: inf"),
    ("malformed JSON", '{"event": "$pageview", "distinct_id": ', "json", "malformed JSON"),
    ("not an object", "[1, 2, 3]", "json", "not a JSON object"),
    ("properties not an object", good_record(9, properties=[1, 2]), "properties", "not a JSON object"),
    ("NaN elsewhere in properties", '{"event":"e","distinct_id":"d","timestamp":"2024-05-01T00:00:00Z","team_id":1,'
                                    '"properties":{"x":NaN}}', "properties", "not representable as JSON"),
    ("lone surrogate", '{"event":"e\\ud800","distinct_id":"d","timestamp":"2024-05-01T00:00:00Z","team_id":1}',
     "event", "unpaired UTF-16 surrogate"),
    ("bad uuid", good_record(9, uuid="not-a-uuid"), "uuid", "not a UUID: 'not-a-uuid'"),
    ("team id zero", good_record(9, team_id=0), "team_id", "not a positive integer"),
    ("team id text", good_record(9, team_id="acme"), "team_id", "not a positive integer: 'acme'"),
    ("team id missing", {k: v for k, v in good_record(9).items() if k != "team_id"}, "team_id", "missing"),
]  # fmt: skip


@pytest.mark.parametrize("bad_line, field, message", [case[1:] for case in BAD_JSONL], ids=[c[0] for c in BAD_JSONL])
def test_bad_jsonl_row_rejects_the_whole_file(
    clickhouse_resource: ClickHouseResource, tmp_path: Path, bad_line: Any, field: str, message: str
) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl", [good_record(0), good_record(1), good_record(2), bad_line, good_record(4)]
    )

    with pytest.raises(EventFileError) as caught:
        load_events_file(clickhouse_resource, path, now=NOW)

    error = caught.value
    assert str(error).startswith(f"{path}: 1 bad row, nothing loaded:\n  line 4: field '{field}': ")
    assert message in str(error)
    assert [(p.line, p.field) for p in error.problems] == [(4, field)]
    assert count_events(clickhouse_resource) == 0


def test_non_utf8_line_is_a_problem_not_a_crash(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps(good_record(0)).encode()
    path.write_bytes(good + b"\n" + good.replace(b"user-0", b"user-\xff\xfe") + b"\n")
    with pytest.raises(EventFileError, match=r"line 2: field 'encoding': not valid UTF-8"):
        load_events_file(clickhouse_resource, path, now=NOW)

    csv_path = tmp_path / "events.csv"
    csv_path.write_bytes(b"event,timestamp,user_id,session_id\ne,2024-05-01T00:00:00Z,u\xe9,s\n")
    with pytest.raises(EventFileError, match=r"line 2: field 'encoding': not valid UTF-8"):
        load_events_file(clickhouse_resource, csv_path, team_id=1, now=NOW)
    assert count_events(clickhouse_resource) == 0


BAD_CSV: list[tuple[str, list[str], str, str]] = [
    ("unparseable timestamp", ["$pageview", "yesterday", "u", "s", ""], "timestamp", "not an ISO 8601 time: 'yesterday'"),
    ("empty event", ["", "2024-05-01T00:00:00Z", "u", "s", ""], "event", "missing"),
    ("missing user_id", ["$pageview", "2024-05-01T00:00:00Z", "", "s", ""], "user_id", "missing"),
    ("text cost", ["$ai_generation", "2024-05-01T00:00:00Z", "u", "s", "abc"], "$ai_total_cost_usd", "'abc'"),
    ("NaN cost", ["$ai_generation", "2024-05-01T00:00:00Z", "u", "s", "NaN"], "$ai_total_cost_usd", "'NaN'"),
    ("too few cells", ["$pageview", "2024-05-01T00:00:00Z", "u"], "csv", "3 cells, the header has 5"),
    ("session id too long", ["$pageview", "2024-05-01T00:00:00Z", "u", LONG_SESSION, ""], "session_id", "longer than 128"),
]  # fmt: skip


@pytest.mark.parametrize("bad_row, field, message", [case[1:] for case in BAD_CSV], ids=[c[0] for c in BAD_CSV])
def test_bad_csv_row_counts_the_header_as_line_1(
    clickhouse_resource: ClickHouseResource, tmp_path: Path, bad_row: list[str], field: str, message: str
) -> None:
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(["event", "timestamp", "user_id", "session_id", "$ai_total_cost_usd"])
    out.writerow(["$pageview", "2024-05-01T00:00:00Z", "u", "s", ""])
    out.writerow(["$pageview", "2024-05-01T00:00:01Z", "u", "s", ""])
    out.writerow(bad_row)
    path = tmp_path / "events.csv"
    path.write_text(buffer.getvalue())

    with pytest.raises(EventFileError) as caught:
        load_events_file(clickhouse_resource, path, team_id=1, now=NOW)

    assert f"line 4: field '{field}': " in str(caught.value)
    assert message in str(caught.value)
    assert count_events(clickhouse_resource) == 0


def test_csv_header_without_required_columns(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("event,time,distinct_id\n$pageview,2024-05-01T00:00:00Z,u\n")
    with pytest.raises(EventFileError) as caught:
        load_events_file(clickhouse_resource, path, team_id=1, now=NOW)
    assert str(caught.value).startswith(f"{path}: bad CSV header, nothing loaded:\n  line 1: field ")
    assert {(p.line, p.field) for p in caught.value.problems} == {(1, "timestamp"), (1, "session_id")}


def test_many_bad_rows_keep_the_first_50_and_count_the_rest(
    clickhouse_resource: ClickHouseResource, tmp_path: Path
) -> None:
    records = [good_record(n, timestamp="yesterday" if n % 2 else good_record(n)["timestamp"]) for n in range(140)]
    path = write_jsonl(tmp_path / "events.jsonl", records)

    with pytest.raises(EventFileError) as caught:
        load_events_file(clickhouse_resource, path, now=NOW)

    error = caught.value
    assert error.bad_rows == 70
    assert len(error.problems) == 50
    assert error.problems[0] == RowProblem(2, "timestamp", "not an ISO 8601 time: 'yesterday'")
    assert str(error.problems[0]) == "line 2: field 'timestamp': not an ISO 8601 time: 'yesterday'"
    assert str(error).startswith(f"{path}: 70 bad rows, nothing loaded:\n  line 2: field 'timestamp'")
    assert str(error).endswith("\n  ... and 20 more problems")
    assert count_events(clickhouse_resource) == 0


def test_team_id_option_applies_only_to_rows_without_a_team(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    """Issue #14: --team-id ("Team of rows that carry none") used to overwrite every row's team_id."""
    jsonl = write_jsonl(
        tmp_path / "mixed.jsonl",
        [good_record(0, team_id=7), {k: v for k, v in good_record(1).items() if k != "team_id"}, good_record(2, team_id="8")],
    )
    csv_path = tmp_path / "mixed.csv"
    csv_path.write_text(
        "event,timestamp,distinct_id,session_id,team_id\n"
        "e,2024-05-10T09:00:00Z,csv,s-7,7\n"
        "e,2024-05-10T09:01:00Z,csv,s-none,\n"
    )
    assert load_events_file(clickhouse_resource, jsonl, team_id=3, now=NOW).rows == 3
    assert load_events_file(clickhouse_resource, csv_path, team_id=3, now=NOW).rows == 2
    teams = sorted((r["distinct_id"], r["$session_id"], r["team_id"]) for r in read_events(clickhouse_resource))
    assert teams == [("csv", "s-7", 7), ("csv", "s-none", 3), ("user-0", "sess-0", 7), ("user-1", "sess-0", 3),
                     ("user-2", "sess-0", 8)]  # fmt: skip

    # A row's own bad team_id is still reported, --team-id or not.
    bad = write_jsonl(tmp_path / "bad.jsonl", [good_record(0, team_id="acme")])
    with pytest.raises(EventFileError, match="line 1: field 'team_id': not a positive integer: 'acme'"):
        load_events_file(clickhouse_resource, bad, team_id=3, now=NOW)


def test_one_line_or_record_size_limit_for_both_formats(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    """Issue #14: a CSV cell over 128 KiB (csv's default limit) was refused though the same data loads
    as JSONL, and a line of any length was read whole (201 MB: 1.65 GB at peak). Both formats now take
    a line or CSV record of up to MAX_LINE_BYTES, and refuse a longer one naming its line, unread."""
    big = "x" * (200 * 1024)
    jsonl = write_jsonl(tmp_path / "big.jsonl", [good_record(0, properties={"$session_id": "j", "blob": big})])
    csv_path = tmp_path / "big.csv"
    csv_path.write_text(f"event,timestamp,distinct_id,session_id,blob\ne,2024-05-10T09:00:00Z,d,c,{big}\n")
    assert load_events_file(clickhouse_resource, jsonl, now=NOW).rows == 1
    assert load_events_file(clickhouse_resource, csv_path, team_id=1, now=NOW).rows == 1
    assert [r["properties"]["blob"] == big for r in read_events(clickhouse_resource)] == [True, True]

    huge = "y" * (4 * MAX_LINE_BYTES)
    too_long = {
        "jsonl": (json.dumps(good_record(1)) + "\n" + json.dumps(good_record(2, properties={"blob": huge})) + "\n", 2),
        "csv": (f"event,timestamp,distinct_id,session_id,blob\ne,2024-05-10T09:00:00Z,d,c,x\ne,2024-05-10T09:00:00Z,d,c,{huge}\n", 3),
        # Each line short, the quoted cell spanning them too long: refused at the record's first line.
        "csv-multiline": ("event,timestamp,distinct_id,session_id,blob\ne,2024-05-10T09:00:00Z,d,c,\""
                          + ("z" * (MAX_LINE_BYTES // 8) + "\n") * 9 + "\"\n", 2),
    }  # fmt: skip
    for name, (text, line) in too_long.items():
        path = tmp_path / f"{name}.{name[:3].replace('jso', 'jsonl')}"
        path.write_text(text)
        del text
        tracemalloc.start()
        try:
            with pytest.raises(EventFileError) as caught:
                load_events_file(clickhouse_resource, path, team_id=1, now=NOW)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert f"line {line}" in str(caught.value) and f"longer than {MAX_LINE_BYTES:,} bytes" in str(caught.value), name
        assert [(p.line, p.field) for p in caught.value.problems] == [(line, "size")], name
        if name == "csv-multiline":  # csv holds a cell as 4 bytes a character: bounded, if not small
            assert peak < 6 * MAX_LINE_BYTES, (name, peak)
        else:
            assert peak < 2.5 * MAX_LINE_BYTES, (name, peak)  # never the whole 64 MiB line
    assert count_events(clickhouse_resource) == 2


def test_team_id_option_must_be_positive(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [good_record(0)])
    with pytest.raises(EventFileError, match="--team-id must be a positive integer"):
        load_events_file(clickhouse_resource, path, team_id=0, now=NOW)


# ---------------------------------------------------------------------------
# idempotent retries
# ---------------------------------------------------------------------------


def test_loading_the_same_file_twice_adds_nothing(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    # Half the rows have no uuid and no inserted_at: the load time differs between the runs.
    records = [good_record(n) if n % 2 else {k: v for k, v in good_record(n).items() if k != "uuid"} for n in range(25)]
    path = write_jsonl(tmp_path / "events.jsonl", records)

    first = load_events_file(clickhouse_resource, path, batch_size=10, now=NOW)
    second = load_events_file(clickhouse_resource, path, batch_size=10, now=NOW + timedelta(minutes=5))

    assert (first.rows, first.batches, first.skipped_duplicate_batches) == (25, 3, 0)
    assert (second.rows, second.batches, second.skipped_duplicate_batches) == (25, 3, 3)
    rows = read_events(clickhouse_resource)
    assert len(rows) == 25 and len({r["uuid"] for r in rows}) == 25
    assert {r["inserted_at"] for r in rows} == {NOW}

    # Every row carries its team: --team-id changes none of them, so this is a retry too.
    third = load_events_file(clickhouse_resource, path, batch_size=10, team_id=77, now=NOW)
    assert third.skipped_duplicate_batches == 3
    assert count_events(clickhouse_resource) == 25

    # Rows without a team take it from --team-id: another --team-id is another load, not a retry.
    teamless = write_jsonl(tmp_path / "teamless.jsonl", [{k: v for k, v in r.items() if k != "team_id"} for r in records])
    assert load_events_file(clickhouse_resource, teamless, batch_size=10, team_id=77, now=NOW).skipped_duplicate_batches == 0
    assert load_events_file(clickhouse_resource, teamless, batch_size=10, team_id=78, now=NOW).skipped_duplicate_batches == 0
    assert load_events_file(clickhouse_resource, teamless, batch_size=10, team_id=78, now=NOW).skipped_duplicate_batches == 3
    assert count_events(clickhouse_resource) == 75


def test_retry_after_a_crash_loads_exactly_the_file(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    records = [{k: v for k, v in good_record(n).items() if k != "uuid"} for n in range(35)]
    path = write_jsonl(tmp_path / "events.jsonl", records)
    seen: list[int] = []

    def crash_after_first_batch(rows_so_far: int, total: int) -> None:
        seen.append(rows_so_far)
        if rows_so_far:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        load_events_file(clickhouse_resource, path, batch_size=10, now=NOW, progress=crash_after_first_batch)
    assert seen == [0, 10]
    assert count_events(clickhouse_resource) == 10

    progress: list[tuple[int, int]] = []
    report = load_events_file(
        clickhouse_resource, path, batch_size=10, now=NOW + timedelta(hours=1), progress=lambda *p: progress.append(p)
    )

    assert progress == [(0, 35), (10, 35), (20, 35), (30, 35), (35, 35)]  # the total known before the first insert
    assert (report.rows, report.batches, report.skipped_duplicate_batches) == (35, 4, 1)
    rows = read_events(clickhouse_resource)
    assert len(rows) == 35
    assert len({r["uuid"] for r in rows}) == 35
    assert sorted(r["timestamp"] for r in rows) == sorted(datetime.fromisoformat(r["timestamp"]) for r in records)


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------


def test_memory_stays_flat_while_loading_a_large_file(clickhouse_resource: ClickHouseResource, tmp_path: Path) -> None:
    lines = 10_000
    path = tmp_path / "large.jsonl"
    padding = "x" * 4_000  # long lines: many bytes per row keeps the (traced, slow) run short
    with path.open("w", encoding="utf-8") as handle:
        for n in range(lines):
            handle.write(
                f'{{"event":"$pageview","distinct_id":"user-{n % 997}","timestamp":"2024-05-{1 + n % 28:02d}T10:00:00Z",'
                f'"team_id":{1 + n % 3},"properties":{{"$session_id":"sess-{n // 20}","blob":"{padding}{n}"}}}}\n'
            )
    size = os.path.getsize(path)
    clickhouse_resource.client()  # schema creation is not part of the load's footprint

    tracemalloc.start()
    try:
        started = time.monotonic()
        report = load_events_file(clickhouse_resource, path, batch_size=500, now=NOW)
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    print(f"\nloaded {size / 1e6:.1f} MB ({lines} lines) in {seconds:.1f}s with tracemalloc; peak {peak / 1e6:.1f} MB")
    assert report.rows == lines
    assert count_events(clickhouse_resource) == lines
    assert peak < size / 4
