"""Field types shared by the scanner model and the built-in kinds."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, StrictStr
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


# Every number is bound to the SQL as an Int64 or a Float64 (or compared with one):
# an integer beyond float range (a 400-digit `gte`) would overflow the compiler.
MAX_MAGNITUDE = 10**308
_MAX_MAGNITUDE_DECIMAL = Decimal(MAX_MAGNITUDE)
_MAGNITUDE_MESSAGE = "Input should be between -1e308 and 1e308"


def check_magnitude(value: int | float) -> int | float:
    """`value` if it is within +-1e308 (so it converts to a float), else a pydantic error."""
    if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        raise PydanticCustomError("number_range", _MAGNITUDE_MESSAGE)
    return value


def _number(value: Any) -> int | float:
    """A real number: not a bool (YAML `yes`), not a string ("5"), finite, within +-1e308."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise PydanticCustomError("number_type", "Input should be a valid number")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("number_finite", "Input should be a finite number")
        if abs(value) > _MAX_MAGNITUDE_DECIMAL:  # before int(), which could need gigabytes
            raise PydanticCustomError("number_range", _MAGNITUDE_MESSAGE)
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("number_finite", "Input should be a finite number")
    return check_magnitude(value)


def check_text(value: str) -> str:
    """`value` if Postgres can store it (no NUL, no unpaired surrogate), else a pydantic error."""
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "text must not contain NUL (\\x00): Postgres cannot store it")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "text_surrogate", "text must be valid Unicode: it holds an unpaired surrogate (\\ud800-\\udfff)"
            ) from None
    return value


def _non_negative_number(value: Any) -> int | float:
    value = _number(value)
    if value < 0:
        raise PydanticCustomError("number_negative", "Input should be greater than or equal to 0")
    return value


# int stays int (exact Int64 comparisons), float stays float.
Number = Annotated[int | float, BeforeValidator(_number)]
NonNegativeNumber = Annotated[int | float, BeforeValidator(_non_negative_number)]
# Any text a scanner stores: Postgres text and jsonb refuse NUL, UTF-8 refuses lone surrogates.
StoredText = Annotated[StrictStr, AfterValidator(check_text)]
