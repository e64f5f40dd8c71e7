"""Scanner filters compiled to parameterised ClickHouse SQL (SPEC §6 rule 5, §7).

The output is a boolean expression over one row per session (the `sessions`
columns). No user value is ever written into the SQL text: every value,
including event names and property keys, is a server-side parameter
`{f_n:Type}`; counter names and operators are mapped through fixed tables.
So the SQL text depends only on the filter's *shape*, never on its values.

The expression may reference parameters the caller binds:
`{events_db:Identifier}`, `{events_table:Identifier}`, `{team_id:Int64}`,
`{window_start:DateTime64(6, 'UTC')}`, `{window_end:DateTime64(6, 'UTC')}` and
`{seen_until:DateTime64(6, 'UTC')}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Mapping

from pydantic import ValidationError

from session_assets.scanners._types import COUNTER_COLUMNS
from session_assets.scanners.errors import (
    Problem,
    ScannerError,
    problems_from_validation,
)
from session_assets.scanners.model import EventFilter, PropertyFilter, ScannerFilter

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
# SQL text for each whitelisted name: the user's own string is never used.
_COLUMN_SQL: dict[str, str] = {name: name for name in COUNTER_COLUMNS}
_OP_SQL: dict[str, str] = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "="}
_INT64_MAX = 2**63 - 1
_COST_TYPE = "Decimal(38, 12)"
_COST_QUANTUM = Decimal("1e-12")

_EVENTS_SOURCE = (
    "SELECT team_id, `$session_id` FROM {events_db:Identifier}.{events_table:Identifier}"
    " WHERE team_id = {team_id:Int64}"
    " AND timestamp >= {window_start:DateTime64(6, 'UTC')}"
    " AND timestamp <= {window_end:DateTime64(6, 'UTC')}"
    # What the sweep sees: the events inserted up to its rollups' coverage (never past its
    # as-of), the same events its counters hold, so re-running it gives the same result.
    " AND inserted_at <= {seen_until:DateTime64(6, 'UTC')}"
)


@dataclass(frozen=True)
class CompiledFilter:
    """A ClickHouse boolean expression ("1" for an empty filter) and the parameters it introduced."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


class _Binder:
    """Hands out parameter placeholders `{prefix_n:Type}` in order."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, ch_type: str) -> str:
        name = f"{self.prefix}_{len(self.params)}"
        self.params[name] = value
        return "{" + name + ":" + ch_type + "}"


def compile_filter(scanner_filter: ScannerFilter | Mapping[str, Any], *, prefix: str = "f") -> CompiledFilter:
    """Compile a filter (a `ScannerFilter`, or a mapping validated as one) to SQL + parameters.

    Parts are ANDed; parameters are named `{prefix}_0`, `{prefix}_1`, ... so two
    filters compiled with different prefixes can share one query.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"parameter prefix {prefix!r} must be an identifier of at most 32 characters")
    if not isinstance(scanner_filter, ScannerFilter):
        scanner_filter = _validate(scanner_filter)
    binder = _Binder(prefix)
    parts: list[str] = []
    if scanner_filter.min_duration_seconds is not None:
        parts.append(f"duration_s >= {binder.bind(float(scanner_filter.min_duration_seconds), 'Float64')}")
    if scanner_filter.max_duration_seconds is not None:
        parts.append(f"duration_s <= {binder.bind(float(scanner_filter.max_duration_seconds), 'Float64')}")
    # Fixed column order, so the SQL text does not depend on YAML key order.
    for name in COUNTER_COLUMNS:
        ops = scanner_filter.counters.get(name)  # type: ignore[call-overload]
        for op, threshold in ops.comparisons() if ops else ():
            parts.append(f"{_COLUMN_SQL[name]} {_OP_SQL[op]} {_bind_threshold(binder, name, threshold)}")
    for event in scanner_filter.events:
        parts.append(_event_presence(binder, event))
    if scanner_filter.distinct_ids is not None:
        parts.append(f"distinct_id IN {binder.bind(list(scanner_filter.distinct_ids), 'Array(String)')}")
    if not parts:
        return CompiledFilter("1", {})
    return CompiledFilter(" AND ".join(f"({part})" for part in parts), binder.params)


def _validate(mapping: Mapping[str, Any]) -> ScannerFilter:
    try:
        return ScannerFilter.model_validate(mapping)
    except ValidationError as error:
        problems = problems_from_validation(error, ScannerFilter, counter_names=COUNTER_COLUMNS)
        raise ScannerError([Problem(f"filter.{p.path}".rstrip("."), p.message, p.value) for p in problems]) from None


def _bind_threshold(binder: _Binder, name: str, threshold: int | float) -> str:
    if name == "cost_usd":
        # ClickHouse refuses Decimal-vs-Float comparisons; str() keeps 0.1 as 0.1.
        with localcontext() as context:
            context.prec = 60  # room for 26 integer + 12 fractional digits
            return binder.bind(Decimal(str(threshold)).quantize(_COST_QUANTUM), _COST_TYPE)
    if isinstance(threshold, int) and threshold <= _INT64_MAX:
        return binder.bind(threshold, "Int64")
    return binder.bind(float(threshold), "Float64")  # 1.5 exceptions: compare as a float


def _event_presence(binder: _Binder, event: EventFilter) -> str:
    """The session has an event of this name, in the window, whose properties all match."""
    conditions = [_EVENTS_SOURCE, f"event = {binder.bind(event.event, 'String')}"]
    conditions.extend(_property(binder, prop) for prop in event.properties)
    return f"(team_id, session_id) IN ({' AND '.join(conditions)})"


def _property(binder: _Binder, prop: PropertyFilter) -> str:
    key = binder.bind(prop.key, "String")
    value = prop.value
    if prop.op == "is_set":
        return f"JSONHas(properties, {key})"
    if prop.op == "is_not_set":
        return f"NOT JSONHas(properties, {key})"
    if prop.op == "icontains":
        return f"positionCaseInsensitiveUTF8(JSONExtractString(properties, {key}), {binder.bind(value, 'String')}) > 0"
    if prop.op == "regex":
        return f"match(JSONExtractString(properties, {key}), {binder.bind(value, 'String')})"
    # exact: the key must be present, so "" or 0 never matches an absent key.
    if isinstance(value, bool):  # before int: bool is an int in Python
        extract, bound = "JSONExtractBool", binder.bind(value, "Bool")
    elif isinstance(value, (int, float)):
        extract, bound = "JSONExtractFloat", binder.bind(float(value), "Float64")
    else:
        extract, bound = "JSONExtractString", binder.bind(value, "String")
    return f"JSONHas(properties, {key}) AND {extract}(properties, {key}) = {bound}"
