"""`ScannerError`: one readable message per bad scanner definition.

Every problem names where it came from (file, list index, scanner id), the
dotted field path (`filter.events[0].properties[1].op`) and the bad value, so
an analyst can fix a YAML file without reading a traceback.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

_NO_VALUE: Any = object()
_MAX_SHOWN = 120  # long regexes or expressions are cut so the message stays one line
_BIG_INT_BITS = 1000  # about 300 digits: shown by size (repr refuses over 4300 digits)
# Characters str.splitlines() breaks at; repr() escapes them, a raw path or message must too.
_LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode("ascii") for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def show_value(value: Any) -> str:
    """`repr` of a bad value, cut to a readable length.

    The text is built only as far as it is shown, so a value that is huge once
    expanded (a YAML alias bomb: nine references to nine references to ...) costs
    no more than a small one.
    """
    text = _bounded_repr(value, _MAX_SHOWN + 1)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 5] + "...'"


def one_line(text: str) -> str:
    """`text` with its line breaks escaped (`\\n`), so a problem never spans lines."""
    return text.translate(_LINE_BREAKS)


def _bounded_repr(value: Any, limit: int) -> str:
    """The first `limit` or more characters of `repr(value)`, in work proportional to `limit`."""
    out: list[str] = []
    written = 0

    def emit(text: str) -> None:
        nonlocal written
        out.append(text)
        written += len(text)

    def walk(item: Any, active: set[int]) -> None:
        if written > limit:
            return
        kind = type(item)
        if kind is str or kind is bytes:
            emit(repr(item if len(item) <= 4 * limit else item[: 4 * limit]))
        elif kind is int:
            if item.bit_length() > _BIG_INT_BITS:
                sign = "a negative" if item < 0 else "an"
                emit(f"<{sign} integer of about {int(item.bit_length() * 0.30103) + 1} digits>")
            else:
                emit(repr(item))
        elif kind in (list, tuple, dict, set, frozenset):
            if id(item) in active:  # a structure that contains itself, as repr shows it
                emit("[...]" if kind is list else "{...}" if kind in (dict, set) else "(...)")
                return
            if not item:
                emit(repr(item))
                return
            opening, closing = {list: ("[", "]"), tuple: ("(", ")"), dict: ("{", "}"), set: ("{", "}"),
                                frozenset: ("frozenset({", "})")}[kind]  # fmt: skip
            active.add(id(item))
            emit(opening)
            for index, child in enumerate(item.items() if kind is dict else item):
                if written > limit:
                    break
                if index:
                    emit(", ")
                if kind is dict:
                    walk(child[0], active)
                    emit(": ")
                    walk(child[1], active)
                else:
                    walk(child, active)
            else:
                if kind is tuple and len(item) == 1:
                    emit(",")
                emit(closing)
            active.discard(id(item))
        else:
            emit(repr(item))

    walk(value, set())
    return "".join(out)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one scanner."""

    path: str  # dotted field path; "" for the scanner as a whole
    message: str
    value: Any = _NO_VALUE  # the offending input; _NO_VALUE when there is none (missing field)
    source: str = ""  # e.g. "scanner[2] (checkout-errors)"

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_VALUE

    def render(self, *, with_source: bool = True) -> str:
        head = [part for part in (self.source if with_source else "", self.path) if part]
        text = self.message if not self.has_value else f"{self.message}, got {show_value(self.value)}"
        return one_line(": ".join([*head, text]))


class ScannerError(ValueError):
    """A scanner definition (YAML, mapping or stored row) is invalid.

    `str(error)` is one line for one problem, e.g.
    `scanners.yaml: scanner[2] (checkout-errors): filter.counters.exception_count.gte:
    Input should be a valid number, got 'lots'`; for several problems a summary
    line followed by one line per problem. `problems` keeps them structured.
    """

    def __init__(self, problems: str | Problem | Iterable[Problem], *, source: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(problems) or (Problem("", "invalid scanner"),)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return prefix + self.problems[0].render()
        count = len(self.problems)
        scanners = {p.source for p in self.problems}
        if len(scanners) == 1:
            # All about one scanner: name it once in the summary line.
            (label,) = scanners
            first = f"{prefix}{label}: {count} problems" if label else f"{prefix}{count} problems"
            return "\n".join([first, *(f"  {p.render(with_source=False)}" for p in self.problems)])
        first = f"{prefix}{count} problems in {len(scanners)} scanners"
        return "\n".join([first, *(f"  {p.render()}" for p in self.problems)])


def format_path(loc: Sequence[Any]) -> str:
    """('filter', 'events', 0, 'op') -> 'filter.events[0].op'.

    A key that is not printable text (a line break, a control character) is
    shown quoted, `filter['colour\\nred']`, so the path stays on one line.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.isprintable():
            out += f"[{show_value(part)}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from_validation(
    error: ValidationError,
    root: type[BaseModel],
    *,
    sub_models: Mapping[str, type[BaseModel]] | None = None,
    counter_names: Sequence[str] = (),
) -> list[Problem]:
    """Translate pydantic's errors into `Problem`s with our wording.

    `sub_models` maps a top-level field holding a free dict (the scanner's
    `rule`) to the model that validated it, so unknown keys there still get a
    list of the allowed ones.
    """
    problems = []
    for item in error.errors(include_url=False):
        loc = list(item["loc"])
        kind, message, value = item["type"], item["msg"], item.get("input", _NO_VALUE)
        if loc and loc[-1] == "[key]":
            # A mapping key failed its Literal: only counters have constrained keys.
            loc.pop()
            message = f"unknown counter (expected one of: {', '.join(counter_names)})"
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1], sub_models or {})
            message = "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
            value = _NO_VALUE  # the key itself is the last part of the path
        elif kind == "missing":
            message, value = "required field is missing", _NO_VALUE
        elif kind in ("value_required",):
            value = _NO_VALUE
        problems.append(Problem(format_path(loc), message, value))
    return problems


def _allowed_keys(root: type[BaseModel], loc: Sequence[Any], sub_models: Mapping[str, type[BaseModel]]) -> list[str]:
    """Field names of the model found at `loc` under `root`, or [] when unknown."""
    if loc and isinstance(loc[0], str) and loc[0] in sub_models:
        root, loc = sub_models[loc[0]], loc[1:]
    current: Any = root
    for part in loc:
        current = _strip(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            current = field.annotation
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin in (list, tuple, Sequence) and args:
            current = args[0]
        elif origin in (dict, Mapping) and len(args) == 2:
            current = args[1]
        else:
            return []
    current = _strip(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _strip(annotation: Any) -> Any:
    """Unwrap Annotated[...] and Optional[...] down to the one real type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
