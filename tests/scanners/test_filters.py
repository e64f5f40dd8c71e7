"""Compiled filters run on real chDB: which sessions each feature selects, injection, team isolation."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

import pytest

from session_assets.resources import ClickHouseResource
from session_assets.scanners import COUNTER_COLUMNS, CompiledFilter, ScannerError, ScannerFilter, compile_filter
from session_assets.scanners.model import EventFilter, PropertyFilter
from session_assets.scanners.re2 import check_re2
from tests.support import at, event, insert_rows

WINDOW_START = at("2026-03-01T00:00:00")
WINDOW_END = at("2026-03-02T00:00:00")
T = at("2026-03-01T12:00:00")

SESSIONS_DDL = """
CREATE TABLE sessions_t
(
    team_id Int64, session_id String, distinct_id String, duration_s Int64,
    event_count UInt64, pageview_count UInt64, autocapture_count UInt64, rageclick_count UInt64,
    exception_count UInt64, ai_generation_count UInt64, input_tokens UInt64, output_tokens UInt64,
    cost_usd Decimal(38, 12), entry_url String
)
ENGINE = Memory
"""
SESSION_COLUMNS = ["team_id", "session_id", "distinct_id", "duration_s", *COUNTER_COLUMNS[:-1], "entry_url"]

NASTY = [
    "x' OR 1=1 --",
    "'); DROP TABLE events; --",
    "{f_0:String}",
    "{f_1:String}",
    "\\' OR '1'='1",
    "back\\slash \\\\ \\n \\t",
    'double "quote" and `backtick`',
    "unicode é ß 漢字 🙂",
    "tab\tnew\nline",
    "%(x)s %s ?",
    "`x` OR `1`",
    "1) OR (1=1",
]


def session(session_id: str, *, team_id: int = 1, distinct_id: str = "user-1", **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {name: 0 for name in COUNTER_COLUMNS}
    row["cost_usd"] = Decimal(0)
    row.update(team_id=team_id, session_id=session_id, distinct_id=distinct_id, entry_url="", **values)
    return row


def seed(resource: ClickHouseResource, sessions: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]] = ()):
    client = resource.client()
    client.command(SESSIONS_DDL)
    rows = [[row[name] for name in SESSION_COLUMNS] for row in sessions]
    if rows:
        client.insert("sessions_t", rows, column_names=SESSION_COLUMNS)
    events = list(events)
    if events:
        insert_rows(resource, events)


def matching(
    resource: ClickHouseResource, compiled: CompiledFilter, *, team_id: int = 1, as_of: datetime | None = None
) -> list[tuple[int, str]]:
    """(team_id, session_id) of the sessions_t rows the filter selects, sorted."""
    sql = f"SELECT team_id, session_id FROM sessions_t WHERE {compiled.sql} ORDER BY team_id, session_id"
    params = {
        **compiled.params,
        **resource.table_params(),
        "team_id": team_id,
        "window_start": WINDOW_START,
        "window_end": WINDOW_END,
        "seen_until": as_of or datetime(2100, 1, 1, tzinfo=timezone.utc),
    }
    return [tuple(row) for row in resource.client().query(sql, parameters=params).result_rows]


def ids(resource: ClickHouseResource, filter_spec: Mapping[str, Any], **kwargs: Any) -> list[str]:
    return [sid for _, sid in matching(resource, compile_filter(filter_spec), **kwargs)]


# --- shape -----------------------------------------------------------------


def test_an_empty_filter_is_true(clickhouse_resource):
    compiled = compile_filter(ScannerFilter())
    assert compiled == CompiledFilter("1", {})
    seed(clickhouse_resource, [session("a"), session("b")])
    assert ids(clickhouse_resource, {}) == ["a", "b"]


def test_parameters_are_named_by_prefix_and_only_those_introduced():
    compiled = compile_filter({"min_duration_seconds": 1, "events": [{"event": "e"}]}, prefix="s3")
    assert compiled.params == {"s3_0": 1.0, "s3_1": "e"}
    assert "{s3_0:Float64}" in compiled.sql and "{s3_1:String}" in compiled.sql
    for bad in ("", "1f", "f-1", "f}", "f:String"):
        with pytest.raises(ValueError, match="prefix"):
            compile_filter({}, prefix=bad)


def test_a_mapping_is_validated_first():
    with pytest.raises(ScannerError, match=r"filter\.counters\.crashes: unknown counter"):
        compile_filter({"counters": {"crashes": {"gt": 1}}})


def test_two_filters_share_one_query_with_different_prefixes(clickhouse_resource):
    seed(clickhouse_resource, [session("a", exception_count=1), session("b", exception_count=1, pageview_count=9)])
    first = compile_filter({"counters": {"exception_count": {"gte": 1}}}, prefix="a")
    second = compile_filter({"counters": {"pageview_count": {"lt": 5}}}, prefix="b")
    both = CompiledFilter(f"{first.sql} AND {second.sql}", {**first.params, **second.params})
    assert [sid for _, sid in matching(clickhouse_resource, both)] == ["a"]


# --- durations and counters ------------------------------------------------


def test_durations(clickhouse_resource):
    seed(clickhouse_resource, [session(s, duration_s=d) for s, d in [("d0", 0), ("d29", 29), ("d30", 30), ("d90", 90)]])
    assert ids(clickhouse_resource, {"min_duration_seconds": 30}) == ["d30", "d90"]
    assert ids(clickhouse_resource, {"min_duration_seconds": 29.5}) == ["d30", "d90"]
    assert ids(clickhouse_resource, {"max_duration_seconds": 29}) == ["d0", "d29"]
    assert ids(clickhouse_resource, {"min_duration_seconds": 29, "max_duration_seconds": 30}) == ["d29", "d30"]


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ({"gte": 2}, ["c2", "c3"]),
        ({"gt": 2}, ["c3"]),
        ({"lte": 1}, ["c0", "c1"]),
        ({"lt": 1}, ["c0"]),
        ({"eq": 2}, ["c2"]),
        ({"gte": 1.5}, ["c2", "c3"]),  # a float threshold on an integer counter
        ({"eq": 1.5}, []),
        ({"gt": 0, "lt": 3}, ["c1", "c2"]),
        ({"gte": 2**63}, []),  # beyond Int64: compared as Float64, no overflow
    ],
)
def test_counter_operators(clickhouse_resource, ops, expected):
    seed(clickhouse_resource, [session(f"c{n}", exception_count=n) for n in range(4)])
    assert ids(clickhouse_resource, {"counters": {"exception_count": ops}}) == expected


def test_every_counter_column_compiles_against_the_sessions_columns(clickhouse_resource):
    seed(clickhouse_resource, [session("zero"), session("ones", duration_s=1, cost_usd=Decimal(1),
                                                        **{n: 1 for n in COUNTER_COLUMNS if n not in ("duration_s", "cost_usd")})])
    for name in COUNTER_COLUMNS:
        assert ids(clickhouse_resource, {"counters": {name: {"gte": 1}}}) == ["ones"], name
        assert ids(clickhouse_resource, {"counters": {name: {"lt": 1}}}) == ["zero"], name


def test_cost_is_compared_as_an_exact_decimal(clickhouse_resource):
    seed(
        clickhouse_resource,
        [
            session("at", cost_usd=Decimal("0.1")),
            session("above", cost_usd=Decimal("0.100000000001")),
            session("below", cost_usd=Decimal("0.099999999999")),
        ],
    )
    compiled = compile_filter({"counters": {"cost_usd": {"lte": 0.1}}})
    assert "{f_0:Decimal(38, 12)}" in compiled.sql and compiled.params == {"f_0": Decimal("0.100000000000")}
    assert ids(clickhouse_resource, {"counters": {"cost_usd": {"lte": 0.1}}}) == ["at", "below"]
    assert ids(clickhouse_resource, {"counters": {"cost_usd": {"gt": 0.1}}}) == ["above"]
    assert ids(clickhouse_resource, {"counters": {"cost_usd": {"eq": 0.1}}}) == ["at"]
    assert ids(clickhouse_resource, {"counters": {"cost_usd": {"gte": 0}}}) == ["above", "at", "below"]
    assert ids(clickhouse_resource, {"counters": {"cost_usd": {"lt": 1e25}}}) == ["above", "at", "below"]


def test_distinct_ids(clickhouse_resource):
    seed(clickhouse_resource, [session("a", distinct_id="user-1"), session("b", distinct_id="user-2"),
                               session("c", distinct_id="user-3")])
    assert ids(clickhouse_resource, {"distinct_ids": ["user-1", "user-3", "nobody"]}) == ["a", "c"]


# --- event presence --------------------------------------------------------


def test_event_presence_and_property_operators(clickhouse_resource):
    sessions = [session(s) for s in ("checkout", "home", "crash", "mobile", "quiet", "late")]
    events = [
        event("$pageview", T, "checkout", properties={"$current_url": "https://shop/CHECKOUT/pay", "n": 3,
                                                      "flag": True, "empty": ""}),
        event("$pageview", T, "home", properties={"$current_url": "https://shop/", "n": 3.5, "flag": False}),
        event("$exception", T, "crash", properties={"$exception_type": "TypeError"}),
        event("$pageview", T, "mobile", properties={"$current_url": "https://shop/chéckout", "$os": "iOS 17"}),
        event("$autocapture", T, "quiet"),
        # Outside the window: never counts.
        event("$pageview", WINDOW_END + timedelta(seconds=1), "late", properties={"$current_url": "/checkout"}),
        event("$pageview", WINDOW_START - timedelta(microseconds=1), "late", properties={"$current_url": "/checkout"}),
    ]
    seed(clickhouse_resource, sessions, events)

    def pageview(*props: dict[str, Any]) -> list[str]:
        return ids(clickhouse_resource, {"events": [{"event": "$pageview", "properties": list(props)}]})

    assert pageview() == ["checkout", "home", "mobile"]
    assert ids(clickhouse_resource, {"events": [{"event": "$exception"}]}) == ["crash"]
    assert ids(clickhouse_resource, {"events": [{"event": "$PAGEVIEW"}]}) == []  # event names are exact
    assert pageview({"key": "$current_url", "op": "icontains", "value": "checkout"}) == ["checkout"]
    assert pageview({"key": "$current_url", "op": "icontains", "value": "CHÉCKOUT"}) == ["mobile"]  # UTF-8 case folding
    assert pageview({"key": "$current_url", "op": "exact", "value": "https://shop/"}) == ["home"]
    assert pageview({"key": "$current_url", "op": "exact", "value": "https://shop"}) == []
    assert pageview({"key": "n", "op": "exact", "value": 3}) == ["checkout"]
    assert pageview({"key": "n", "op": "exact", "value": 3.5}) == ["home"]
    assert pageview({"key": "n", "op": "exact", "value": 0}) == []  # absent keys are not 0
    assert pageview({"key": "flag", "op": "exact", "value": True}) == ["checkout"]
    assert pageview({"key": "flag", "op": "exact", "value": False}) == ["home"]  # absent keys are not false
    assert pageview({"key": "empty", "op": "exact", "value": ""}) == ["checkout"]  # absent keys are not ""
    assert pageview({"key": "$current_url", "op": "regex", "value": r"^https://shop/[A-Z]+/"}) == ["checkout"]
    assert pageview({"key": "$current_url", "op": "regex", "value": r"(?i)/checkout/"}) == ["checkout"]
    assert pageview({"key": "$os", "op": "is_set"}) == ["mobile"]
    assert pageview({"key": "$os", "op": "is_not_set"}) == ["checkout", "home"]
    assert pageview({"key": "$os", "op": "is_set"}, {"key": "$current_url", "op": "icontains", "value": "shop"}) == [
        "mobile"
    ]


def test_properties_must_hold_on_the_same_event_and_entries_are_anded(clickhouse_resource):
    sessions = [session("same"), session("split"), session("both")]
    events = [
        event("$pageview", T, "same", properties={"a": "1", "b": "1"}),
        event("$pageview", T, "split", properties={"a": "1"}),
        event("$pageview", T + timedelta(seconds=1), "split", properties={"b": "1"}),
        event("$pageview", T, "both", properties={"a": "1"}),
        event("$exception", T, "both"),
    ]
    seed(clickhouse_resource, sessions, events)
    a_and_b = [{"key": "a", "op": "exact", "value": "1"}, {"key": "b", "op": "exact", "value": "1"}]
    assert ids(clickhouse_resource, {"events": [{"event": "$pageview", "properties": a_and_b}]}) == ["same"]
    two_entries = {"events": [{"event": "$pageview", "properties": a_and_b[:1]},
                              {"event": "$pageview", "properties": a_and_b[1:]}]}
    assert ids(clickhouse_resource, two_entries) == ["same", "split"]
    assert ids(clickhouse_resource, {"events": [{"event": "$pageview"}, {"event": "$exception"}]}) == ["both"]


def test_all_parts_together(clickhouse_resource):
    sessions = [
        session("hit", duration_s=60, exception_count=2, distinct_id="u1"),
        session("short", duration_s=10, exception_count=2, distinct_id="u1"),
        session("calm", duration_s=60, exception_count=0, distinct_id="u1"),
        session("stranger", duration_s=60, exception_count=2, distinct_id="u9"),
        session("elsewhere", duration_s=60, exception_count=2, distinct_id="u1"),
    ]
    events = [event("$pageview", T, s, properties={"$current_url": "/checkout"}) for s in
              ("hit", "short", "calm", "stranger")]
    events.append(event("$pageview", T, "elsewhere", properties={"$current_url": "/home"}))
    seed(clickhouse_resource, sessions, events)
    spec = {
        "min_duration_seconds": 30,
        "counters": {"exception_count": {"gte": 1}},
        "events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "icontains", "value": "checkout"}]}],
        "distinct_ids": ["u1"],
    }
    assert ids(clickhouse_resource, spec) == ["hit"]


def test_team_isolation_with_identical_session_ids(clickhouse_resource):
    sessions = [session("shared", team_id=1), session("shared", team_id=2), session("mine", team_id=1)]
    events = [
        event("$exception", T, "shared", team_id=2),
        event("$pageview", T, "mine", team_id=1),
    ]
    seed(clickhouse_resource, sessions, events)
    crash = compile_filter({"events": [{"event": "$exception"}]})
    assert matching(clickhouse_resource, crash, team_id=1) == []
    assert matching(clickhouse_resource, crash, team_id=2) == [(2, "shared")]
    pageview = compile_filter({"events": [{"event": "$pageview"}]})
    assert matching(clickhouse_resource, pageview, team_id=1) == [(1, "mine")]
    assert matching(clickhouse_resource, pageview, team_id=2) == []


# --- injection -------------------------------------------------------------


def _position_filter(position: str, value: str) -> dict[str, Any]:
    prop = {
        "event": None,
        "key": {"key": value, "op": "is_set"},
        "key_exact": {"key": value, "op": "exact", "value": "v"},
        "exact": {"key": "k", "op": "exact", "value": value},
        "icontains": {"key": "k", "op": "icontains", "value": value},
        "regex": {"key": "k", "op": "regex", "value": re.escape(value)},
    }
    if position == "distinct_id":
        return {"distinct_ids": [value]}
    if position == "event":
        return {"events": [{"event": value}]}
    return {"events": [{"event": "$pageview", "properties": [prop[position]]}]}


def _user_string(position: str, value: str) -> str:
    return re.escape(value) if position == "regex" else value


def _seed_position(position: str, index: int, value: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A session whose data literally holds `value` in this position, and a near miss."""
    hit, miss = f"hit-{index}", f"miss-{index}"
    if position == "distinct_id":
        return [session(hit, distinct_id=value), session(miss, distinct_id=value + "x")], []
    if position == "event":
        return [session(hit), session(miss)], [event(value, T, hit), event(value.upper() + "_", T, miss)]
    if position in ("key", "key_exact"):
        props_hit, props_miss = {value: "v"}, {value + "_": "v"}
    elif position == "icontains":
        # Upper-case the ASCII only: "ß".upper() is "SS", which no case-insensitive search equates.
        shouted = "".join(c.upper() if c.isascii() else c for c in value)
        props_hit, props_miss = {"k": f"<<{shouted}>>"}, {"k": value[:-1]}
    else:
        props_hit, props_miss = {"k": value}, {"k": value + "_" if position == "exact" else value[:-1]}
    return [session(hit), session(miss)], [
        event("$pageview", T, hit, properties=props_hit),
        event("$pageview", T, miss, properties=props_miss),
    ]


def _expected(position: str, value: str, sessions: list[dict], events: list[dict]) -> list[str]:
    """Which seeded sessions a literal (non-SQL) reading of the filter selects, computed in Python."""
    import json

    if position == "distinct_id":
        return sorted(s["session_id"] for s in sessions if s["distinct_id"] == value)
    out = set()
    for e in events:
        props = json.loads(e["properties"])
        if position == "event":
            ok = e["event"] == value
        elif e["event"] != "$pageview":
            ok = False
        elif position == "key":
            ok = value in props
        elif position == "key_exact":
            ok = props.get(value) == "v"
        elif position == "exact":
            ok = props.get("k") == value
        elif position == "icontains":
            ok = value.lower() in str(props.get("k", "")).lower()
        else:
            ok = re.search(re.escape(value), str(props.get("k", ""))) is not None
        if ok:
            out.add(e["$session_id"])
    return sorted(out)


@pytest.mark.parametrize("position", ["event", "key", "key_exact", "exact", "icontains", "regex", "distinct_id"])
def test_injection_strings_are_only_ever_values(clickhouse_resource, position):
    sessions: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for index, value in enumerate(NASTY):
        more_sessions, more_events = _seed_position(position, index, value)
        sessions += more_sessions
        events += more_events
    seed(clickhouse_resource, sessions, events)
    client = clickhouse_resource.client()
    benign = compile_filter(_position_filter(position, "benign"))
    for index, value in enumerate(NASTY):
        compiled = compile_filter(_position_filter(position, value))
        user_string = _user_string(position, value)
        # (a) the SQL text never holds the value: it is the same text a benign value gives...
        assert compiled.sql == benign.sql
        assert any(user_string == v or [user_string] == v for v in compiled.params.values())
        # ...and holds no user string, except one spelled exactly like our own placeholders.
        if not re.fullmatch(r"\{f_\d+:String\}", user_string):
            assert user_string not in compiled.sql
        # (b) it runs and (c) matches literally: the session holding the value, not the near miss.
        got = [sid for _, sid in matching(clickhouse_resource, compiled)]
        assert got == _expected(position, value, sessions, events), (position, value)
        assert f"hit-{index}" in got and f"miss-{index}" not in got
    assert client.command("EXISTS TABLE events") == 1
    assert client.command("SELECT count() FROM events") == len(events)
    assert client.command("SELECT count() FROM sessions_t") == len(sessions)


def test_the_sql_text_depends_only_on_the_filter_shape():
    def shape(value: str, number: float) -> dict[str, Any]:
        return {
            "min_duration_seconds": number,
            "counters": {"cost_usd": {"gte": number}, "exception_count": {"lt": number}},
            "events": [{"event": value, "properties": [{"key": value, "op": "icontains", "value": value}]}],
            "distinct_ids": [value, value],
        }

    first, second = compile_filter(shape("a", 1.5)), compile_filter(shape("'; DROP TABLE x", 99.25))
    assert first.sql == second.sql and first.params != second.params


def test_event_presence_sees_only_events_inserted_by_the_as_of_time(clickhouse_resource):
    """A sweep as of T is repeatable: an event inserted after T does not count."""
    ts = at("2026-03-01T10:00:00")
    seed(
        clickhouse_resource,
        [session("s1")],
        [event("$exception", ts, "s1", inserted_at=ts + timedelta(hours=1))],
    )
    compiled = compile_filter({"events": [{"event": "$exception"}]})
    assert matching(clickhouse_resource, compiled, as_of=ts + timedelta(minutes=30)) == []
    assert matching(clickhouse_resource, compiled, as_of=ts + timedelta(hours=1)) == [(1, "s1")]


# --- regexes: what validates is what ClickHouse's RE2 compiles ---------------------------

RE2_ACCEPTED = [
    "^/cart/[0-9]+$", r"\d{2,4}", "a{0,3}", "(?i)checkout", "(?i:a)(?-i:b)", "(?s).", "(?m)^a$", "(?i-s:a.)",
    "(?P<name_1>a)b", "(?:a|)", "a|", "()", "(?:)*", "[[:alpha:]]", "[[:^digit:]_]", "[[:a]", "[]a]", "[^]a]", "[a-]",
    "[-a]", "[a-b-c]", r"[\]\-\\]", r"[\x41-\x5a]", r"[\0-\x1f]", "[é-ü]", "[𝔘]", r"\x41", r"\xe9", r"\0", r"\012",
    r"\123", r"\a\f\n\r\t\v", r"\Aa", r"\bword\b", r"\Ba", r"\d\D\s\S\w\W", r"[\d\D\s\S\w\W]", r"\_",
    re.escape("x' OR 1=1 -- ~&# \t\n\r\x0b\x0c%_é{f_0:String}"), "a{", "a{x}", "a{1,2", "{", "}", "]", "a{}",
    "a{1000}", "a{1000,}", "a{0,1000}", "(a{10}){100}", "(?:a{2}|b){500}", "(?:(?:a{10}){10}){10}",
    "a*?b+?c??d{2}?e{2,3}?", ".{1000}" * 4, "[^a]{1000}" * 3, r"(?i)\W{1000}", "(?i)" + "[a-z]{1000}" * 5,
    "[ĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞ]{100}", "(?i)[Α-ω]{1000}", "(" * 60 + "a" + ")" * 60, "x" * 1000,
]  # fmt: skip
RE2_REFUSED = [
    "a++", "a*+", "a?+", "a{2}+", r"\u0041", r"\U00000041", r"\N{LATIN SMALL LETTER A}", r"\Z", "(?x) a", r"(?a)\w",
    "(?u)a", "(?a:b)", "a{1001}", "a{1001,}", "(a{1000}){1000}", "(?:a{3}|b){500}", "(?:(?:a{10}){10}){11}", r"[\b]",
    "a{,3}", "a{,}", "(?=a)", "(?!a)", "(?<=a)", "(?<!a)", "(?>a)", "(?P<n>a)(?P=n)", "(a)?(?(1)b|c)", "(?#c)a",
    r"(a)\1", r"\é", r"[\é]", "[[:foo:]]", "(?P<é>a)", ".{1000}" * 5, "[ĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞ]{1000}",
]  # fmt: skip


def _regex_filter(pattern: str) -> dict[str, Any]:
    return {"events": [{"event": "e", "properties": [{"key": "k", "op": "regex", "value": pattern}]}]}


def test_every_regex_the_re2_check_accepts_compiles_in_clickhouse(clickhouse_resource):
    """The RE2 check is conservative: each regex it lets through runs in ClickHouse's match().
    Validation then refuses some for their cost (`a{1000}`: MAX_REGEX_COUNT, MAX_REGEX_WILDCARDS),
    so they are compiled here past it."""
    seed(clickhouse_resource, [session("s")], [event("e", T, "s", properties={"k": "a\nb é 𝔘 abc"})])
    for pattern in RE2_ACCEPTED:
        check_re2(pattern)  # accepts
        bypass = ScannerFilter.model_construct(events=(EventFilter.model_construct(
            event="e", properties=(PropertyFilter.model_construct(key="k", op="regex", value=pattern),)),))  # fmt: skip
        matching(clickhouse_resource, compile_filter(bypass))  # and compiles in RE2, or raises


@pytest.mark.parametrize("pattern", RE2_REFUSED)
def test_a_regex_re2_may_refuse_is_refused_naming_the_field(pattern):
    with pytest.raises(ScannerError) as raised:
        compile_filter(_regex_filter(pattern))
    (problem,) = raised.value.problems
    assert problem.path == "filter.events[0].properties[0].value" and problem.value == pattern
    assert problem.message.startswith("ClickHouse regexes (RE2)"), problem.message


def test_regexes_match_in_clickhouse_as_written(clickhouse_resource):
    """A few accepted constructs that Python and RE2 could read differently, as ClickHouse reads them."""
    seed(clickhouse_resource, [session("brace"), session("digits")],
         [event("e", T, "brace", properties={"k": "a{x}"}), event("e", T, "digits", properties={"k": "2024"})])  # fmt: skip
    assert ids(clickhouse_resource, _regex_filter("^a{x}$")) == ["brace"]
    assert ids(clickhouse_resource, _regex_filter(r"^\d{4}$")) == ["digits"]
    assert ids(clickhouse_resource, _regex_filter("^[[:digit:]]{4}$")) == ["digits"]
    assert ids(clickhouse_resource, _regex_filter(r"^\x32\060")) == ["digits"]  # hex and octal escapes
