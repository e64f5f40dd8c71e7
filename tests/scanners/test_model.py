"""Scanner definitions: every valid field, every class of invalid input, YAML files, records."""

from __future__ import annotations

import copy
import json
import textwrap
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from session_assets.scanners import COUNTER_COLUMNS, Scanner, ScannerError, ScannerFilter, load_scanners, parse_scanner
from session_assets.scanners.errors import show_value

UTC = timezone.utc

FULL_YAML = """\
id: checkout-errors
team_id: 1
name: Checkout sessions with errors
enabled: false
kind: threshold
filter:
  min_duration_seconds: 30
  max_duration_seconds: 3600.5
  counters:
    exception_count: {gte: 1}
    cost_usd: {gt: 0, lte: 2.5}
    rageclick_count: {gt: 0.5, lt: 10, eq: 3}
  events:
    - event: $pageview
      properties:
        - {key: $current_url, op: icontains, value: /checkout}
        - {key: $browser, op: exact, value: Chrome}
        - {key: $screen_width, op: exact, value: 1280}
        - {key: ratio, op: exact, value: 1.5}
        - {key: $is_mobile, op: exact, value: false}
        - {key: $pathname, op: regex, value: "^/cart/[0-9]+$"}
        - {key: $referrer, op: is_set}
        - {key: utm_source, op: is_not_set}
    - event: $exception
  distinct_ids: [user-1, user-2]
rule: {score: "exception_count * 2 + rageclick_count", flag_at: 3}
sample_rate: 0.25
start_at: 2026-11-23T10:00:00Z
"""

BASE: dict[str, Any] = {"id": "checkout-errors", "team_id": 1, "name": "Checkout", "kind": "match"}


def variant(path: str, value: Any) -> dict[str, Any]:
    """BASE with `value` set at a dotted path ("filter.events.0.properties"); lists by index."""
    data = copy.deepcopy(BASE)
    parts = path.split(".")
    target: Any = data
    for part in parts[:-1]:
        key: Any = int(part) if part.isdigit() else part
        if isinstance(target, dict) and key not in target:
            target[key] = {}
        target = target[key]
    last = parts[-1]
    target[int(last) if last.isdigit() else last] = value
    return data


def error_message(mapping: Any) -> str:
    with pytest.raises(ScannerError) as raised:
        parse_scanner(mapping)
    return str(raised.value)


def with_event(**prop: Any) -> dict[str, Any]:
    return variant("filter", {"events": [{"event": "$pageview", "properties": [prop]}]})


# --- valid input -----------------------------------------------------------


def test_every_valid_field():
    (scanner,) = load_scanners(FULL_YAML)
    assert (scanner.id, scanner.team_id, scanner.name, scanner.enabled, scanner.kind) == (
        "checkout-errors",
        1,
        "Checkout sessions with errors",
        False,
        "threshold",
    )
    f = scanner.filter
    assert (f.min_duration_seconds, f.max_duration_seconds) == (30, 3600.5)
    assert f.counters["exception_count"].comparisons() == [("gte", 1)]
    assert f.counters["cost_usd"].comparisons() == [("gt", 0), ("lte", 2.5)]
    assert f.counters["rageclick_count"].comparisons() == [("gt", 0.5), ("lt", 10), ("eq", 3)]
    props = f.events[0].properties
    assert [(p.key, p.op, p.value) for p in props] == [
        ("$current_url", "icontains", "/checkout"),
        ("$browser", "exact", "Chrome"),
        ("$screen_width", "exact", 1280),
        ("ratio", "exact", 1.5),
        ("$is_mobile", "exact", False),
        ("$pathname", "regex", "^/cart/[0-9]+$"),
        ("$referrer", "is_set", None),
        ("utm_source", "is_not_set", None),
    ]
    assert type(props[2].value) is int and type(props[4].value) is bool
    assert f.events[1].event == "$exception" and f.events[1].properties == ()
    assert f.distinct_ids == ("user-1", "user-2")
    assert scanner.rule == {"score": "exception_count * 2 + rageclick_count", "flag_at": 3}
    assert (scanner.parsed_rule.score, scanner.parsed_rule.flag_at) == (scanner.rule["score"], 3)
    assert scanner.sample_rate == 0.25 and scanner.sample_threshold == 2500
    assert scanner.start_at == datetime(2026, 11, 23, 10, tzinfo=UTC)


def test_defaults():
    scanner = parse_scanner(BASE)
    assert scanner.enabled is True
    assert scanner.filter == ScannerFilter()
    assert scanner.rule == {} and scanner.sample_rate == 1.0 and scanner.start_at is None


def test_every_counter_is_accepted():
    scanner = parse_scanner(variant("filter.counters", {name: {"gte": 0} for name in COUNTER_COLUMNS}))
    assert list(scanner.filter.counters) == list(COUNTER_COLUMNS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 10, tzinfo=UTC)),  # naive means UTC
        (datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01 10:00:00", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        (date(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_start_at_is_utc(value, expected):
    start_at = parse_scanner(variant("start_at", value)).start_at
    assert start_at == expected and start_at.utcoffset() == timedelta(0)


def test_scanners_are_frozen():
    scanner = parse_scanner(BASE)
    with pytest.raises(ValidationError):
        scanner.name = "renamed"  # type: ignore[misc]


# --- invalid input: each class names the path and the value ----------------

INVALID = [
    # unknown keys, at every level
    pytest.param(variant("colour", "red"), "colour: unknown key (allowed: enabled, filter, id", id="unknown-top"),
    pytest.param(variant("filter.colour", 1), "filter.colour: unknown key (allowed: counters,", id="unknown-filter"),
    pytest.param(
        variant("filter.counters", {"exception_count": {"ge": 1}}),
        "filter.counters.exception_count.ge: unknown key (allowed: eq, gt, gte, lt, lte)",
        id="unknown-counter-op",
    ),
    pytest.param(
        with_event(key="k", op="is_set", colour=1),
        "filter.events[0].properties[0].colour: unknown key (allowed: key, op, value)",
        id="unknown-property-key",
    ),
    pytest.param(
        variant("filter", {"events": [{"event": "$pageview", "where": 1}]}),
        "filter.events[0].where: unknown key (allowed: event, properties)",
        id="unknown-event-key",
    ),
    # unknown operators, counters, kinds
    pytest.param(
        with_event(key="k", op="contains", value="x"),
        "filter.events[0].properties[0].op: Input should be 'exact', 'icontains', 'regex', 'is_set' or "
        "'is_not_set', got 'contains'",
        id="unknown-op",
    ),
    pytest.param(
        variant("filter.counters", {"crash_count": {"gte": 1}}),
        "filter.counters.crash_count: unknown counter (expected one of: event_count,",
        id="unknown-counter",
    ),
    pytest.param(variant("kind", "nope"), "kind: unknown kind (known kinds: ai_cost, match, threshold), got 'nope'",
                 id="unknown-kind"),
    # ids
    pytest.param(variant("id", "Bad_ID"), "id: must be 1 to 64 of a-z, 0-9 and '-', got 'Bad_ID'", id="id-case"),
    pytest.param(variant("id", "a" * 65), f"got '{'a' * 65}'", id="id-65"),
    pytest.param(variant("id", "a|b"), "id: must be 1 to 64 of a-z, 0-9 and '-', got 'a|b'", id="id-pipe"),
    pytest.param(variant("id", "a,b"), "id: must be 1 to 64 of a-z, 0-9 and '-', got 'a,b'", id="id-comma"),
    pytest.param(variant("id", "ab\n"), "id: must be 1 to 64 of a-z, 0-9 and '-', got 'ab\\n'", id="id-newline"),
    pytest.param(variant("id", ""), "id: must be 1 to 64", id="id-empty"),
    pytest.param(variant("id", 7), "id: Input should be a valid string, got 7", id="id-int"),
    # sample rate
    pytest.param(variant("sample_rate", -0.1), "sample_rate: Input should be greater than or equal to 0, got -0.1",
                 id="rate-negative"),
    pytest.param(variant("sample_rate", 1.5), "sample_rate: Input should be less than or equal to 1, got 1.5",
                 id="rate-over-one"),
    # strings where numbers are expected
    pytest.param(variant("team_id", "1"), "team_id: Input should be a valid integer, got '1'", id="team-str"),
    pytest.param(
        variant("filter.counters", {"exception_count": {"gte": "lots"}}),
        "filter.counters.exception_count.gte: Input should be a valid number, got 'lots'",
        id="counter-str",
    ),
    pytest.param(variant("filter.min_duration_seconds", "30"),
                 "filter.min_duration_seconds: Input should be a valid number, got '30'", id="duration-str"),
    pytest.param(variant("sample_rate", "0.5"), "sample_rate: Input should be a valid number, got '0.5'",
                 id="rate-str"),
    # bools where numbers are expected (YAML yes/true)
    pytest.param(variant("team_id", True), "team_id: Input should be a valid integer, got True", id="team-bool"),
    pytest.param(
        variant("filter.counters", {"exception_count": {"gte": True}}),
        "filter.counters.exception_count.gte: Input should be a valid number, got True",
        id="counter-bool",
    ),
    pytest.param(variant("sample_rate", True), "sample_rate: Input should be a valid number, got True",
                 id="rate-bool"),
    pytest.param(variant("filter.max_duration_seconds", False),
                 "filter.max_duration_seconds: Input should be a valid number, got False", id="duration-bool"),
    # other wrong types and ranges
    pytest.param(variant("enabled", "yes"), "enabled: Input should be a valid boolean, got 'yes'", id="enabled-str"),
    pytest.param(variant("team_id", 0), "team_id: Input should be greater than 0, got 0", id="team-zero"),
    pytest.param(variant("name", ""), "name: String should have at least 1 character, got ''", id="name-empty"),
    pytest.param(variant("name", "n" * 201), "name: String should have at most 200 characters", id="name-long"),
    pytest.param(
        variant("filter.counters", {"exception_count": {"gte": -1}}),
        "filter.counters.exception_count.gte: Input should be greater than or equal to 0, got -1",
        id="counter-negative",
    ),
    pytest.param(
        variant("filter.counters", {"exception_count": {"gte": float("nan")}}),
        "filter.counters.exception_count.gte: Input should be a finite number, got nan",
        id="counter-nan",
    ),
    pytest.param(
        variant("filter.counters", {"exception_count": {}}),
        "filter.counters.exception_count: give at least one of gte, gt, lte, lt, eq",
        id="counter-no-op",
    ),
    pytest.param(
        variant("filter.counters", {"cost_usd": {"lt": 1e30}}),
        "filter.counters.cost_usd.lt: cost_usd thresholds must be below 1e26, got 1e+30",
        id="cost-too-large",
    ),
    pytest.param(
        variant("filter", {"min_duration_seconds": 60, "max_duration_seconds": 30}),
        "filter.max_duration_seconds: must be >= min_duration_seconds (60), got 30",
        id="duration-range",
    ),
    pytest.param(variant("filter.distinct_ids", []), "filter.distinct_ids: Tuple should have at least 1 item",
                 id="distinct-empty"),
    pytest.param(variant("filter.distinct_ids", ["ok", ""]),
                 "filter.distinct_ids[1]: String should have at least 1 character, got ''", id="distinct-blank"),
    pytest.param(variant("filter.distinct_ids", [f"u{i}" for i in range(1001)]),
                 "filter.distinct_ids: Tuple should have at most 1000 items", id="distinct-many"),
    pytest.param(variant("filter", {"events": [{"event": ""}]}),
                 "filter.events[0].event: String should have at least 1 character, got ''", id="event-empty"),
    pytest.param(variant("filter", {"events": [{"properties": []}]}),
                 "filter.events[0].event: required field is missing", id="event-missing"),
    pytest.param(with_event(key="", op="is_set"),
                 "filter.events[0].properties[0].key: String should have at least 1 character, got ''",
                 id="property-key-empty"),
    pytest.param(variant("filter", [1, 2]), "filter: Input should be a valid dictionary or instance of "
                 "ScannerFilter, got [1, 2]", id="filter-list"),
    pytest.param(variant("start_at", 1700000000), "start_at: Input should be an ISO 8601 timestamp, got 1700000000",
                 id="start-epoch"),
    pytest.param(variant("start_at", "next tuesday"), "start_at: Input should be an ISO 8601 timestamp, "
                 "got 'next tuesday'", id="start-text"),
    pytest.param({k: v for k, v in BASE.items() if k != "kind"}, "kind: required field is missing",
                 id="kind-missing"),
    # property values against their op
    pytest.param(with_event(key="k", op="icontains"),
                 "filter.events[0].properties[0].value: a value is required for op 'icontains'",
                 id="icontains-no-value"),
    pytest.param(with_event(key="k", op="exact"),
                 "filter.events[0].properties[0].value: a value is required for op 'exact'", id="exact-no-value"),
    pytest.param(with_event(key="k", op="is_set", value="x"),
                 "filter.events[0].properties[0].value: no value is allowed for op 'is_set', got 'x'",
                 id="is-set-value"),
    pytest.param(with_event(key="k", op="is_not_set", value=0),
                 "filter.events[0].properties[0].value: no value is allowed for op 'is_not_set', got 0",
                 id="is-not-set-value"),
    pytest.param(with_event(key="k", op="icontains", value=5),
                 "filter.events[0].properties[0].value: op 'icontains' needs a string value, got 5",
                 id="icontains-number"),
    pytest.param(with_event(key="k", op="icontains", value=""),
                 "filter.events[0].properties[0].value: an empty value matches everything; use op is_set, got ''",
                 id="icontains-empty"),
    pytest.param(with_event(key="k", op="exact", value=[1]),
                 "filter.events[0].properties[0].value: exact needs a string, number or boolean, got [1]",
                 id="exact-list"),
    pytest.param(with_event(key="k", op="regex", value="(unclosed"),
                 "filter.events[0].properties[0].value: ClickHouse regexes (RE2) refuse it: missing ): (unclosed, "
                 "got '(unclosed'", id="regex-invalid"),
    pytest.param(with_event(key="k", op="regex", value="a" * 1001),
                 "filter.events[0].properties[0].value: a regex has at most 1000 characters, got 'aaaa",
                 id="regex-long"),
    pytest.param(with_event(key="k", op="regex", value="foo(?!bar)"),
                 "filter.events[0].properties[0].value: ClickHouse regexes (RE2) refuse it: invalid perl "
                 "operator: (?!, got 'foo(?!bar)'", id="regex-re2-lookahead"),
    pytest.param(with_event(key="k", op="regex", value=r"(a)\1"),
                 "filter.events[0].properties[0].value: ClickHouse regexes (RE2) refuse it: invalid escape "
                 "sequence: \\1, got '(a)\\\\1'", id="regex-re2-backreference"),
    pytest.param(with_event(key="k", op="regex", value="(\n"),
                 "filter.events[0].properties[0].value: ClickHouse regexes (RE2) refuse it: missing ): (\\n, "
                 "got '(\\n'", id="regex-re2-line-break"),
    # rules, per kind (more in test_kinds.py)
    pytest.param(variant("rule", {"x": 1}), "rule.x: unknown key", id="rule-match"),
    pytest.param({**variant("kind", "threshold"), "rule": {"score": "crashes * 2", "flag_at": 1}},
                 "rule.score: unknown name 'crashes'", id="rule-threshold-name"),
    pytest.param({**variant("kind", "threshold"), "rule": {"score": "exception_count", "flag_at": "3"}},
                 "rule.flag_at: Input should be a valid number, got '3'", id="rule-threshold-flag"),
    pytest.param({**variant("kind", "ai_cost"), "rule": {"max_cost_usd": "1"}},
                 "rule.max_cost_usd: Input should be a valid number, got '1'", id="rule-ai-cost-type"),
    pytest.param({**variant("kind", "ai_cost"), "rule": {}},
                 "rule: set max_cost_usd, max_total_tokens or both", id="rule-ai-cost-empty"),
    pytest.param(variant("rule", "score > 3"), "rule: Input should be a valid dictionary, got 'score > 3'",
                 id="rule-not-mapping"),
]


@pytest.mark.parametrize(("mapping", "expected"), INVALID)
def test_invalid_input_names_the_path_and_value(mapping, expected):
    message = error_message(mapping)
    assert expected in message
    # The source and the scanner id lead the message; a malformed id is quoted.
    ident = mapping.get("id")
    if not isinstance(ident, str) or not ident:
        assert message.startswith("scanner: ")
    elif ident == "checkout-errors":
        assert message.startswith("scanner (checkout-errors): ")
    else:
        assert message.startswith(f"scanner ({ident!r}): ")
    assert "\n" not in message


def test_a_regex_escaped_backslash_followed_by_a_digit_is_fine():
    assert parse_scanner(with_event(key="k", op="regex", value=r"a\\1"))


def test_not_a_mapping():
    assert error_message(["id", "x"]) == "scanner: expected a mapping of scanner fields, got ['id', 'x']"


def test_long_values_are_cut_in_messages():
    assert len(show_value("x" * 5000)) <= 120


def test_several_problems_are_listed_one_per_line():
    mapping = {**BASE, "team_id": "one", "sample_rate": 2, "colour": "red"}
    lines = error_message(mapping).splitlines()
    assert lines == [
        "scanner (checkout-errors): 3 problems",
        "  team_id: Input should be a valid integer, got 'one'",
        "  sample_rate: Input should be less than or equal to 1, got 2",
        "  colour: unknown key (allowed: enabled, filter, id, kind, name, rule, sample_rate, start_at, team_id)",
    ]


def test_error_keeps_problems_structured():
    with pytest.raises(ScannerError) as raised:
        parse_scanner(variant("filter.counters", {"exception_count": {"gte": "lots"}}), source="api")
    (problem,) = raised.value.problems
    assert (problem.path, problem.value, problem.source) == ("filter.counters.exception_count.gte", "lots",
                                                             "api (checkout-errors)")
    assert isinstance(raised.value, ValueError)


# --- sampling --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "threshold"),
    [(0, 0), (0.00004, 0), (0.00005, 1), (0.29, 2900), (0.5, 5000), (0.12345, 1235), (0.99995, 10000), (1, 10000)],
)
def test_sample_threshold_rounds_half_up(rate, threshold):
    assert parse_scanner(variant("sample_rate", rate)).sample_threshold == threshold


# --- YAML files ------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_list_file(tmp_path):
    path = write(
        tmp_path,
        "scanners.yaml",
        """\
        - {id: one, team_id: 1, name: One, kind: match}
        - id: two
          team_id: 2
          name: Two
          kind: ai_cost
          rule: {max_total_tokens: 1000}
        """,
    )
    for source in (path, str(path)):
        assert [s.id for s in load_scanners(source)] == ["one", "two"]


def test_a_single_mapping_file_and_an_empty_file(tmp_path):
    path = write(tmp_path, "one.yml", FULL_YAML)
    assert [s.id for s in load_scanners(path)] == ["checkout-errors"]
    assert load_scanners(write(tmp_path, "empty.yaml", "")) == []


def test_the_brief_message_shape(tmp_path):
    path = write(
        tmp_path,
        "scanners.yaml",
        """\
        - {id: a, team_id: 1, name: A, kind: match}
        - {id: b, team_id: 1, name: B, kind: match}
        - id: checkout-errors
          team_id: 1
          name: Checkout
          kind: match
          filter: {counters: {exception_count: {gte: lots}}}
        """,
    )
    with pytest.raises(ScannerError) as raised:
        load_scanners(path)
    assert str(raised.value) == (
        "scanners.yaml: scanner[2] (checkout-errors): filter.counters.exception_count.gte: "
        "Input should be a valid number, got 'lots'"
    )


def test_problems_in_several_scanners_are_all_reported(tmp_path):
    path = write(
        tmp_path,
        "scanners.yaml",
        """\
        - {id: a, team_id: 1, name: A, kind: nope}
        - {id: b, team_id: 1, name: B, kind: match}
        - {id: C, team_id: 1, name: C, kind: match}
        """,
    )
    with pytest.raises(ScannerError) as raised:
        load_scanners(path)
    assert str(raised.value).splitlines() == [
        "scanners.yaml: 2 problems in 2 scanners",
        "  scanner[0] (a): kind: unknown kind (known kinds: ai_cost, match, threshold), got 'nope'",
        "  scanner[2] ('C'): id: must be 1 to 64 of a-z, 0-9 and '-', got 'C'",
    ]


def test_duplicate_ids_in_one_file(tmp_path):
    path = write(
        tmp_path,
        "scanners.yaml",
        """\
        - {id: same, team_id: 1, name: A, kind: match}
        - {id: other, team_id: 1, name: B, kind: match}
        - {id: same, team_id: 2, name: C, kind: match}
        """,
    )
    with pytest.raises(ScannerError) as raised:
        load_scanners(path)
    assert str(raised.value) == (
        "scanners.yaml: scanner[2] (same): id: duplicate scanner id (first defined at scanner[0] (same)), got 'same'"
    )


def test_a_folder_of_files_rejects_ids_defined_twice(tmp_path):
    write(tmp_path, "a.yaml", "{id: one, team_id: 1, name: A, kind: match}\n")
    write(tmp_path, "b.yml", "- {id: two, team_id: 1, name: B, kind: match}\n")
    write(tmp_path, "notes.txt", "not yaml: [")
    assert [s.id for s in load_scanners(tmp_path)] == ["one", "two"]
    write(tmp_path, "c.yaml", "{id: one, team_id: 1, name: C, kind: match}\n")
    with pytest.raises(ScannerError, match=r"c\.yaml: scanner \(one\): id: duplicate scanner id \(first defined at "
                       r"a\.yaml: scanner \(one\)\)"):
        load_scanners(tmp_path)


def test_yaml_syntax_errors_give_line_and_column(tmp_path):
    path = write(tmp_path, "broken.yaml", "id: x\nteam_id: 1\nname: [unclosed\nkind: match\n")
    with pytest.raises(ScannerError) as raised:
        load_scanners(path)
    message = str(raised.value)
    assert message.startswith("broken.yaml: invalid YAML at line ")
    assert "line 4" in message or "line 3" in message
    with pytest.raises(ScannerError, match=r"^invalid YAML at line 2, column 8: mapping values are not allowed here"):
        load_scanners("id: x\nname: a: b\n")


def test_yaml_duplicate_keys_are_refused():
    with pytest.raises(ScannerError, match=r"invalid YAML at line 3, column 1: duplicate key 'filter'"):
        load_scanners("id: x\nfilter: {}\nfilter: {counters: {}}\n")


def test_yaml_object_tags_are_refused():
    with pytest.raises(ScannerError, match="invalid YAML at line 1"):
        load_scanners("!!python/object/apply:os.system ['true']\n")


def test_yaml_that_is_not_scanners():
    with pytest.raises(ScannerError, match=r"expected a scanner mapping or a list of them, got 'hello'"):
        load_scanners("hello\n")
    with pytest.raises(ScannerError, match=r"^scanner\[1\]: expected a mapping of scanner fields, got 5"):
        load_scanners("- {id: a, team_id: 1, name: A, kind: match}\n- 5\n")


def test_a_missing_file(tmp_path):
    with pytest.raises(ScannerError, match="cannot read scanner file"):
        load_scanners(tmp_path / "missing.yaml")
    with pytest.raises(ScannerError, match="cannot read scanner file"):
        load_scanners("missing.yaml")


# --- Postgres records ------------------------------------------------------


def test_record_round_trip():
    (scanner,) = load_scanners(FULL_YAML)
    record = scanner.to_record()
    assert set(record) == {"id", "team_id", "name", "enabled", "kind", "filter", "rule", "sample_rate", "start_at"}
    assert isinstance(record["start_at"], datetime)
    # Everything but start_at is plain JSON, as a jsonb column stores it.
    stored = json.loads(json.dumps({k: v for k, v in record.items() if k != "start_at"}))
    assert stored["filter"]["counters"]["exception_count"] == {"gte": 1}
    assert stored["filter"]["events"][0]["properties"][6] == {"key": "$referrer", "op": "is_set"}
    row = {**stored, "start_at": record["start_at"], "created_at": datetime.now(UTC), "updated_at": datetime.now(UTC)}
    assert Scanner.from_record(row) == scanner
    # jsonb read back as text also works
    assert Scanner.from_record({**row, "filter": json.dumps(stored["filter"]), "rule": json.dumps(stored["rule"])}) \
        == scanner
    assert Scanner.from_record(parse_scanner(BASE).to_record()) == parse_scanner(BASE)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"filter": {"counters": {"crash_count": {"gte": 1}}}}, "filter.counters.crash_count: unknown counter"),
        ({"rule": {"score": 1}}, "rule.score: unknown key"),
        ({"kind": "retired_kind"}, "kind: unknown kind"),
        ({"filter": "{not json"}, "filter: stored JSON does not parse"),
    ],
)
def test_a_corrupted_stored_row_names_the_scanner(change, expected):
    row = {**parse_scanner(BASE).to_record(), **change}
    with pytest.raises(ScannerError) as raised:
        Scanner.from_record(row)
    message = str(raised.value)
    assert message.startswith("stored scanner (checkout-errors): ")
    assert expected in message
