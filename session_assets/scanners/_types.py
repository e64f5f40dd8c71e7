"""Field types shared by the scanner model and the built-in kinds."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

# The per-session columns a filter or a rule may name (SPEC §4 `sessions`).
COUNTER_COLUMNS: tuple[str, ...] = (
    "event_count",
    "pageview_count",
    "autocapture_count",
    "rageclick_count",
    "exception_count",
    "ai_generation_count",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "duration_s",
)

CounterName = Literal[COUNTER_COLUMNS]  # type: ignore[valid-type]  # unpacks to Literal["event_count", ...]

# Every model in this package rejects unknown keys and is immutable once loaded.
STRICT = ConfigDict(extra="forbid", frozen=True)


def _number(value: Any) -> int | float:
    """A real number: not a bool (YAML `yes`), not a string ("5"), finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise PydanticCustomError("number_type", "Input should be a valid number")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("number_finite", "Input should be a finite number")
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("number_finite", "Input should be a finite number")
    return value


def _non_negative_number(value: Any) -> int | float:
    value = _number(value)
    if value < 0:
        raise PydanticCustomError("number_negative", "Input should be greater than or equal to 0")
    return value


# int stays int (exact Int64 comparisons), float stays float.
Number = Annotated[int | float, BeforeValidator(_number)]
NonNegativeNumber = Annotated[int | float, BeforeValidator(_non_negative_number)]
