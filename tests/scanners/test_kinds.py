"""Built-in kinds at their boundaries, the score-expression whitelist, and plugin registration."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator, Mapping, Sequence

import pytest
from pydantic import BaseModel, ConfigDict, StrictInt

from session_assets.scanners import (
    COUNTER_COLUMNS,
    KINDS,
    ScannerError,
    SessionSummary,
    Verdict,
    get_kind,
    parse_scanner,
    register_kind,
)

START = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def summary(duration_s: float = 120.0, entry_url: str = "https://shop.example/", **counters: Any) -> SessionSummary:
    values: dict[str, Any] = {name: 0 for name in COUNTER_COLUMNS if name != "duration_s"}
    values["cost_usd"] = Decimal("0")
    values.update(counters)
    return SessionSummary(
        team_id=1,
        session_id="s-1",
        distinct_id="user-1",
        start=START,
        end=START + timedelta(seconds=duration_s),
        duration_s=duration_s,
        counters=values,
        entry_url=entry_url,
    )


def scanner(kind: str, rule: Mapping[str, Any]):
    return parse_scanner({"id": "k", "team_id": 1, "name": "kind test", "kind": kind, "rule": dict(rule)})


def rule_error(kind: str, rule: Mapping[str, Any]) -> str:
    with pytest.raises(ScannerError) as raised:
        scanner(kind, rule)
    return str(raised.value)


# --- match -----------------------------------------------------------------


def test_match_reports_non_zero_counters_duration_and_entry_url():
    verdict = scanner("match", {}).apply(
        summary(duration_s=95.5, event_count=7, exception_count=2, cost_usd=Decimal("0.250000000000"))
    )
    assert verdict == Verdict(
        "match",
        None,
        {
            "event_count": 7,
            "exception_count": 2,
            "cost_usd": "0.25",
            "duration_s": 95.5,
            "entry_url": "https://shop.example/",
        },
    )
    json.dumps(verdict.evidence)


def test_match_takes_no_rule():
    message = rule_error("match", {"flag_at": 1})
    assert "rule.flag_at: unknown key" in message


# --- threshold -------------------------------------------------------------


@pytest.mark.parametrize(
    ("exceptions", "rageclicks", "expected"),
    [(1, 1, "flagged"), (1, 0, "ok"), (0, 2, "ok"), (0, 3, "flagged"), (5, 0, "flagged")],
)
def test_threshold_flags_at_exactly_flag_at(exceptions, rageclicks, expected):
    rule = {"score": "exception_count * 2 + rageclick_count", "flag_at": 3}
    verdict = scanner("threshold", rule).apply(summary(exception_count=exceptions, rageclick_count=rageclicks))
    assert verdict.verdict == expected
    assert verdict.score == float(exceptions * 2 + rageclicks)
    assert verdict.evidence["score_expression"] == rule["score"]
    assert verdict.evidence["inputs"] == {"exception_count": exceptions, "rageclick_count": rageclicks}


def test_threshold_float_boundary():
    verdict = scanner("threshold", {"score": "cost_usd * 10", "flag_at": 2.5}).apply(
        summary(cost_usd=Decimal("0.25"))
    )
    assert (verdict.verdict, verdict.score) == ("flagged", 2.5)
    assert verdict.evidence["inputs"] == {"cost_usd": "0.25"}


def test_threshold_functions_unary_minus_parentheses_and_duration():
    rule = {"score": "max(abs(-rageclick_count), 2) * (duration_s / 60) - min(1.5, pageview_count) + +1", "flag_at": 0}
    verdict = scanner("threshold", rule).apply(summary(duration_s=120, rageclick_count=4, pageview_count=1))
    assert verdict.score == 4 * 2 - 1 + 1
    assert verdict.evidence["inputs"] == {"rageclick_count": 4, "duration_s": 120, "pageview_count": 1}


def test_division_by_zero_scores_that_division_as_zero():
    lone = scanner("threshold", {"score": "exception_count / pageview_count", "flag_at": 1})
    verdict = lone.apply(summary(exception_count=3, pageview_count=0))
    assert (verdict.verdict, verdict.score) == ("ok", 0.0)
    assert verdict.evidence["division_by_zero"] is True
    mixed = scanner("threshold", {"score": "exception_count * 10 + rageclick_count / pageview_count", "flag_at": 1})
    assert mixed.apply(summary(exception_count=3, rageclick_count=5)).score == 30.0
    assert "division_by_zero" not in lone.apply(summary(exception_count=3, pageview_count=2)).evidence


def test_overflowing_scores_are_clamped_not_infinite():
    verdict = scanner("threshold", {"score": "1e300 * 1e300 * input_tokens", "flag_at": 1}).apply(
        summary(input_tokens=1)
    )
    assert verdict.verdict == "flagged"
    assert verdict.evidence["clamped"] is True
    json.dumps(verdict.score)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "exception_count.real",
        "(lambda: 1)()",
        "[x for x in (1, 2)]",
        "sum(x for x in (1, 2))",
        "{x: 1 for x in (1,)}",
        "event_count[0]",
        "'abc'",
        "b'abc'",
        "f'{event_count}'",
        "2 ** 3",
        "9 ** 9 ** 9",
        "event_count % 2",
        "event_count // 2",
        "event_count << 2",
        "~event_count",
        "not event_count",
        "event_count < 3",
        "event_count and 1",
        "1 if event_count else 2",
        "(x := 1)",
        "unknown_counter + 1",
        "min",
        "open('/etc/passwd')",
        "min(event_count)",
        "max(event_count, key=abs)",
        "abs(1, 2)",
        "True",
        "None",
        "1j",
        "[1, 2]",
        "(1, 2)",
        "1e999",
        "",
        "   ",
        "1 +",
        "event_count; 1",
        "abs(" * 70 + "1" + ")" * 70,
        "-" * 70 + "1",
        "1 + " * 130 + "1",
    ],
)
def test_expression_whitelist_rejects(expression):
    message = rule_error("threshold", {"score": expression, "flag_at": 1})
    assert "rule.score: " in message
    assert "not allowed" in message or "unknown name" in message or "syntax" in message or "takes" in message \
        or "too large" in message or "empty" in message or "nests" in message or "characters" in message


def test_unknown_names_are_named():
    message = rule_error("threshold", {"score": "exception_count + crashes", "flag_at": 1})
    assert "rule.score: unknown name 'crashes'" in message
    assert "got 'exception_count + crashes'" in message


def test_power_is_refused_outright():
    assert "'**' is not allowed" in rule_error("threshold", {"score": "event_count ** 2", "flag_at": 1})


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"flag_at": 1}, "rule.score: required field is missing"),
        ({"score": "event_count"}, "rule.flag_at: required field is missing"),
        ({"score": "event_count", "flag_at": "3"}, "rule.flag_at: Input should be a valid number, got '3'"),
        ({"score": "event_count", "flag_at": True}, "rule.flag_at: Input should be a valid number, got True"),
        ({"score": 5, "flag_at": 1}, "rule.score: Input should be a valid string, got 5"),
        ({"score": "event_count", "flag_at": 1, "extra": 1}, "rule.extra: unknown key (allowed: flag_at, score)"),
    ],
)
def test_threshold_rule_errors(rule, path):
    assert path in rule_error("threshold", rule)


# --- ai_cost ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "expected"),
    [(Decimal("0.5"), "ok"), (Decimal("0.500000000000"), "ok"), (Decimal("0.500000000001"), "over_limit"),
     (Decimal("0.499999999999"), "ok")],
)
def test_ai_cost_exactly_at_the_limit_is_ok(cost, expected):
    verdict = scanner("ai_cost", {"max_cost_usd": 0.5}).apply(summary(cost_usd=cost, ai_generation_count=2))
    assert verdict.verdict == expected
    assert verdict.score == float(cost)
    assert verdict.evidence["cost_usd"] == format(cost.normalize(), "f")
    assert verdict.evidence["tripped"] == (["max_cost_usd"] if expected == "over_limit" else [])
    json.dumps(verdict.evidence)


def test_ai_cost_limit_compares_as_the_decimal_written():
    # 0.1 as a float is 0.1000000000000000055...; the limit is the 0.1 the YAML says.
    assert scanner("ai_cost", {"max_cost_usd": 0.1}).apply(summary(cost_usd=Decimal("0.1"))).verdict == "ok"


@pytest.mark.parametrize(("tokens_in", "tokens_out", "expected"), [(600, 400, "ok"), (600, 401, "over_limit")])
def test_ai_cost_token_limit(tokens_in, tokens_out, expected):
    verdict = scanner("ai_cost", {"max_total_tokens": 1000}).apply(
        summary(input_tokens=tokens_in, output_tokens=tokens_out)
    )
    assert verdict.verdict == expected
    assert verdict.evidence["total_tokens"] == tokens_in + tokens_out
    assert verdict.evidence["max_cost_usd"] is None


def test_ai_cost_reports_every_limit_tripped():
    verdict = scanner("ai_cost", {"max_cost_usd": 1, "max_total_tokens": 10}).apply(
        summary(cost_usd=Decimal("1.5"), input_tokens=11)
    )
    assert verdict.verdict == "over_limit"
    assert verdict.evidence["tripped"] == ["max_cost_usd", "max_total_tokens"]
    assert verdict.evidence["max_cost_usd"] == "1"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({}, "rule: set max_cost_usd, max_total_tokens or both"),
        ({"max_cost_usd": -1}, "rule.max_cost_usd: Input should be greater than or equal to 0, got -1"),
        ({"max_cost_usd": "1"}, "rule.max_cost_usd: Input should be a valid number, got '1'"),
        ({"max_total_tokens": 1.5}, "rule.max_total_tokens: Input should be a valid integer, got 1.5"),
        ({"max_total_tokens": -1}, "rule.max_total_tokens: Input should be greater than or equal to 0, got -1"),
        ({"max_total_tokens": True}, "rule.max_total_tokens: Input should be a valid integer, got True"),
        ({"max_tokens": 5}, "rule.max_tokens: unknown key (allowed: max_cost_usd, max_total_tokens)"),
    ],
)
def test_ai_cost_rule_errors(rule, expected):
    assert expected in rule_error("ai_cost", rule)


# --- the plugin interface --------------------------------------------------


class LongSessionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_seconds: StrictInt


class LongSessionKind:
    name = "long_session"
    rule_model = LongSessionRule
    needs_events = False

    def apply(self, summary: SessionSummary, events: Sequence[Mapping[str, Any]] | None, rule: BaseModel) -> Verdict:
        assert isinstance(rule, LongSessionRule) and events is None
        long = summary.duration_s >= rule.min_seconds
        return Verdict("long" if long else "ok", summary.duration_s, {"min_seconds": rule.min_seconds})


@pytest.fixture
def long_session_kind() -> Iterator[LongSessionKind]:
    kind = LongSessionKind()
    register_kind(kind)
    yield kind
    KINDS.pop(kind.name, None)


def test_a_registered_kind_validates_rules_and_applies(long_session_kind):
    assert get_kind("long_session") is long_session_kind
    loaded = scanner("long_session", {"min_seconds": 60})
    assert loaded.parsed_rule == LongSessionRule(min_seconds=60)
    assert loaded.apply(summary(duration_s=61)) == Verdict("long", 61.0, {"min_seconds": 60})
    assert "rule.min_seconds: Input should be a valid integer, got 'a minute'" in rule_error(
        "long_session", {"min_seconds": "a minute"}
    )
    assert "rule.max_seconds: unknown key (allowed: min_seconds)" in rule_error(
        "long_session", {"min_seconds": 1, "max_seconds": 2}
    )


def test_unknown_kinds_list_the_known_ones(long_session_kind):
    with pytest.raises(ScannerError, match=r"unknown kind 'nope' \(known kinds: ai_cost, long_session, match, threshold\)"):
        get_kind("nope")
    message = rule_error("nope", {})
    assert "kind: unknown kind (known kinds: ai_cost, long_session, match, threshold), got 'nope'" in message


def test_registration_refuses_shadowing_and_bad_plugins(long_session_kind):
    with pytest.raises(ValueError, match="already registered"):
        register_kind(LongSessionKind())
    replacement = LongSessionKind()
    assert register_kind(replacement, replace=True) is replacement

    class NoModel:
        name = "broken"
        rule_model = dict
        needs_events = False

        def apply(self, summary, events, rule):  # pragma: no cover - never registered
            raise AssertionError

    with pytest.raises(ValueError, match="rule_model"):
        register_kind(NoModel())  # type: ignore[arg-type]
    bad_name = LongSessionKind()
    bad_name.name = "Bad Name"
    with pytest.raises(ValueError, match="kind name"):
        register_kind(bad_name)
    assert "broken" not in KINDS and "Bad Name" not in KINDS


def test_builtins_need_no_events():
    assert {name: KINDS[name].needs_events for name in ("match", "threshold", "ai_cost")} == {
        "match": False,
        "threshold": False,
        "ai_cost": False,
    }


def test_session_summary_requires_every_counter_and_keeps_cost_exact():
    with pytest.raises(ValueError, match="counters missing exception_count"):
        SessionSummary(1, "s", "u", START, START, 0.0, {n: 0 for n in COUNTER_COLUMNS if n != "exception_count"}, "")
    loose = summary(cost_usd=0.1)
    assert loose.counters["cost_usd"] == Decimal("0.1")
    with pytest.raises(TypeError):
        loose.counters["event_count"] = 5  # type: ignore[index]
