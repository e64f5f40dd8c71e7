"""Fuzzing scanner definitions, their YAML and the filter compiler (SPEC §7, §13).

Whatever a scanner file holds, loading it either gives valid scanners or raises
`ScannerError` whose problems each name a field path on one line; nothing else
escapes. Every valid scanner round-trips through its stored form, compiles to
SQL whose text holds no string literal and depends only on the filter's shape
(values travel as bound parameters), and that SQL runs on a real chDB. A string
in any value position is matched literally.

The default run is bounded (derandomized, a few hundred cheap examples and a few
dozen database ones); `pytest --slow` loads the hypothesis "slow" profile from
tests/conftest.py for many more. Inputs the package once accepted and then
mishandled (regexes RE2 refuses, alias bombs, keys with line breaks, start_at
near year 1, integers beyond float range, NUL, a missing rule) each have a
reproducer at the end, under FORMER GAPS; the properties no longer leave them out.
"""

from __future__ import annotations

import json
import re
import tracemalloc
import uuid
from collections.abc import Mapping
from datetime import timezone
from itertools import count
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_assets.resources import ClickHouseResource
from session_assets.scanners import (
    COUNTER_COLUMNS,
    CompiledFilter,
    Scanner,
    ScannerError,
    ScannerFilter,
    compile_filter,
    load_scanners,
    parse_scanner,
)
from session_assets.scanners.errors import format_path, show_value
from session_assets.scanners.model import EventFilter, PropertyFilter
from session_assets.scanners.regex import compile_like_clickhouse
from tests.scanners.test_filters import (
    NASTY,
    T,
    SESSION_COLUMNS,
    SESSIONS_DDL,
    _position_filter,
    _seed_position,
    _unchecked,
    matching,
    session,
)
from tests.support import event, insert_rows

SLOW = settings.get_current_profile_name() == "slow"


def budget(examples: int) -> settings:
    """`examples` derandomized in the default run; the loaded profile's count under --slow."""
    extra: dict[str, Any] = {} if SLOW else {"max_examples": examples, "derandomize": True}
    return settings(
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        **extra,
    )


# --- strategies ------------------------------------------------------------------

INJECTIONS = [
    *NASTY,
    "'); DROP TABLE events; --",
    "{team_id:Int64}",
    "{events_table:Identifier}",
    "{f_0:String}",
    "' OR team_id != 0 OR '",
    "\\",
    "\\'",
    "'\\",
    "\\x00",
    "a\x00b",
    "\x00",
    "*/ /*",
    "\r\n",
    "\u2028line",
    "\ufeffbom",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "%_",
    "NULL",
    "nan",
]
TEXT = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(max_size=30),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=6), st.sampled_from(INJECTIONS), st.text(max_size=6)),
)
NAME = TEXT.filter(lambda s: 1 <= len(s) <= 200)  # event names, keys, distinct ids
VALUE = TEXT.filter(lambda s: 1 <= len(s) <= 1000)  # icontains values

FIELDS = sorted(
    {*Scanner.model_fields, *ScannerFilter.model_fields, *EventFilter.model_fields, *PropertyFilter.model_fields}
    | {"gte", "gt", "lte", "lt", "eq", "score", "flag_at", "max_cost_usd", "max_total_tokens", *COUNTER_COLUMNS}
)
# Numbers are bounded to +-1e308 (so each converts to a float); beyond is refused.
FLOAT_INT_MAX = 2**1023
NUMBER = st.one_of(
    st.integers(min_value=-FLOAT_INT_MAX, max_value=FLOAT_INT_MAX),
    st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**26, 10**26 - 1, 10**308, 10**308 + 1,
                     -(10**400), 2**1024]),
    st.floats(allow_nan=True, allow_infinity=True),
)  # fmt: skip
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT, st.sampled_from(FIELDS), st.dates(), st.datetimes())
KEY = st.one_of(st.sampled_from(FIELDS), TEXT, st.integers(-3, 3))
ANY_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)),
    max_leaves=12,
)
OPS = ("gte", "gt", "lte", "lt", "eq")
KINDS_RULES = [("match", {}), ("threshold", {"score": "exception_count * 2 + rageclick_count", "flag_at": 3}),
               ("ai_cost", {"max_cost_usd": 1, "max_total_tokens": 100})]  # fmt: skip

# Regexes: the user's text escaped (a literal search), or constructs RE2 shares with Python.
RE2_SAFE = ["^a", "a$", "a|b", "[a-z]+", "(?i)checkout", r"\d{2,4}", "a{0,3}", "(?P<n>a)", "[[:alpha:]]", r"\bword\b",
            "(?s).", r"\x41", ".*", "(?:a|)", "a+?", r"\Aa", "(?i:a)(?-i:b)", r"[^\]\-]", r"\0", "(a{10}){10}"]  # fmt: skip
REGEX = st.one_of(VALUE.map(re.escape).filter(lambda s: len(s) <= 1000), st.sampled_from(RE2_SAFE))

PROPERTY = st.one_of(
    st.fixed_dictionaries({"key": NAME, "op": st.sampled_from(["is_set", "is_not_set"])}),
    st.fixed_dictionaries(
        {"key": NAME, "op": st.just("exact"),
         "value": st.one_of(VALUE, st.booleans(), st.integers(-FLOAT_INT_MAX, FLOAT_INT_MAX),
                            st.floats(allow_nan=False, allow_infinity=False))}
    ),
    st.fixed_dictionaries({"key": NAME, "op": st.just("icontains"), "value": VALUE}),
    st.fixed_dictionaries({"key": NAME, "op": st.just("regex"), "value": REGEX}),
)  # fmt: skip
COUNTER_OPS = st.fixed_dictionaries(
    {}, optional={op: st.one_of(st.integers(0, FLOAT_INT_MAX), st.floats(0, 1e308)) for op in OPS}
).filter(bool)
COST_OPS = st.fixed_dictionaries(
    {}, optional={op: st.one_of(st.integers(0, 10**26 - 1), st.floats(0, 9.9e25)) for op in OPS}
).filter(bool)
VALID_FILTER = st.fixed_dictionaries(
    {},
    optional={
        "min_duration_seconds": st.one_of(st.integers(0, 10**6), st.floats(0, 1e6)),
        "max_duration_seconds": st.one_of(st.integers(10**6, FLOAT_INT_MAX), st.floats(1e6, 1e308)),
        "counters": st.dictionaries(
            st.sampled_from([c for c in COUNTER_COLUMNS if c != "cost_usd"]), COUNTER_OPS, max_size=3
        ).flatmap(lambda ops: st.builds(lambda cost: {**ops, **cost}, st.dictionaries(st.just("cost_usd"), COST_OPS, max_size=1))),
        "events": st.lists(
            st.fixed_dictionaries({"event": NAME, "properties": st.lists(PROPERTY, min_size=1, max_size=4)}),
            min_size=1,
            max_size=3,
        ),
        "distinct_ids": st.lists(NAME, min_size=1, max_size=4),
    },
)  # fmt: skip


@st.composite
def scanner_documents(draw: st.DrawFn) -> Any:
    """Near-valid scanners with a few fields broken, or anything at all."""
    kind, rule = draw(st.sampled_from(KINDS_RULES))
    doc: dict[Any, Any] = {"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": kind, "rule": dict(rule)}
    if draw(st.booleans()):
        doc["filter"] = draw(VALID_FILTER)
    for _ in range(draw(st.integers(0, 3))):
        _mutate(draw, doc)
    return draw(st.one_of(st.just(doc), st.just(doc), ANY_VALUE))


def _mutate(draw: st.DrawFn, doc: dict[Any, Any]) -> None:
    """Set, add or delete one key somewhere inside `doc`."""
    containers: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, (dict, list)) and not (isinstance(value, list) and not value):
            containers.append(value)
            for child in value.values() if isinstance(value, dict) else value:
                walk(child)

    walk(doc)
    target = draw(st.sampled_from(containers))
    if isinstance(target, list):
        target[draw(st.integers(0, len(target) - 1))] = draw(ANY_VALUE)
        return
    action = draw(st.sampled_from(["set", "add", "delete"]))
    if action == "delete" and target:
        del target[draw(st.sampled_from(sorted(target, key=repr)))]
    elif action == "set" and target:
        target[draw(st.sampled_from(sorted(target, key=repr)))] = draw(ANY_VALUE)
    else:
        target[draw(KEY)] = draw(ANY_VALUE)


# --- checks ---------------------------------------------------------------------

# Parameters the compiled expression may use that its caller binds (filters.py docstring).
CALLER_PARAMS = {"events_db", "events_table", "team_id", "window_start", "window_end", "seen_until"}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^{}]*\}")


def check_error(error: ScannerError, doc: Any, *, under: str = "") -> None:
    """Each problem names a path into the document (or the document), on one line."""
    assert error.problems and str(error)
    roots = {format_path([key]) for key in doc} | set(Scanner.model_fields) if isinstance(doc, Mapping) else set()
    for problem in error.problems:
        assert problem.message.strip(), problem
        assert len(problem.render().splitlines()) == 1, problem.render()
        if roots:
            path = problem.path.removeprefix(under)
            assert any(path == r or path.startswith((r + ".", r + "[")) for r in roots), (problem.path, sorted(roots, key=str))


def strings_of(scanner_filter: ScannerFilter) -> list[str]:
    """Every string the user wrote into a filter."""
    out = [e.event for e in scanner_filter.events] + list(scanner_filter.distinct_ids or ())
    for e in scanner_filter.events:
        out += [p.key for p in e.properties] + [p.value for p in e.properties if isinstance(p.value, str)]
    return out


def benign(scanner_filter: ScannerFilter) -> ScannerFilter:
    """The same filter with every user string replaced by "v": same shape, other values."""
    dumped = scanner_filter.model_dump(mode="json", exclude_none=True)
    for e in dumped.get("events", []):
        e["event"] = "v"
        for p in e.get("properties", []):
            p["key"] = "v"
            if isinstance(p.get("value"), str):
                p["value"] = "v"
    if "distinct_ids" in dumped:
        dumped["distinct_ids"] = ["v"] * len(dumped["distinct_ids"])
    return ScannerFilter.model_validate(dumped)


def check_sql(scanner_filter: ScannerFilter, compiled: CompiledFilter) -> None:
    """User strings are only bound parameters; the text holds no literal and is the shape's alone."""
    shape_sql = compile_filter(benign(scanner_filter)).sql
    bound = [x for v in compiled.params.values() for x in (v if isinstance(v, list) else [v])]
    for text in strings_of(scanner_filter):
        assert text in bound, text
        # A string may only be in the text as part of the compiler's own words ("e" is in SELECT).
        assert text not in compiled.sql or text in shape_sql, text
    assert compiled.sql == shape_sql
    names = PLACEHOLDER.findall(compiled.sql)
    assert set(names) == set(compiled.params) | (set(names) & CALLER_PARAMS)
    bare = PLACEHOLDER.sub("?", compiled.sql)
    assert not re.search(r"['\"\\;#]|--|/\*", bare), bare


def check_valid(scanner: Scanner) -> CompiledFilter:
    record = scanner.to_record()
    stored = {**record, "filter": json.dumps(record["filter"]), "rule": json.dumps(record["rule"])}
    assert Scanner.from_record(stored) == scanner
    compiled = compile_filter(scanner.filter)
    check_sql(scanner.filter, compiled)
    return compiled


# --- without a database ---------------------------------------------------------------


@budget(400)
@given(doc=scanner_documents())
def test_any_mapping_validates_or_names_the_field(doc):
    try:
        scanner = parse_scanner(doc)
    except ScannerError as error:
        check_error(error, doc)
    else:
        check_valid(scanner)
    if isinstance(doc, Mapping) and isinstance(doc.get("filter"), Mapping):
        try:
            compiled = compile_filter(doc["filter"])
        except ScannerError as error:
            check_error(error, doc["filter"], under="filter.")
        else:
            assert isinstance(compiled, CompiledFilter)


@budget(200)
@given(doc=scanner_documents(), unicode=st.booleans(), as_list=st.booleans())
def test_yaml_of_any_document_loads_like_the_mapping(doc, unicode, as_list):
    text = yaml.safe_dump([doc] if as_list else doc, allow_unicode=unicode, sort_keys=False)
    try:
        direct: Any = parse_scanner(doc)
    except ScannerError as error:
        direct = error
    try:
        loaded: Any = load_scanners(text + "\n")
    except ScannerError as error:
        loaded = error
    if isinstance(doc, Mapping) or as_list:
        if isinstance(direct, Scanner):
            assert loaded == [direct]
        else:
            assert isinstance(loaded, ScannerError), loaded
            assert [(p.path, p.message) for p in loaded.problems] == [(p.path, p.message) for p in direct.problems]
    elif doc is None:
        assert loaded == []  # an empty document defines no scanners
    elif isinstance(doc, list):
        # A bare list is a list of scanners: it loads when every item is a valid scanner, ids unique.
        parsed = [_parsed(item) for item in doc]
        ok = all(parsed) and len({scanner.id for scanner in parsed}) == len(parsed)
        assert loaded == parsed if ok else isinstance(loaded, ScannerError)
    else:
        assert isinstance(loaded, ScannerError) and "expected a scanner mapping or a list" in str(loaded)


def _parsed(item: Any) -> Scanner | None:
    try:
        return parse_scanner(item)
    except ScannerError:
        return None


YAML_SOUP = st.lists(
    st.one_of(
        st.sampled_from(["id: x\n", "team_id: 1\n", "name: n\n", "kind: match\n", "filter:\n", "  counters:\n",
                         "    event_count: {gte: 1}\n", "- ", ": ", "? ", "&a ", "*a ", "!!python/object:os.system ",
                         "!!binary ", "{", "}", "[", "]", "'", '"', "|\n", ">\n", "\t", "  ", "#", "%YAML 1.1\n",
                         "---\n", "...\n", "<<: *a\n", "id: x\nid: y\n", "\x00", "\ufeff", "9" * 400, ".nan", "-.inf",
                         "0x10", "0o17", "1_000", "2024-01-01", "~", "null", "yes", "on"]),
        TEXT,
    ),
    max_size=25,
).map("".join)  # fmt: skip


@budget(300)
@given(text=YAML_SOUP)
def test_any_yaml_text_loads_or_raises_scanner_error(text):
    try:
        scanners = load_scanners(text + "\n")
    except ScannerError as error:
        assert error.problems and str(error)
    else:
        for scanner in scanners:
            check_valid(scanner)


# --- against chDB -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_clickhouse(chdb_url: str) -> ClickHouseResource:
    """One database for the module's database examples: `sessions_t` and events seeded once."""
    resource = ClickHouseResource(url=chdb_url, database=f"t_fuzz_{uuid.uuid4().hex[:8]}")
    resource.migrate()
    resource.client().command(SESSIONS_DDL)
    return resource


_ids = count()


def insert_sessions(resource: ClickHouseResource, sessions: list[dict[str, Any]]) -> None:
    rows = [[row[name] for name in SESSION_COLUMNS] for row in sessions]
    resource.client().insert("sessions_t", rows, column_names=SESSION_COLUMNS)


@budget(40)
@given(filter_spec=VALID_FILTER)
def test_every_valid_filter_compiles_to_sql_that_runs(fuzz_clickhouse, filter_spec):
    try:
        scanner = parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": filter_spec})
    except ScannerError as error:
        check_error(error, {"filter": filter_spec})
        return
    compiled = check_valid(scanner)
    # Rows every part of the filter reads, so that each function (JSON, match, ...) really runs.
    sid = f"run-{next(_ids)}"
    distinct_id = scanner.filter.distinct_ids[0] if scanner.filter.distinct_ids else "user-1"
    insert_sessions(fuzz_clickhouse, [session(sid, distinct_id=distinct_id)])
    rows = [event(e.event, T, sid, properties=dict(_sample(p) for p in e.properties if p.op != "is_not_set"))
            for e in scanner.filter.events]  # fmt: skip
    if rows:
        insert_rows(fuzz_clickhouse, rows)
    matching(fuzz_clickhouse, compiled)  # it runs; which sessions match is test_filters.py's business


def _sample(prop: PropertyFilter) -> tuple[str, Any]:
    """A property value `prop` is evaluated against."""
    return prop.key, "a matching text?" if prop.op in ("regex", "is_set") else prop.value


POSITIONS = ["event", "key", "key_exact", "exact", "icontains", "regex", "distinct_id"]


@budget(60)
@given(position=st.sampled_from(POSITIONS), value=TEXT.filter(lambda s: 1 <= len(s) <= 190))
def test_any_string_in_any_value_position_is_matched_literally(fuzz_clickhouse, position, value):
    if "\x00" in value:  # Postgres could not store the scanner: refused, naming the field
        spec = _position_filter(position, value)
        with pytest.raises(ScannerError, match="must not contain NUL") as raised:
            parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": spec})
        assert all(p.path.startswith("filter.") for p in raised.value.problems)
        return
    index = next(_ids)
    sessions, events = _seed_position(position, index, value)
    insert_sessions(fuzz_clickhouse, sessions)
    if events:
        insert_rows(fuzz_clickhouse, events)
    scanner = parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match",
                             "filter": _position_filter(position, value)})  # fmt: skip
    compiled = check_valid(scanner)
    got = {sid for _, sid in matching(fuzz_clickhouse, compiled)}
    assert f"hit-{index}" in got and f"miss-{index}" not in got, (position, value)


# --- FORMER GAPS: inputs the package once accepted at load and then mishandled -----------------

RE2_REJECTS = ["a++", "a*+", r"\u0041", r"\U00000041", r"\N{LATIN SMALL LETTER A}", r"\Z", "(?x) a", r"(?a)\w",
               "(?u)a", "a{1001}", "(a{1000}){1000}", r"[\b]"]  # fmt: skip


@pytest.mark.parametrize("pattern", RE2_REJECTS)
def test_a_regex_re2_refuses_is_refused_at_load(fuzz_clickhouse, pattern):
    """Python's re takes these, ClickHouse's RE2 does not: refused at load, naming the field and the value."""
    spec = {"events": [{"event": "e", "properties": [{"key": "k", "op": "regex", "value": pattern}]}]}
    with pytest.raises(ScannerError) as raised:
        parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": spec})
    (problem,) = raised.value.problems
    assert problem.path == "filter.events[0].properties[0].value"
    assert problem.message.startswith("ClickHouse regexes (RE2) refuse it: ") and problem.value == pattern
    assert repr(pattern) in str(raised.value)
    # ...and ClickHouse's RE2 really refuses each of them, with the message load quotes.
    reason = problem.message.removeprefix("ClickHouse regexes (RE2) refuse it: ")
    sid = f"re2-{next(_ids)}"
    insert_sessions(fuzz_clickhouse, [session(sid)])
    insert_rows(fuzz_clickhouse, [event("e", T, sid, properties={"k": "abc"})])
    with pytest.raises(Exception, match=f"cannot compile re2: .*, error: {re.escape(reason)}\\. Look at"):
        matching(fuzz_clickhouse, compile_filter(_unchecked(pattern)))


SLOW_REGEXES = [
    ("(?s).{1000}z", "at most 100 times", "not 1000"), ("[^x]{1000}z", "at most 100 times", "not 1000"),
    ("(a{10}){11}", "at most 100 times", "not 110"), ("a{101,}", "at most 100 times", "not 101"),
    ("(?s)" + "." * 990 + "z", "at most 300 wildcards", "not 990"), (".{100}" * 4, "at most 300 wildcards", "not 400"),
    (r"(?:\d{50}|[^a]{50})" * 4, "at most 300 wildcards", "not 400"),  # branches add up
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "limit", "count"), SLOW_REGEXES, ids=[p[:20] for p, _, _ in SLOW_REGEXES])
def test_a_regex_that_would_take_minutes_is_refused_at_load(pattern, limit, count):
    """Issue #14: `(?s).{1000}z` and `[^x]{1000}z` validated, then took 38-74 s over 4 MB of property
    values (so do a thousand dots, or `.{100}` ten times): refused, naming the field and the pattern."""
    spec = {"events": [{"event": "e", "properties": [{"key": "k", "op": "regex", "value": pattern}]}]}
    with pytest.raises(ScannerError) as raised:
        parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": spec})
    (problem,) = raised.value.problems
    assert problem.path == "filter.events[0].properties[0].value" and problem.value == pattern
    assert limit in problem.message and count in problem.message, problem.message
    # Right at the bounds, a regex still validates (0.03 s a MB).
    for fine in ("(?s).{100}.{100}.{100}z", "(a{10}){10}", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"):
        parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match",
                       "filter": {"events": [{"event": "e", "properties": [{"key": "k", "op": "regex", "value": fine}]}]}})  # fmt: skip


# Regexes built from pieces RE2 and Python both know, and pieces only one of them does.
REGEX_PIECES = ["a", "é", "𝔘", ".", "^", "$", "|", "(", ")", "(?:", "(?i)", "(?i:", "(?-i:", "(?s-i:", "(?P<n>",
                "(?P=n)", "(?=", "(?<!", "(?>", "(?x)", "*", "+", "?", "*?", "??", "++", "*+", "{2}", "{0}", "{1,}",
                "{2,5}", "{,3}", "{1000}", "{1001}", "{10}", "{100}", "{", "}", "]", "[", "[^", "[a-z]", "[^\\d]",
                "[[:alpha:]]", "[[:^digit:]]", "[[:foo:]]", "[]a]", "[\\b]", "[\\]]", "[a-]", "[é-ü]", "[\\x41-\\x5a]",
                "\\", "\\.", "\\-", "\\_", "\\ ", "\\\n", "\\t", "\\a", "\\v", "\\x41", "\\xe9", "\\0", "\\012",
                "\\123", "\\1", "\\A", "\\Z", "\\b", "\\B", "\\d", "\\W", "\\S", "\\u0041", "\\N{DIGIT ONE}",
                "\\é", "-", ",", " ", "\n", "'", "%", "\\pL", "\\PN", "\\p{Greek}", "\\p{Latin}", "\\z", "\\Q",
                "\\E", "(?U)", "(?U:", "\\x{41}", "\\x{1D518}", "(?<n>", "(?P<n_1>", "\\C", "b", "c", "{2,}", "[^a]"]  # fmt: skip
SAMPLES = ["abc", "a{2} é𝔘\n-_]A1"]  # the property values each generated regex runs over


@budget(150)
@given(pattern=st.lists(st.sampled_from(REGEX_PIECES), min_size=1, max_size=10).map("".join))
def test_a_regex_accepted_at_load_runs_in_clickhouse(fuzz_clickhouse, pattern):
    """Whatever regex validates, ClickHouse's match() compiles and matches as google-re2 does
    (tests/scanners/test_filters.py has fixed lists). Not every refused one fails in ClickHouse: it reads
    `a)` as the text `a` without compiling it."""
    spec = {"events": [{"event": "e", "properties": [{"key": "k", "op": "regex", "value": pattern}]}]}
    try:
        scanner = parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": spec})
    except ScannerError as error:
        assert [p.path for p in error.problems] == ["filter.events[0].properties[0].value"]
        return
    sid = f"re2-{next(_ids)}"
    insert_sessions(fuzz_clickhouse, [session(sid)])
    insert_rows(fuzz_clickhouse, [event("e", T, sid, properties={"k": text}) for text in SAMPLES])
    regexp = compile_like_clickhouse(pattern)
    expected = any(regexp.search(text) for text in SAMPLES)
    got = {found for _, found in matching(fuzz_clickhouse, compile_filter(scanner.filter))}
    assert (sid in got) == expected, (pattern, expected)


def _alias_bomb(levels: int, target: str = "team_id") -> str:
    """A scanner whose `target` holds 9**levels "lol"s, in a few hundred bytes of YAML."""
    lines = ['l0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels - 1)]
    # Anchors come before their aliases, so the bomb goes last.
    bomb = f"{target}: [{', '.join([f'*a{levels - 2}'] * 9)}]"
    return "\n".join(["id: bomb", "name: n", "kind: match", *lines, bomb]) + "\n"


def test_a_yaml_alias_bomb_is_reported_cheaply():
    text = _alias_bomb(6)  # 9**6 leaves: within the expansion limit, so reported field by field
    tracemalloc.start()
    try:
        with pytest.raises(ScannerError, match="team_id: Input should be a valid integer, got \\[\\[\\[") as raised:
            load_scanners(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # a 300-byte file; 9 more levels of it would need terabytes
    assert all(len(p.render()) < 300 for p in raised.value.problems)


@pytest.mark.parametrize("target", ["team_id", "sample_rate", "rule", "filter"])
def test_a_deeper_yaml_alias_bomb_is_refused_at_load(target):
    text = _alias_bomb(12, target)  # 9**12 leaves
    tracemalloc.start()
    try:
        with pytest.raises(ScannerError, match="aliases .* expand to more than 1,000,000 values"):
            load_scanners(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def _merge_bomb(shape: str) -> str:
    """Merge keys (<<) that copy the merged pairs: millions of pairs from a few KB of YAML."""
    keys = ", ".join(f"k{i}: 0" for i in range(1500))
    if shape == "many-targets":  # 1500 mappings each merging 1500 keys
        return f"id: bomb\nname: n\nkind: match\nbase: &a {{{keys}}}\nteam_id: [" + ", ".join(["{<<: *a}"] * 1500) + "]\n"
    # nested: each level merges the one below 9 times (PyYAML before 6.0.4 doubled the pairs per level)
    lines = ["id: bomb", "name: n", "kind: match", "l0: &a0 {k: v}"]
    lines += [f"l{n}: &a{n} {{<<: [{', '.join([f'*a{n - 1}'] * 9)}], k{n}: v}}" for n in range(1, 25)]
    return "\n".join(lines) + "\nteam_id: {<<: *a24}\n"


@pytest.mark.parametrize("shape", ["many-targets", "nested"])
def test_a_yaml_merge_key_bomb_is_refused_cheaply(shape):
    """Issue #14: merge keys copy what they merge into every mapping (4 million pairs, 12 s, from 40 KB;
    exponential with older PyYAML). Scanner files need none: `<<` is refused where it first appears."""
    text = _merge_bomb(shape)
    tracemalloc.start()
    try:
        with pytest.raises(ScannerError) as raised:
            load_scanners(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value).count("\n") == 0  # one line
    assert "invalid YAML at line " in str(raised.value) and "merge keys (<<) are not supported" in str(raised.value)
    assert peak < 10_000_000, peak  # PyYAML's nodes for the text (4 MB for 30 KB); merged: 100 MB and 26 s
    # A quoted "<<" is an ordinary (unknown) key, and an alias still repeats a whole value.
    with pytest.raises(ScannerError, match="<<: unknown key"):
        load_scanners('{id: x, team_id: 1, name: n, kind: match, "<<": 1}')
    (scanner,) = load_scanners("- {id: x, team_id: 1, name: &n shared, kind: match, filter: {distinct_ids: [*n, *n]}}")
    assert scanner.filter.distinct_ids == ("shared", "shared")


def test_a_huge_or_self_containing_value_is_shown_cheaply():
    bomb: Any = ["lol"] * 9
    for _ in range(30):
        bomb = [bomb] * 9
    cycle: list[Any] = [1]
    cycle.append(cycle)
    assert len(show_value(bomb)) <= 120 and show_value(bomb).startswith("[[[[")
    assert show_value(cycle) == "[1, [...]]"
    assert show_value(10**5000) == "<an integer of about 5001 digits>"  # repr() itself refuses it


def test_an_unknown_key_with_a_line_break_stays_on_one_line():
    doc = {"id": "fuzz", "team_id": 1, "name": "n", "kind": "match", "filter": {"colour\nred": 1, "x\u2028y": 2}}
    with pytest.raises(ScannerError) as raised:
        parse_scanner(doc)
    assert all(len(p.render().splitlines()) == 1 for p in raised.value.problems)
    assert sorted(p.path for p in raised.value.problems) == ["filter['colour\\nred']", "filter['x\\u2028y']"]


@pytest.mark.parametrize("kind", ["threshold", "ai_cost"])
def test_a_missing_rule_names_the_rule(kind):
    with pytest.raises(ScannerError) as raised:
        parse_scanner({"id": "fuzz", "team_id": 1, "name": "n", "kind": kind})
    assert all(p.path == "rule" or p.path.startswith("rule.") for p in raised.value.problems), str(raised.value)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"counters": {"event_count": {"gte": 10**400}}}, "filter.counters.event_count.gte"),
        ({"min_duration_seconds": 2**1024}, "filter.min_duration_seconds"),
        ({"max_duration_seconds": 1.5e308}, "filter.max_duration_seconds"),
        ({"events": [{"event": "e", "properties": [{"key": "k", "op": "exact", "value": -(10**400)}]}]},
         "filter.events[0].properties[0].value"),
    ],
    ids=["counter", "duration", "float", "exact"],
)  # fmt: skip
def test_a_number_beyond_float_range_is_refused_at_load(spec, path):
    with pytest.raises(ScannerError) as raised:
        parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": spec})
    assert [(p.path, p.message) for p in raised.value.problems] == [(path, "Input should be between -1e308 and 1e308")]
    with pytest.raises(ScannerError, match="between -1e308 and 1e308"):
        compile_filter(spec)


def test_the_largest_numbers_still_compile():
    spec = {"counters": {"event_count": {"lte": 10**308}}, "max_duration_seconds": 10**308,
            "events": [{"event": "e", "properties": [{"key": "k", "op": "exact", "value": -(10**308)}]}]}  # fmt: skip
    scanner = parse_scanner({"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": spec})
    check_valid(scanner)


NUL_DOCS = {
    "name": ({"name": "a\x00b"}, "name"),
    "event": ({"filter": {"events": [{"event": "a\x00b"}]}}, "filter.events[0].event"),
    "key": ({"filter": {"events": [{"event": "e", "properties": [{"key": "\x00", "op": "is_set"}]}]}},
            "filter.events[0].properties[0].key"),
    "distinct_id": ({"filter": {"distinct_ids": ["ok", "a\x00b"]}}, "filter.distinct_ids[1]"),
    "property_value": ({"filter": {"events": [{"event": "e", "properties": [{"key": "k", "op": "exact", "value": "a\x00b"}]}]}},
                       "filter.events[0].properties[0].value"),
    "icontains": ({"filter": {"events": [{"event": "e", "properties": [{"key": "k", "op": "icontains", "value": "\x00"}]}]}},
                  "filter.events[0].properties[0].value"),
    "regex": ({"filter": {"events": [{"event": "e", "properties": [{"key": "k", "op": "regex", "value": "a\x00"}]}]}},
              "filter.events[0].properties[0].value"),
    "score": ({"kind": "threshold", "rule": {"score": "event_count\x00", "flag_at": 1}}, "rule.score"),
    "surrogate": ({"name": "a\ud800b"}, "name"),  # refused by pydantic's own str check
    "surrogate_value": ({"filter": {"events": [{"event": "e", "properties": [{"key": "k", "op": "icontains", "value": "\ud800"}]}]}},
                        "filter.events[0].properties[0].value"),
}  # fmt: skip


@pytest.mark.parametrize("field", NUL_DOCS)
def test_text_postgres_cannot_store_is_refused_at_load(postgres_resource, field):
    from session_assets.scanners import store

    changes, path = NUL_DOCS[field]
    doc: dict[str, Any] = {"id": "fuzz", "team_id": 1, "name": "fuzz", "kind": "match", "filter": {},
                           "start_at": "2024-01-01T00:00:00Z", **changes}  # fmt: skip
    with pytest.raises(ScannerError) as raised:
        parse_scanner(doc)
    assert [p.path for p in raised.value.problems] == [path]
    assert any(word in str(raised.value) for word in ("NUL (\\x00)", "surrogate", "unicode string"))
    # The same scanner without the NUL is stored and read back as it was.
    clean = json.loads(json.dumps(doc).replace("\\u0000", " ").replace("\\ud800", " "))
    scanner = parse_scanner(clean)
    store.save(postgres_resource.pool(), scanner)
    assert store.get(postgres_resource.pool(), "fuzz").valid() == scanner


@pytest.mark.parametrize(
    "start_at",
    ["0001-01-01T05:00:00Z", "0001-01-01T00:00:00+05:00", "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z",
     "9999-12-31T23:00:00-05:00"],
)  # fmt: skip
def test_a_start_at_out_of_range_is_refused_at_load(start_at):
    with pytest.raises(ScannerError) as raised:
        parse_scanner({"id": "fuzz", "team_id": 1, "name": "n", "kind": "match", "start_at": start_at})
    (problem,) = raised.value.problems
    assert problem.path == "start_at" and "from 1970-01-01T00:00:00Z up to (not including) 2200-01-01" in problem.message


@pytest.mark.parametrize("start_at", ["1970-01-01T00:00:00Z", "2199-12-31T23:59:59.999999Z"])
def test_the_extreme_start_ats_give_a_sweep_window(start_at):
    from datetime import date, datetime

    from session_assets.core import watermarks

    scanner = parse_scanner({"id": "fuzz", "team_id": 1, "name": "n", "kind": "match", "start_at": start_at})
    # What scanner_observations computes before it touches a store: its first window.
    day, as_of = date(2024, 3, 1), datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    for backfill in (False, True):
        start = watermarks.starting_point(day, scanner.start_at, None, None, backfill=backfill)
        bounds = watermarks.window(start.watermark, scanner.start_at)
        bounds.params(watermarks.frontier(day, watermarks.seen_until(as_of, as_of)))
        assert bounds.read_days(as_of)  # a start in 2199 reads from its lookback: nothing to find
