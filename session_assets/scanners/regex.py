"""Whether ClickHouse's `match()` takes a regex, checked by RE2 itself, and what it costs to run.

A property filter with `op: regex` runs as ClickHouse `match()`, which compiles the
pattern with RE2 (ClickHouse's OptimizedRegularExpression: UTF-8, `.` matching a
newline too, no capture groups, RE2's default `max_mem` of 8 MiB). `check_re2`
compiles it the same way with Google's binding (PyPI `google-re2`, imported as
`re2`), so a pattern validates when ClickHouse compiles it, and a refusal quotes
RE2's own message. Python's `re` plays no part: it refuses `\\pL`, `\\z`,
`\\Q...\\E`, `(?U)`, `\\x{41}` that RE2 takes, and takes `a++`, lookarounds and
backreferences that RE2 refuses.

More refusals:
- a program of more than `MAX_PROGRAM_SIZE` instructions. With 8 MiB RE2
  compiles `\\pL{446}` (533,420 instructions), not `\\pL{447}`, here and in
  ClickHouse; a fifth of it leaves room for an RE2 release that compiles to more.
- `{,n}`: RE2 reads it as the literal text `{,n}`, Python as `{0,n}`.
- two constructs ClickHouse misreads. Before it runs RE2, it reads the pattern for
  text every match must hold (OptimizedRegularExpression::analyze), and gets it
  wrong for a group name other than ASCII letters and digits (it takes
  `(?P<name_1>a)b` for text holding `P<name_1>a`) and for a non-ASCII character
  that may be absent (`abé*`, `é?`, `é{0,2}`: it drops only the last byte of `é`
  and then requires the first), so `match('ab', 'abé*')` is 0. `(?:é)*` reads well.

`RegexShape` holds what bounds the run time (model.py bounds it): RE2's DFA outgrows
its memory on many wildcards, which the program size does not show (`(?s).{1000}z`
is 7,005 instructions and takes 17 s a MB in chDB, `\\pL{80}z` 95,685 and 0.2 s).

tests/scanners/test_filters.py (fixed lists) and tests/scanners/test_fuzz.py (generated
patterns) cross-check all of it against ClickHouse's real `match()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import re2  # google-re2 (this module is session_assets.scanners.regex)

from session_assets.scanners.errors import one_line

__all__ = ["MAX_PROGRAM_SIZE", "RE2Refusal", "RegexShape", "check_re2", "compile_like_clickhouse"]

MAX_PROGRAM_SIZE = 100_000
_MAX_QUOTED = 120  # RE2's message quotes the part it refuses, up to the whole pattern

_COUNT = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")
_NO_MIN = re.compile(r"\{,[0-9]*\}")
_FLAGS = re.compile(r"\(\?[A-Za-z-]*\)")  # (?i): no group
_GROUP = re.compile(r"\((?:\?(?:P?<([^>]*)>|[A-Za-z-]*:))?")  # ( (?: (?P<n> (?<n> (?i-s:
_SAFE_NAME = re.compile(r"[0-9A-Za-z]+")  # what ClickHouse's analyzer skips in (?P<name>
_ESCAPE = re.compile(r"\\(?:Q.*?(?:\\E|\Z)|[pPx]\{[^}]*\}|[pP].|x..|.)", re.S)  # one escape, \Q...\E whole
_WILD_ESCAPES = frozenset("dDsSwWpPC")


class RE2Refusal(ValueError):
    """ClickHouse's RE2 refuses the pattern, or ClickHouse, or a Python user, would read it otherwise."""


@dataclass(frozen=True)
class RegexShape:
    """What a pattern RE2 accepts costs to run, roughly (the caller bounds it).

    `largest_count`: the largest counted repetition ({n}, {n,m}, {n,}: m, else n), nested
    counts multiplied; 1 if none. `wildcards`: how many `.`, classes `[...]` and class
    escapes (\\d \\w \\s \\pL \\C ...) the pattern holds once its counts are expanded (the
    branches of an alternation added up). RE2's DFA for `(?s).{1000}z` or a thousand dots
    outgrows its memory and falls back to a search that takes seconds per MB.
    `program_size`: RE2's instructions for it (at most MAX_PROGRAM_SIZE).
    """

    largest_count: int
    wildcards: int
    program_size: int


def compile_like_clickhouse(pattern: str) -> re2._Regexp:
    """`pattern` compiled with the options ClickHouse's match() gives RE2; re2.error if RE2 refuses it."""
    options = re2.Options()  # UTF-8, case-sensitive, 8 MiB: RE2's defaults, as in ClickHouse
    options.dot_nl = True  # OptimizedRegularExpression::RE_DOT_NL
    options.never_capture = True  # RE_NO_CAPTURE
    options.log_errors = False
    return re2.compile(pattern, options)


def check_re2(pattern: str) -> RegexShape:
    """Raise RE2Refusal unless ClickHouse's RE2 compiles `pattern` within MAX_PROGRAM_SIZE and ClickHouse
    reads it as RE2 does (the module's docstring); else its shape."""
    try:
        size = compile_like_clickhouse(pattern).programsize
    except re2.error as error:
        reason = error.args[0] if error.args else ""
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        if len(text) > _MAX_QUOTED:
            text = text[: _MAX_QUOTED - 3] + "..."
        raise RE2Refusal(f"ClickHouse regexes (RE2) refuse it: {one_line(text)}") from None
    if size > MAX_PROGRAM_SIZE:
        raise RE2Refusal(
            f"ClickHouse regexes (RE2) compile it to {size:,} instructions, more than {MAX_PROGRAM_SIZE:,}: "
            "use smaller counts or smaller classes (\\pL alone is 1,200)"
        )
    largest_count, wildcards = _measure(pattern)
    return RegexShape(largest_count=largest_count, wildcards=wildcards, program_size=size)


class _Group:
    """A group being read: wildcards and the largest nested count so far, and its last piece."""

    __slots__ = ("wild", "product", "last")

    def __init__(self) -> None:
        self.wild, self.product = 0, 1
        self.last: tuple[int, int] | None = None  # (wildcards, product) until a repetition

    def piece(self, wild: int, product: int = 1) -> None:
        self.commit()
        self.last = (wild, product)

    def commit(self) -> None:
        if self.last is not None:
            self.wild += self.last[0]
            self.product = max(self.product, self.last[1])
            self.last = None


def _measure(p: str) -> tuple[int, int]:
    """(largest_count, wildcards) of a pattern RE2 compiled, read token by token; RE2Refusal for
    `{,n}` and for what ClickHouse misreads (see the module's docstring)."""
    groups, i = [_Group()], 0
    while i < len(p):
        group, c = groups[-1], p[i]
        if c in "*+?":
            i += 2 if p.startswith("?", i + 1) else 1  # lazy a*?
        elif c == "{" and (counted := _COUNT.match(p, i)):
            low, high = counted.groups()
            count = int(high) if high else int(low)  # {n,}: n
            wild, product = group.last or (0, 1)
            group.last = (wild * max(count, 1), product * count if count else product)
            i = counted.end() + (1 if p.startswith("?", counted.end()) else 0)
        elif c == "{" and (no_min := _NO_MIN.match(p, i)):
            text, count = no_min.group(), "{0" + no_min.group()[1:]
            raise RE2Refusal(
                f"ClickHouse regexes (RE2) read {text} as literal text, not as {count} (as Python does): "
                f"write {count}, or \\{text} for the text"
            )
        elif c == "(" and (flags := _FLAGS.match(p, i)):
            i = flags.end()
        elif c == "(":
            opening = _GROUP.match(p, i)
            assert opening is not None  # it matches "(" at least
            name = opening.group(1)
            if name is not None and not _SAFE_NAME.fullmatch(name):
                raise RE2Refusal(
                    f"ClickHouse regexes: match() misreads the group name {name!r} (it takes ASCII letters and "
                    "digits) and then misses matches: rename it, or write (?:...)"
                )
            groups.append(_Group())
            i = opening.end()
        elif c == ")":
            inner = groups.pop()
            inner.commit()
            groups[-1].piece(inner.wild, inner.product)
            i += 1
        elif c == "|":
            group.commit()  # the branches add up
            i += 1
        elif c == "[":
            group.piece(1)
            i = _class_end(p, i)
        elif c == "\\":
            end = _ESCAPE.match(p, i).end()  # type: ignore[union-attr]  # RE2 refuses a trailing backslash
            if p[i:end] not in ("\\Q", "\\Q\\E"):  # an empty \Q...\E is nothing
                group.piece(1 if p[i + 1] in _WILD_ESCAPES else 0)
            i = end
        else:
            if not c.isascii() and (optional := _optional_repetition(p, i + 1)):
                raise RE2Refusal(
                    f"ClickHouse regexes: match() misreads {c + optional!r} (a non-ASCII character that may be "
                    f"absent) and then misses matches: write (?:{c}){optional}"
                )
            group.piece(1 if c == "." else 0)
            i += 1
    groups[0].commit()
    return groups[0].product, groups[0].wild


def _optional_repetition(p: str, i: int) -> str:
    """The repetition at `i` if it allows zero (*, ?, {0}, {0,n}, {0,}, lazy or not), else ""."""
    counted = _COUNT.match(p, i)
    if p.startswith(("*", "?"), i) or (counted and int(counted.group(1)) == 0):
        end = counted.end() if counted else i + 1
        return p[i : end + (1 if p.startswith("?", end) else 0)]
    return ""


def _class_end(p: str, i: int) -> int:
    """Where the class `[...]` opening at `i` ends: after its `]`."""
    j = i + 1 + (1 if p.startswith("^", i + 1) else 0)
    if p.startswith("]", j):
        j += 1  # []a] and [^]a] hold a ]
    while p[j] != "]":
        close = p.find(":]", j + 2) if p.startswith("[:", j) else -1
        if close >= 0:
            j = close + 2  # RE2 reads [: up to the next :] as a POSIX class, wherever that is
        elif p[j] == "\\":
            j = _ESCAPE.match(p, j).end()  # type: ignore[union-attr]
        else:
            j += 1
    return j + 1
