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
from session_assets.scanners.regex import MAX_PROGRAM_SIZE, RE2Refusal, check_re2, compile_like_clickhouse
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
    "(?P<name1>a)b", "(?:a|)", "a|", "()", "(?:)*", "[[:alpha:]]", "[[:^digit:]_]", "[[:a]", "[]a]", "[^]a]", "[a-]",
    "[-a]", "[a-b-c]", r"[\]\-\\]", r"[\x41-\x5a]", r"[\0-\x1f]", "[é-ü]", "[𝔘]", r"\x41", r"\xe9", r"\0", r"\012",
    r"\123", r"\a\f\n\r\t\v", r"\Aa", r"\bword\b", r"\Ba", r"\d\D\s\S\w\W", r"[\d\D\s\S\w\W]", r"\_",
    re.escape("x' OR 1=1 -- ~&# \t\n\r\x0b\x0c%_é{f_0:String}"), "a{", "a{x}", "a{1,2", "{", "}", "]", "a{}",
    "a{1000}", "a{1000,}", "a{0,1000}", "(a{10}){100}", "(?:a{2}|b){500}", "(?:(?:a{10}){10}){10}",
    "a*?b+?c??d{2}?e{2,3}?", ".{1000}" * 5, "[^a]{1000}" * 3, r"(?i)\W{1000}", "(?i)" + "[a-z]{1000}" * 5,
    "[ĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞ]{1000}", "(?i)[Α-ω]{1000}", "(" * 60 + "a" + ")" * 60, "x" * 1000,
    # Python's re refuses these (or reads them otherwise); RE2 takes them.
    r"\pL", r"\PL", r"\pN+", r"\p{Greek}", r"\P{Greek}", r"[\p{Han}\pL]", r"\p{^Greek}", r"a\z", r"\Q.*+?(\E", r"\Qa",
    r"(?U)a+", r"(?U:a*)b", r"\x{41}", r"\x{1D518}", r"[\x{41}-\x{5A}]", "(?<n>a)", "(?P<n>a)(?P<n>b)", r"\C",
    "a{2,}?", r"[[:alpha:]\p{Greek}]{2}",
]  # fmt: skip
# RE2 refuses each, with the message load quotes; tests below check that ClickHouse gives the same.
RE2_REFUSED = [
    "a++", "a*+", "a?+", "a{2}+", r"\u0041", r"\U00000041", r"\N{LATIN SMALL LETTER A}", r"\Z", "(?x) a", r"(?a)\w",
    "(?u)a", "(?a:b)", "a{1001}", "a{1001,}", "(a{1000}){1000}", "(?:a{3}|b){500}", "(?:(?:a{10}){10}){11}", r"[\b]",
    "(?=a)", "(?!a)", "(?<=a)", "(?<!a)", "(?>a)", "(?P<n>a)(?P=n)", "(a)?(?(1)b|c)", "(?#c)a", r"(a)\1", r"\é",
    r"[\é]", "[[:foo:]]", "(", "a{2,1}", "(?<!x)", r"\1", r"\pX", r"\p{Klingon}", r"\x{110000}", r"[\Q]\E]", "a**",
    r"\pL{447}",
]  # fmt: skip
NOT_AS_PYTHON = ["a{,3}", "a{,}", "x{,10}y"]  # RE2 reads {,n} as literal text, Python as {0,n}
# ClickHouse misreads these (pattern, a text RE2 finds it in, the same pattern written so ClickHouse reads it).
MISREAD_FIXED = [("(?P<name_1>a)b", "xab", "(?P<name1>a)b"), ("(?P<é>a)bc", "abc", "(?P<e>a)bc"),
                 ("x(?<_>a)bcd", "xabcd", "x(?<n>a)bcd"), ("abé*", "ab", "ab(?:é)*"), ("abcé?", "abc", "abc(?:é)?"),
                 ("abc𝔘{0,2}", "abc", "abc(?:𝔘){0,2}"), ("(?:abcé*?)d", "abcd", "(?:abc(?:é)*?)d")]  # fmt: skip
MISREAD = [pattern for pattern, _, _ in MISREAD_FIXED]
TOO_LARGE = [r"\pL{100}", r"[\pL\pN]{80}", r"\pL{50}" * 3]  # RE2 and ClickHouse compile them; over MAX_PROGRAM_SIZE


def _regex_filter(pattern: str) -> dict[str, Any]:
    return {"events": [{"event": "e", "properties": [{"key": "k", "op": "regex", "value": pattern}]}]}


def _unchecked(pattern: str) -> ScannerFilter:
    """A filter on the regex `pattern`, past validation."""
    return ScannerFilter.model_construct(events=(EventFilter.model_construct(
        event="e", properties=(PropertyFilter.model_construct(key="k", op="regex", value=pattern),)),))  # fmt: skip


def test_every_regex_the_re2_check_accepts_compiles_in_clickhouse(clickhouse_resource):
    """Each regex the RE2 check lets through runs in ClickHouse's match() and matches as google-re2 does.
    Validation then refuses some for their cost (`a{1000}`: MAX_REGEX_COUNT, MAX_REGEX_WILDCARDS),
    so they are compiled here past it."""
    text = "a\nb é 𝔘 abc A"
    seed(clickhouse_resource, [session("s")], [event("e", T, "s", properties={"k": text})])
    for pattern in RE2_ACCEPTED:
        check_re2(pattern)  # accepts
        expected = [(1, "s")] if compile_like_clickhouse(pattern).search(text) else []
        assert matching(clickhouse_resource, compile_filter(_unchecked(pattern))) == expected, pattern


@pytest.mark.parametrize("pattern", RE2_REFUSED + NOT_AS_PYTHON + TOO_LARGE + MISREAD)
def test_a_regex_re2_may_refuse_is_refused_naming_the_field(pattern):
    with pytest.raises(ScannerError) as raised:
        compile_filter(_regex_filter(pattern))
    (problem,) = raised.value.problems
    assert problem.path == "filter.events[0].properties[0].value" and problem.value == pattern
    assert problem.message.startswith("ClickHouse regexes (RE2)" if pattern not in MISREAD else
                                      "ClickHouse regexes: match() misreads "), problem.message


@pytest.mark.parametrize(("pattern", "text", "fixed"), MISREAD_FIXED, ids=MISREAD)
def test_what_clickhouse_misreads_is_refused_with_a_fix_that_matches(clickhouse_resource, pattern, text, fixed):
    """Before it runs RE2, ClickHouse looks for text every match holds, and reads a group name other than
    ASCII letters and digits, or a non-ASCII character that may be absent, wrongly: these compile and then
    miss what google-re2 matches. The fix the refusal names validates and matches."""
    seed(clickhouse_resource, [session("s")], [event("e", T, "s", properties={"k": text})])
    assert compile_like_clickhouse(pattern).search(text)
    assert matching(clickhouse_resource, compile_filter(_unchecked(pattern))) == [], pattern  # the misreading
    with pytest.raises(RE2Refusal) as refused:
        check_re2(pattern)
    assert "(?:...)" in str(refused.value) or str(refused.value).rsplit("write ", 1)[1] in fixed
    assert compile_like_clickhouse(fixed).search(text)
    assert ids(clickhouse_resource, _regex_filter(fixed)) == ["s"]


def test_clickhouse_refuses_what_re2_refuses_with_the_message_load_quotes(clickhouse_resource):
    seed(clickhouse_resource, [session("s")], [event("e", T, "s", properties={"k": "abc"})])
    for pattern in RE2_REFUSED:
        with pytest.raises(RE2Refusal) as refused:
            check_re2(pattern)
        reason = str(refused.value).removeprefix("ClickHouse regexes (RE2) refuse it: ")
        assert reason != str(refused.value), refused.value
        with pytest.raises(Exception) as raised:
            matching(clickhouse_resource, compile_filter(_unchecked(pattern)))
        assert f"error: {reason}. Look at" in str(raised.value), (pattern, reason, str(raised.value)[:300])


def test_what_is_refused_for_python_readers_or_size_compiles_in_clickhouse(clickhouse_resource):
    """`{,n}` and programs over MAX_PROGRAM_SIZE are refused though ClickHouse compiles them: `{,n}` as
    literal text (what Python users do not mean), the large ones well within RE2's memory."""
    seed(clickhouse_resource, [session("literal"), session("count")],
         [event("e", T, "literal", properties={"k": "a{,3}"}), event("e", T, "count", properties={"k": "aa"})])  # fmt: skip
    assert matching(clickhouse_resource, compile_filter(_unchecked("^a{,3}$"))) == [(1, "literal")]
    for pattern in TOO_LARGE:
        size = compile_like_clickhouse(pattern).programsize
        assert MAX_PROGRAM_SIZE < size < 5 * MAX_PROGRAM_SIZE, (pattern, size)
        with pytest.raises(RE2Refusal, match=f"compile it to {size:,} instructions, more than 100,000"):
            check_re2(pattern)
        assert matching(clickhouse_resource, compile_filter(_unchecked(pattern))) == []


# Python's re refuses each of these but `(?P<name>...)`; RE2 takes them all. Which samples they match.
SAMPLES = {"aaa": "aaa", "ab": "ab", "digits": "123", "greek": "αβγ", "latin": "Abc", "literal": "a.*b", "nl": "abc\n"}
RE2_ONLY = [
    (r"^\pL+$", ["aaa", "ab", "greek", "latin"]),
    (r"^\p{Greek}+$", ["greek"]),
    (r"^\PL+$", ["digits"]),
    (r"c\z", ["latin"]),  # not before a final newline
    (r"^\Qa.*b\E$", ["literal"]),
    (r"^\Qa.*", ["literal"]),  # up to the end without \E
    (r"(?U)^a+$", ["aaa"]),
    (r"(?U)^a+?b$", ["ab"]),
    (r"^\x{41}", ["latin"]),
    (r"[\x{3b1}-\x{3b3}]{3}", ["greek"]),
    (r"^(?P<name>a)b$", ["ab"]),
    (r"^(?<name>a)+$", ["aaa"]),
    (r"^abc.$", ["nl"]),  # ClickHouse's . matches a newline: compile_like_clickhouse's dot_nl
    (r"(?-s)^abc.$", []),
]


@pytest.mark.parametrize(("pattern", "expected"), RE2_ONLY, ids=[pattern for pattern, _ in RE2_ONLY])
def test_re2_syntax_validates_and_matches_in_clickhouse_as_in_google_re2(clickhouse_resource, pattern, expected):
    seed(clickhouse_resource, [session(sid) for sid in SAMPLES],
         [event("e", T, sid, properties={"k": text}) for sid, text in SAMPLES.items()])  # fmt: skip
    regexp = compile_like_clickhouse(pattern)
    assert sorted(sid for sid, text in SAMPLES.items() if regexp.search(text)) == expected
    assert ids(clickhouse_resource, _regex_filter(pattern)) == expected  # validated, then run by match()


RE2_ERRORS = [("(", "missing ): ("), ("a{2,1}", "invalid repetition size: {2,1}"),
              ("(?<!x)", "invalid perl operator: (?<!"), (r"(a)\1", r"invalid escape sequence: \1")]  # fmt: skip


@pytest.mark.parametrize(("pattern", "reason"), RE2_ERRORS, ids=[pattern for pattern, _ in RE2_ERRORS])
def test_a_regex_re2_refuses_is_refused_quoting_re2(clickhouse_resource, pattern, reason):
    with pytest.raises(ScannerError) as raised:
        compile_filter(_regex_filter(pattern))
    (problem,) = raised.value.problems
    assert problem.path == "filter.events[0].properties[0].value" and problem.value == pattern
    assert problem.message == f"ClickHouse regexes (RE2) refuse it: {reason}"
    assert str(raised.value) == (
        f"filter.events[0].properties[0].value: ClickHouse regexes (RE2) refuse it: {reason}, got {pattern!r}"
    )
    seed(clickhouse_resource, [session("s")], [event("e", T, "s", properties={"k": "abc"})])
    with pytest.raises(Exception, match=f"error: {re.escape(reason)}\\. Look at"):
        matching(clickhouse_resource, compile_filter(_unchecked(pattern)))


def test_regexes_match_in_clickhouse_as_written(clickhouse_resource):
    """A few accepted constructs that Python and RE2 could read differently, as ClickHouse reads them."""
    seed(clickhouse_resource, [session("brace"), session("digits")],
         [event("e", T, "brace", properties={"k": "a{x}"}), event("e", T, "digits", properties={"k": "2024"})])  # fmt: skip
    assert ids(clickhouse_resource, _regex_filter("^a{x}$")) == ["brace"]
    assert ids(clickhouse_resource, _regex_filter(r"^\d{4}$")) == ["digits"]
    assert ids(clickhouse_resource, _regex_filter("^[[:digit:]]{4}$")) == ["digits"]
    assert ids(clickhouse_resource, _regex_filter(r"^\x32\060")) == ["digits"]  # hex and octal escapes
