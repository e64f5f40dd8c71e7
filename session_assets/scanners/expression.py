"""Arithmetic score expressions for the `threshold` kind, e.g.
`exception_count * 2 + max(rageclick_count, 1) / pageview_count`.

The text is parsed with `ast.parse(mode="eval")` and checked against a small
node whitelist; it is then evaluated by walking the tree here. Nothing is ever
passed to eval/exec/compile, so an expression can do arithmetic over counter
values and nothing else. `**` is refused outright (a tiny expression like
`9**9**9` would burn CPU for minutes).
"""

from __future__ import annotations

import ast
import math
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping

MAX_LENGTH = 500
MAX_DEPTH = 60  # far beyond any real score; keeps validation and evaluation recursion shallow

_BINARY: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_UNARY: dict[type[ast.unaryop], str] = {ast.USub: "-", ast.UAdd: "+"}
# name -> (min args, max args); min/max need two so they mean what they mean in Python.
FUNCTIONS: dict[str, tuple[int, int]] = {"abs": (1, 1), "min": (2, 32), "max": (2, 32)}
_CALLS: dict[str, Callable[..., float]] = {"abs": abs, "min": min, "max": max}

_FORBIDDEN_LABELS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators",
    ast.IfExp: "conditional expressions",
    ast.NamedExpr: "assignment expressions",
    ast.JoinedStr: "string literals",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.Starred: "starred arguments",
    ast.Await: "await",
    ast.Yield: "yield",
}

_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Pow: "**",
    ast.Mod: "%",
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.Invert: "~",
    ast.Not: "not",
}


class ExpressionError(ValueError):
    """The expression is not allowed; the message says which part and why."""


@dataclass(frozen=True)
class Expression:
    """A validated score expression over counter names."""

    text: str
    # Equal texts are equal expressions (ast nodes only compare by identity).
    tree: ast.expr = field(compare=False)
    names: tuple[str, ...] = field(compare=False)  # the counters it reads, in order of first use

    def evaluate(self, values: Mapping[str, float]) -> EvaluationResult:
        """The score for these counter values.

        A division by zero evaluates to 0 (that division only, so
        `exception_count * 10 + rageclick_count / pageview_count` still scores
        the exceptions of a session without pageviews). A result that overflows
        float is clamped to ±max float; NaN (inf - inf) becomes 0.
        """
        state = _State()
        value = _evaluate(self.tree, values, state)
        finite = math.isfinite(value)
        if not finite:
            value = 0.0 if math.isnan(value) else math.copysign(sys.float_info.max, value)
        return EvaluationResult(value, state.divided_by_zero, not finite)


@dataclass(frozen=True)
class EvaluationResult:
    value: float
    divided_by_zero: bool
    clamped: bool


class _State:
    divided_by_zero = False


@lru_cache(maxsize=1024)
def parse_expression(text: str, allowed_names: tuple[str, ...]) -> Expression:
    """Parse and validate; raises ExpressionError naming the offending part."""
    if not isinstance(text, str):
        raise ExpressionError("the expression must be a string")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    if not text.strip():
        raise ExpressionError("the expression is empty")
    try:
        module = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"syntax error at column {error.offset or 0}: {error.msg}") from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise ExpressionError(f"the expression cannot be parsed: {type(error).__name__}") from None
    names: list[str] = []
    _check(module.body, allowed_names, names, 0)
    return Expression(text=text, tree=module.body, names=tuple(dict.fromkeys(names)))


def _check(node: ast.AST, allowed: tuple[str, ...], names: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ExpressionError(f"the expression nests more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(f"operator {_symbol(node.op)} is not allowed (use + - * /)")
        _check(node.left, allowed, names, depth + 1)
        _check(node.right, allowed, names, depth + 1)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise ExpressionError(f"operator {_symbol(node.op)} is not allowed (use + - * /)")
        _check(node.operand, allowed, names, depth + 1)
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, (str, bytes)):
            raise ExpressionError("string literals are not allowed; only numbers")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"the constant {value!r} is not allowed; only numbers")
        try:
            number = float(value)
        except OverflowError:
            raise ExpressionError("a number in the expression is too large") from None
        if not math.isfinite(number):
            raise ExpressionError("a number in the expression is too large")
    elif isinstance(node, ast.Name):
        if node.id not in allowed:
            raise ExpressionError(
                f"unknown name {node.id!r} (allowed: {', '.join(allowed)}; functions {', '.join(FUNCTIONS)})"
            )
        names.append(node.id)
    elif isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
            shown = func.id if isinstance(func, ast.Name) else ast.unparse(func)[:40]
            raise ExpressionError(f"call to {shown!r} is not allowed (functions: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise ExpressionError(f"{func.id}() takes no keyword arguments")
        low, high = FUNCTIONS[func.id]
        if not low <= len(node.args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(f"{func.id}() takes {wanted} arguments, got {len(node.args)}")
        for arg in node.args:
            _check(arg, allowed, names, depth + 1)
    else:
        label = _FORBIDDEN_LABELS.get(type(node), type(node).__name__)
        raise ExpressionError(f"{label} not allowed in a score expression")


def _symbol(op: ast.AST) -> str:
    return repr(_OPERATOR_SYMBOLS.get(type(op), type(op).__name__))


def _evaluate(node: ast.expr, values: Mapping[str, float], state: _State) -> float:
    # Only the node types _check accepted can reach here.
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(values[node.id])
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values, state)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left, values, state)
        right = _evaluate(node.right, values, state)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            state.divided_by_zero = True
            return 0.0
        return left / right
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return float(_CALLS[node.func.id](*(_evaluate(arg, values, state) for arg in node.args)))
    raise AssertionError(f"unvalidated node {type(node).__name__}")  # pragma: no cover
