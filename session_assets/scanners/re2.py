"""A conservative check that ClickHouse's regex engine (RE2) accepts a pattern.

A property filter with `op: regex` runs as ClickHouse `match()`, which compiles
the pattern with RE2. Python's `re` (which validates it at load) accepts much
that RE2 refuses: possessive and atomic constructs, lookarounds,
backreferences, `\\Z`, `\\u`/`\\U`/`\\N{...}` escapes, the flags `x`, `a`, `u`,
more than 1000 repetitions, `[\\b]`... Such a scanner would load and then fail
every sweep. No RE2 binding is available here, so this module reads the
pattern the way RE2 does and accepts only a subset that RE2 is known to take:

- literals (an escaped ASCII punctuation or space character is a literal, an
  escaped non-ASCII character is refused), `.`, `^`, `$`, `|`, `\\A`, `\\b`,
  `\\B`, `\\d \\D \\s \\S \\w \\W`, `\\a \\f \\n \\r \\t \\v`, `\\xHH`, octal `\\0`,
  `\\0N`, `\\0NN`, `\\NNN`;
- classes `[...]`, `[^...]` with ranges, those escapes and the POSIX classes
  `[:alpha:]`, `[:^alpha:]` ... RE2 knows;
- groups `(...)`, `(?:...)`, `(?P<name>...)` (ASCII names), and the flags
  `i`, `m`, `s` as `(?i)`, `(?i:...)`, `(?i-s:...)`;
- `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` with n, m <= 1000, each optionally lazy
  (`*?`). RE2 also refuses nested counts that multiply to more than 1000
  (`(a{10}){101}`) and programs too large to compile; the latter is estimated
  generously (`MAX_SIZE`) from the size of each piece and its repetitions.

`{,n}` is refused too: Python reads it as `{0,n}`, RE2 as the literal text `{,n}`.
The checker is cross-checked against ClickHouse's real `match()` (a fixed list in
tests/scanners/test_filters.py, generated patterns in tests/scanners/test_fuzz.py):
whatever it accepts must compile there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_REPEAT", "MAX_SIZE", "RE2Refusal", "RegexShape", "check_re2"]

MAX_REPEAT = 1000  # RE2's kMaxRepeat, for one count and for nested counts multiplied
# Estimated program size allowed, in the units of the costs below. For every kind of
# piece measured (literals, ., classes, escapes, groups, case-insensitive or not),
# ClickHouse compiled at least 5 times as many as this admits.
MAX_SIZE = 100_000

_POSIX_CLASSES = frozenset(
    "alnum alpha ascii blank cntrl digit graph lower print punct space upper word xdigit".split()
)
_LITERAL_ESCAPES = frozenset("afnrtv")
# Estimated size of each class escape; the negated ones hold every non-ASCII character.
_CLASS_ESCAPES = {"d": 2, "w": 5, "s": 5, "D": 25, "W": 25, "S": 25}
_ASSERTION_ESCAPES = frozenset("bBA")
_OCTAL = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")
_SUPPORTED_FLAGS = frozenset("ims")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COUNTED = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_COUNTED_NO_MIN = re.compile(r"\{,([0-9]*)\}")

# Costs (see MAX_SIZE). Case-insensitive literals and classes cost more.
_ANY = 20  # . (ClickHouse lets it match a newline too)
_ASCII = 1
_NON_ASCII = 4
_CLASS = 2  # a class itself, plus its parts
_CLASS_ASCII = 1
_CLASS_NON_ASCII = 30  # a character or a range outside ASCII
_CLASS_NEGATED = 25
_POSIX = 5
_POSIX_NEGATED = 25
_GROUP = 2
_ICASE_LITERAL = 4  # (?i)k is [kK\u212a]
_ICASE_CLASS = 2


class RE2Refusal(ValueError):
    """RE2 would (or might) refuse the pattern; the message says what it holds that RE2 does not take."""


@dataclass(frozen=True)
class RegexShape:
    """What a pattern RE2 accepts costs to run, roughly (the caller bounds it).

    `largest_count`: the largest counted repetition ({n}, {n,m}, {n,}: m, else n), nested
    counts multiplied; 1 if none. `wildcards`: how many `.`, classes `[...]` and class
    escapes (\\d \\w \\s ...) the pattern holds once its counts are expanded (the branches
    of an alternation added up). RE2's DFA for `(?s).{1000}z` or a thousand dots outgrows its
    memory and falls back to a search that takes seconds per MB.
    """

    largest_count: int
    wildcards: int


def check_re2(pattern: str) -> RegexShape:
    """Raise RE2Refusal unless `pattern` is in the subset RE2 is known to accept; else its shape.

    Run it on patterns Python's `re.compile` already accepted: it reports RE2's
    problems, not every Python syntax error.
    """
    checker = _Checker(pattern)
    checker.run()
    return RegexShape(largest_count=checker.largest_count, wildcards=checker.stack[0].wild)


class _Frame:
    """One group being read: the size of what it holds so far and its deepest repetition."""

    __slots__ = ("size", "product", "wild", "last", "capture")

    def __init__(self, capture: bool) -> None:
        self.size = 0
        self.product = 1  # largest product of nested counts inside
        self.wild = 0  # wildcards inside, counts expanded (RegexShape.wildcards)
        # (size, product, wildcards) of the last piece, until a quantifier
        self.last: tuple[int, int, int] | None = None
        self.capture = capture

    def commit(self) -> None:
        if self.last is not None:
            self.size += self.last[0]
            self.product = max(self.product, self.last[1])
            self.wild += self.last[2]
            self.last = None


class _Checker:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.icase = _icase(pattern)
        self.stack = [_Frame(capture=False)]
        self.largest_count = 1

    # -- helpers -------------------------------------------------------------

    def refuse(self, what: str) -> RE2Refusal:
        return RE2Refusal(f"ClickHouse regexes (RE2) do not support {what}")

    def peek(self, offset: int = 0) -> str:
        index = self.i + offset
        return self.p[index] if index < len(self.p) else ""

    def piece(self, size: int, icase_factor: int = 1, *, wildcard: bool = False) -> None:
        frame = self.stack[-1]
        frame.commit()
        frame.last = (size * (icase_factor if self.icase else 1), 1, int(wildcard))

    # -- the pattern ---------------------------------------------------------

    def run(self) -> None:
        p = self.p
        while self.i < len(p):
            c = p[self.i]
            if c == "\\":
                self.escape_outside()
            elif c == "[":
                self.char_class()
            elif c == "(":
                self.open_group()
            elif c == ")":
                self.close_group()
            elif c == "|":
                frame = self.stack[-1]
                frame.commit()
                frame.size += 1
                self.i += 1
            elif c in "*+?":
                self.quantifier(self.i + 1, None)
            elif c == "{":
                counted = _COUNTED.match(p, self.i)
                if counted:
                    low = int(counted.group(1))
                    high = low if counted.group(2) is None else (int(counted.group(3)) if counted.group(3) else None)
                    self.quantifier(counted.end(), (low, high))
                elif _COUNTED_NO_MIN.match(p, self.i):
                    raise self.refuse("'{,n}' (Python reads it as {0,n}, RE2 as literal text): write {0,n}")
                else:
                    self.piece(_ASCII, _ICASE_LITERAL)
                    self.i += 1
            elif c == ".":
                self.piece(_ANY, wildcard=True)
                self.i += 1
            elif c in "^$":
                self.piece(_ASCII)
                self.i += 1
            else:
                self.piece(_ASCII if c.isascii() else _NON_ASCII, _ICASE_LITERAL)
                self.i += 1
        if len(self.stack) != 1:
            raise self.refuse("an unclosed group")
        frame = self.stack[0]
        frame.commit()
        if frame.size > MAX_SIZE:
            raise RE2Refusal(
                "ClickHouse regexes (RE2) cannot compile a pattern this large once its repetitions are "
                f"expanded (estimated size {frame.size}, at most {MAX_SIZE}): use fewer or smaller counts"
            )

    def quantifier(self, end: int, counts: tuple[int, int | None] | None) -> None:
        frame = self.stack[-1]
        if frame.last is None:
            raise self.refuse("a repetition with nothing to repeat")
        size, product, wild = frame.last
        if counts is None:
            size += 1  # *, + and ? add a branch
        else:
            low, high = counts
            for count in (low, high):
                if count is not None and count > MAX_REPEAT:
                    raise self.refuse(f"more than {MAX_REPEAT} repetitions ({self.p[self.i:end]})")
            # RE2 divides 1000 by each nested count (the maximum, or the minimum when unbounded).
            count = high if high is not None else low
            if count > 0:
                product *= count
                if product > MAX_REPEAT:
                    raise self.refuse(
                        f"nested repetitions that multiply to more than {MAX_REPEAT} ({self.p[self.i:end]})"
                    )
                self.largest_count = max(self.largest_count, product)
            # n copies, then a branch per optional copy (x{2,4} is xx(?:x(?:x)?)?), or a star.
            size = (size + 1) * (max(count, 1) + 1)
            wild *= max(count, 1)
        self.i = end
        if self.peek() == "?":
            self.i += 1  # lazy
        following = self.peek()
        if following == "+":
            raise self.refuse("possessive quantifiers (a++, a*+, a?+, a{n}+)")
        counted_next = following == "{" and (_COUNTED.match(self.p, self.i) or _COUNTED_NO_MIN.match(self.p, self.i))
        if following in ("*", "?") or counted_next:
            raise self.refuse("a repetition of a repetition")
        frame.last = (size, product, wild)  # repeatable no more: the next piece commits it

    def open_group(self) -> None:
        p, start = self.p, self.i
        if self.peek(1) != "?":
            self.i += 1
            self.stack.append(_Frame(capture=True))
            return
        rest = p[start + 2 : start + 4]
        if rest.startswith(":"):
            self.i += 3
            self.stack.append(_Frame(capture=False))
            return
        if rest.startswith("P<"):
            close = p.find(">", start + 4)
            name = p[start + 4 : close] if close >= 0 else ""
            if close < 0 or not _NAME.fullmatch(name):
                raise self.refuse(f"the group name {name!r}: use ASCII letters, digits and _")
            self.i = close + 1
            self.stack.append(_Frame(capture=True))
            return
        for prefix, what in (
            ("P=", "named backreferences"),
            ("P>", "recursion"),
            ("=", "lookahead"),
            ("!", "negative lookahead"),
            ("<=", "lookbehind"),
            ("<!", "negative lookbehind"),
            (">", "atomic groups"),
            ("(", "conditionals"),
            ("#", "comments"),
        ):
            if rest.startswith(prefix):
                raise self.refuse(what)
        j = start + 2
        while j < len(p) and (p[j].isascii() and p[j].isalpha() or p[j] == "-"):
            if p[j] != "-" and p[j] not in _SUPPORTED_FLAGS:
                raise self.refuse(f"the inline flag {p[j]!r} (only i, m and s)")
            j += 1
        if j == start + 2 or j >= len(p) or p[j] not in ":)":
            raise self.refuse(f"the group syntax {p[start:j + 1]!r}")
        self.i = j + 1
        if p[j] == ":":
            self.stack.append(_Frame(capture=False))
        else:
            self.stack[-1].commit()  # (?i) sets flags: it is not a piece to repeat

    def close_group(self) -> None:
        if len(self.stack) == 1:
            raise self.refuse("an unopened ')'")
        frame = self.stack.pop()
        frame.commit()
        self.i += 1
        parent = self.stack[-1]
        parent.commit()
        parent.last = (frame.size + (_GROUP if frame.capture else 0), frame.product, frame.wild)

    # -- escapes ---------------------------------------------------------------

    def escape_outside(self) -> None:
        c = self.peek(1)
        if c in _CLASS_ESCAPES:
            self.piece(_CLASS_ESCAPES[c], _ICASE_CLASS, wildcard=True)
            self.i += 2
        elif c in _ASSERTION_ESCAPES:
            self.piece(_ASCII)
            self.i += 2
        else:
            char_size = self.escape_char(in_class=False)
            self.piece(char_size, _ICASE_LITERAL)

    def escape_char(self, *, in_class: bool) -> int:
        """Read an escape that stands for one character; its cost (ASCII or not)."""
        p, start = self.p, self.i
        c = self.peek(1)
        if c == "":
            raise self.refuse("a trailing backslash")
        if c.isascii() and not c.isalnum():
            self.i += 2  # \. \- \\ \_ \  ...: the character itself
            return _ASCII
        if c in _LITERAL_ESCAPES:
            self.i += 2
            return _ASCII
        if c == "x":
            if len(p) < start + 4 or p[start + 2] not in _HEX or p[start + 3] not in _HEX:
                raise self.refuse("\\x without two hex digits")
            self.i += 4
            return _ASCII if int(p[start + 2 : start + 4], 16) < 0x80 else _NON_ASCII
        if c == "0":
            j = start + 2
            while j < start + 4 and j < len(p) and p[j] in _OCTAL:
                j += 1
            self.i = j
            return _ASCII if int(p[start + 1 : j], 8) < 0x80 else _NON_ASCII
        if c in "123" and len(p) >= start + 4 and p[start + 2] in _OCTAL and p[start + 3] in _OCTAL:
            self.i += 4  # \123: octal (Python reads \12 as a backreference, RE2 as octal)
            return _ASCII if int(p[start + 1 : start + 4], 8) < 0x80 else _NON_ASCII
        if c.isdigit():
            raise self.refuse(f"backreferences (\\{c})")
        if in_class and c == "b":
            raise self.refuse("\\b inside [...] (for a backspace write \\x08)")
        if c == "Z":
            raise self.refuse("\\Z (write $, which in ClickHouse matches only at the very end)")
        if c in "uU":
            raise self.refuse(f"\\{c} escapes (write the character itself)")
        if c == "N":
            raise self.refuse("\\N{...} escapes (write the character itself)")
        if not c.isascii():
            raise self.refuse(f"a backslash before the non-ASCII character {c!r} (write it without one)")
        raise self.refuse(f"the escape \\{c}")

    # -- classes ---------------------------------------------------------------

    def char_class(self) -> None:
        p = self.p
        self.i += 1
        size = _CLASS
        if self.peek() == "^":
            size += _CLASS_NEGATED
            self.i += 1
        first = True
        while True:
            if self.i >= len(p):
                raise self.refuse("an unclosed '['")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and self.peek(1) == ":":
                # RE2 reads "[:" up to the next ":]" as a POSIX class name, wherever that is.
                close = p.find(":]", self.i + 2)
                if close >= 0:
                    name = p[self.i + 2 : close]
                    negated = name.startswith("^")
                    if name.removeprefix("^") not in _POSIX_CLASSES:
                        raise self.refuse(f"the POSIX class [:{name}:]")
                    size += _POSIX_NEGATED if negated else _POSIX
                    self.i = close + 2
                    continue
            if c == "\\" and self.peek(1) in _CLASS_ESCAPES:
                size += _CLASS_ESCAPES[self.peek(1)]
                self.i += 2
                continue
            low_size = self.class_char()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                if self.peek() == "\\" and self.peek(1) in _CLASS_ESCAPES:
                    raise self.refuse("a range ending in a class escape")
                high_size = self.class_char()
                size += max(low_size, high_size)
            else:
                size += low_size
        self.piece(size, _ICASE_CLASS, wildcard=True)

    def class_char(self) -> int:
        c = self.p[self.i]
        if c == "\\":
            escaped = self.escape_char(in_class=True)
            return _CLASS_ASCII if escaped == _ASCII else _CLASS_NON_ASCII
        self.i += 1
        return _CLASS_ASCII if c.isascii() else _CLASS_NON_ASCII


def _icase(pattern: str) -> bool:
    """True when any flag group could turn on `i` (costs are then estimated for case folding)."""
    return re.search(r"\(\?[A-Za-z-]*i", pattern) is not None
