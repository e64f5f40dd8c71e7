"""Scanner kinds: the verdict half of a scanner, as a small plugin interface.

A kind turns one session's counters (and, if it asks for them, its events)
into a `Verdict`. Its `rule_model` validates the scanner's `rule:` mapping at
load time, so a bad rule never reaches a sweep. Register your own with
`register_kind(MyKind())`; the built-ins are `match`, `threshold` and `ai_cost`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Mapping, Protocol, Sequence

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from session_assets.scanners._types import (
    COUNTER_COLUMNS,
    STRICT,
    NonNegativeNumber,
    Number,
    StoredText,
)
from session_assets.scanners.errors import ScannerError
from session_assets.scanners.expression import (
    Expression,
    ExpressionError,
    parse_expression,
)

# Counters carried in SessionSummary.counters (duration_s is its own field).
SUMMARY_COUNTERS: tuple[str, ...] = tuple(name for name in COUNTER_COLUMNS if name != "duration_s")


@dataclass(frozen=True)
class SessionSummary:
    """One session as a kind sees it: a row of the `sessions` view."""

    team_id: int
    session_id: str
    distinct_id: str
    start: datetime
    end: datetime
    duration_s: float
    counters: Mapping[str, int | Decimal]  # every SUMMARY_COUNTERS name; cost_usd is a Decimal
    entry_url: str

    def __post_init__(self) -> None:
        missing = [name for name in SUMMARY_COUNTERS if name not in self.counters]
        if missing:
            raise ValueError(f"session {self.session_id!r}: counters missing {', '.join(missing)}")
        counters = dict(self.counters)
        cost = counters["cost_usd"]
        if not isinstance(cost, Decimal):
            # Floats go through str so 0.1 stays 0.1, not 0.1000000000000000055...
            counters["cost_usd"] = Decimal(str(cost))
        object.__setattr__(self, "counters", MappingProxyType(counters))


@dataclass(frozen=True)
class Verdict:
    """What a kind concluded about one session."""

    verdict: str  # short label: "match", "flagged", "ok", "over_limit", ...
    score: float | None
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-serializable; Decimals as strings


class ScannerKind(Protocol):
    """The plugin interface. `needs_events=False` means `apply` gets `events=None`."""

    name: str
    rule_model: type[BaseModel]
    needs_events: bool

    def apply(
        self, summary: SessionSummary, events: Sequence[Mapping[str, Any]] | None, rule: BaseModel
    ) -> Verdict: ...


KINDS: dict[str, ScannerKind] = {}
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def register_kind(kind: ScannerKind, *, replace: bool = False) -> ScannerKind:
    """Make `kind` available to scanners as `kind: <kind.name>`; returns it.

    Re-registering a name is an error unless `replace=True`, so two plugins
    cannot silently shadow each other.
    """
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not _KIND_NAME.fullmatch(name):
        raise ValueError(f"kind name {name!r} must match [a-z][a-z0-9_]{{0,63}}")
    rule_model = getattr(kind, "rule_model", None)
    if not (isinstance(rule_model, type) and issubclass(rule_model, BaseModel)):
        raise ValueError(f"kind {name!r}: rule_model must be a pydantic BaseModel subclass, got {rule_model!r}")
    if not isinstance(getattr(kind, "needs_events", None), bool) or not callable(getattr(kind, "apply", None)):
        raise ValueError(f"kind {name!r}: needs a bool needs_events and an apply(summary, events, rule) method")
    if name in KINDS and KINDS[name] is not kind and not replace:
        raise ValueError(f"kind {name!r} is already registered; pass replace=True to override it")
    KINDS[name] = kind
    return kind


def get_kind(name: str) -> ScannerKind:
    """The registered kind called `name`; ScannerError listing the known ones otherwise."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ScannerError(f"unknown kind {name!r} (known kinds: {', '.join(sorted(KINDS))})") from None


def json_number(value: int | float | Decimal) -> int | float | str:
    """Counter value for evidence JSON: Decimals become plain strings ("0.25", never "2.5E-1")."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    return value


def decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def counter_values(summary: SessionSummary) -> dict[str, int | float | Decimal]:
    """Every COUNTER_COLUMNS name -> its value for this session."""
    return {**summary.counters, "duration_s": summary.duration_s}


# --- match -----------------------------------------------------------------


class MatchRule(BaseModel):
    """`match` takes no rule: the filter is the whole scanner."""

    model_config = STRICT


class MatchKind:
    """Every session that passes the filter is a match."""

    name = "match"
    rule_model = MatchRule
    needs_events = False

    def apply(self, summary: SessionSummary, events: Sequence[Mapping[str, Any]] | None, rule: BaseModel) -> Verdict:
        evidence: dict[str, Any] = {k: json_number(v) for k, v in summary.counters.items() if v}
        evidence["duration_s"] = summary.duration_s
        evidence["entry_url"] = summary.entry_url
        return Verdict("match", None, evidence)


# --- threshold -------------------------------------------------------------


class ThresholdRule(BaseModel):
    """`score`: arithmetic over counters (see `expression`); flagged when score >= flag_at."""

    model_config = STRICT

    score: StoredText
    flag_at: Number
    _expression: Expression = PrivateAttr()

    @field_validator("score")
    @classmethod
    def _valid_expression(cls, value: str) -> str:
        try:
            parse_expression(value, COUNTER_COLUMNS)
        except ExpressionError as error:
            raise PydanticCustomError("score_expression", "{reason}", {"reason": str(error)}) from None
        return value

    def model_post_init(self, context: Any) -> None:
        self._expression = parse_expression(self.score, COUNTER_COLUMNS)

    @property
    def expression(self) -> Expression:
        return self._expression


class ThresholdKind:
    """A numeric score per session; "flagged" at or above `flag_at`, else "ok"."""

    name = "threshold"
    rule_model = ThresholdRule
    needs_events = False

    def apply(self, summary: SessionSummary, events: Sequence[Mapping[str, Any]] | None, rule: BaseModel) -> Verdict:
        assert isinstance(rule, ThresholdRule)
        values = counter_values(summary)
        result = rule.expression.evaluate(values)
        evidence: dict[str, Any] = {
            "score_expression": rule.score,
            "inputs": {name: json_number(values[name]) for name in rule.expression.names},
            "flag_at": rule.flag_at,
        }
        if result.divided_by_zero:
            evidence["division_by_zero"] = True
        if result.clamped:
            evidence["clamped"] = True
        return Verdict("flagged" if result.value >= rule.flag_at else "ok", result.value, evidence)


# --- ai_cost ---------------------------------------------------------------


class AiCostRule(BaseModel):
    """Limits per session; at least one. A session exactly at a limit is within it."""

    model_config = STRICT

    max_cost_usd: NonNegativeNumber | None = None
    # Token sums saturate at 2^64 - 1 (UInt64): a larger limit could never trip.
    max_total_tokens: StrictInt | None = Field(default=None, ge=0, le=2**64 - 1)

    @model_validator(mode="after")
    def _at_least_one(self) -> AiCostRule:
        if self.max_cost_usd is None and self.max_total_tokens is None:
            raise PydanticCustomError("limit_required", "set max_cost_usd, max_total_tokens or both")
        return self

    @property
    def cost_limit(self) -> Decimal | None:
        # Through str so a YAML 0.1 compares as exactly 0.1 against the Decimal cost.
        return None if self.max_cost_usd is None else Decimal(str(self.max_cost_usd))


class AiCostKind:
    """"over_limit" when AI cost or tokens exceed the rule's limits, else "ok"; score = cost in USD."""

    name = "ai_cost"
    rule_model = AiCostRule
    needs_events = False

    def apply(self, summary: SessionSummary, events: Sequence[Mapping[str, Any]] | None, rule: BaseModel) -> Verdict:
        assert isinstance(rule, AiCostRule)
        cost = Decimal(summary.counters["cost_usd"])
        input_tokens = int(summary.counters["input_tokens"])
        output_tokens = int(summary.counters["output_tokens"])
        total = input_tokens + output_tokens
        tripped = []
        if rule.cost_limit is not None and cost > rule.cost_limit:
            tripped.append("max_cost_usd")
        if rule.max_total_tokens is not None and total > rule.max_total_tokens:
            tripped.append("max_total_tokens")
        evidence = {
            "cost_usd": decimal_text(cost),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": total,
            "ai_generation_count": int(summary.counters["ai_generation_count"]),
            "max_cost_usd": None if rule.cost_limit is None else decimal_text(rule.cost_limit),
            "max_total_tokens": rule.max_total_tokens,
            "tripped": tripped,
        }
        return Verdict("over_limit" if tripped else "ok", float(cost), evidence)


for _builtin in (MatchKind(), ThresholdKind(), AiCostKind()):
    register_kind(_builtin)
