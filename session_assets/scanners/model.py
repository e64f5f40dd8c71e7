"""Scanner definitions: the pydantic model, YAML loading and stored-row round trips (SPEC §7).

Everything is validated when it is loaded: unknown keys, unknown operators,
unknown counters and kinds, wrong types and bad rules all raise one
`ScannerError` that names the source, the dotted field path and the bad value.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from session_assets.scanners._types import (
    COUNTER_COLUMNS,
    STRICT,
    CounterName,
    NonNegativeNumber,
    check_magnitude,
    check_text,
)
from session_assets.scanners.errors import (
    Problem,
    ScannerError,
    problems_from_validation,
    show_value,
)
from session_assets.scanners.kinds import KINDS, SessionSummary, Verdict, get_kind
from session_assets.scanners.regex import RE2Refusal, check_re2

__all__ = [
    "COUNTER_COLUMNS",
    "CounterOps",
    "EventFilter",
    "PropertyFilter",
    "Scanner",
    "ScannerError",
    "ScannerFilter",
    "load_scanners",
    "parse_scanner",
]

UTC = timezone.utc
ID_PATTERN = re.compile(r"[a-z0-9-]{1,64}")
MAX_REGEX_LENGTH = 1000
# A regex runs over every property value of every candidate event. RE2 takes `(?s).{1000}z`
# or `[^x]{1000}z`, and then needs 38-74 s over 4 MB of values (its DFA outgrows its memory
# and it falls back to a slow search; seconds per MB from about 750 wildcards). So at most
# MAX_REGEX_COUNT for one counted repetition ({n}, {n,m}: n and m; nested counts multiplied),
# and at most MAX_REGEX_WILDCARDS `.`, `[...]` and \d \w \s ... once the counts are expanded
# (a thousand dots, or `.{100}` ten times, cost as much as `.{1000}`). 300 costs 0.03 s a MB.
MAX_REGEX_COUNT = 100
MAX_REGEX_WILDCARDS = 300
MAX_EVENT_FILTERS = 50  # each is a subquery over the events table
MAX_PROPERTY_FILTERS = 50
MAX_COST_THRESHOLD = Decimal(10) ** 26  # cost_usd is Decimal(38, 12): 26 integer digits
# start_at bounds: a sweep's window reaches 74 h before its watermark (which starts at
# start_at), and ClickHouse's DateTime64 holds 1900-01-01 to 2299-12-31.
START_AT_MIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
START_AT_MAX = datetime(2200, 1, 1, tzinfo=timezone.utc)
# A scanner file holding more values than this once its YAML aliases are expanded is refused.
MAX_YAML_VALUES = 1_000_000
MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<`: refused in scanner files (see _UniqueKeyLoader)
# Bookkeeping columns of the Postgres `scanners` table that are not part of a definition.
RECORD_METADATA_COLUMNS = frozenset({"created_at", "updated_at"})

Text200 = Annotated[StrictStr, StringConstraints(min_length=1, max_length=200), AfterValidator(check_text)]
PropertyOp = Literal["exact", "icontains", "regex", "is_set", "is_not_set"]
VALUE_OPS = frozenset({"exact", "icontains", "regex"})


class _Strict(BaseModel):
    model_config = STRICT


class PropertyFilter(_Strict):
    """A predicate on one key of an event's `properties` JSON."""

    key: Text200
    op: PropertyOp
    # Validated against `op` below; validate_default so a missing value is caught too.
    value: Any = Field(default=None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:
            return value  # the op itself is already reported
        if op not in VALUE_OPS:
            if value is not None:
                raise PydanticCustomError("value_forbidden", "no value is allowed for op '{op}'", {"op": op})
            return None
        if value is None:
            raise PydanticCustomError("value_required", "a value is required for op '{op}'", {"op": op})
        if op == "exact":
            if isinstance(value, float) and not math.isfinite(value):
                raise PydanticCustomError("value_type", "exact needs a finite number")
            if not isinstance(value, (str, int, float, bool)):
                raise PydanticCustomError("value_type", "exact needs a string, number or boolean")
            if isinstance(value, str):
                if len(value) > 1000:
                    raise PydanticCustomError("value_length", "a value has at most 1000 characters")
                return check_text(value)
            return value if isinstance(value, bool) else check_magnitude(value)  # compared as a Float64
        if not isinstance(value, str):
            raise PydanticCustomError("value_type", "op '{op}' needs a string value", {"op": op})
        if not value:
            raise PydanticCustomError("value_empty", "an empty value matches everything; use op is_set")
        check_text(value)
        if op == "icontains":
            if len(value) > 1000:
                raise PydanticCustomError("value_length", "a value has at most 1000 characters")
            return value
        return _check_regex(value)


def _check_regex(pattern: str) -> str:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise PydanticCustomError(
            "regex_length", "a regex has at most {limit} characters", {"limit": MAX_REGEX_LENGTH}
        )
    # ClickHouse's match() compiles it with RE2: so does check_re2 (Python's re reads another syntax).
    try:
        shape = check_re2(pattern)
    except RE2Refusal as refusal:
        raise PydanticCustomError("regex_re2", "{reason}", {"reason": str(refusal)}) from None
    if shape.largest_count > MAX_REGEX_COUNT:
        raise PydanticCustomError(
            "regex_count",
            "a regex may repeat a piece at most {limit} times ({n}, {n,m}; nested counts multiplied), "
            "not {count}: ClickHouse's match() would take minutes over large property values",
            {"limit": MAX_REGEX_COUNT, "count": shape.largest_count},
        )
    if shape.wildcards > MAX_REGEX_WILDCARDS:
        raise PydanticCustomError(
            "regex_wildcards",
            "a regex may hold at most {limit} wildcards (., [...], \\d, \\w, \\s ...) once its counts are "
            "expanded, not {count}: ClickHouse's match() would take minutes over large property values",
            {"limit": MAX_REGEX_WILDCARDS, "count": shape.wildcards},
        )
    return pattern


class EventFilter(_Strict):
    """The session has at least one `event` (in the window) whose properties all match."""

    event: Text200
    properties: tuple[PropertyFilter, ...] = Field(default=(), max_length=MAX_PROPERTY_FILTERS)


class CounterOps(_Strict):
    """Comparisons against one counter; every one given must hold."""

    gte: NonNegativeNumber | None = None
    gt: NonNegativeNumber | None = None
    lte: NonNegativeNumber | None = None
    lt: NonNegativeNumber | None = None
    eq: NonNegativeNumber | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> CounterOps:
        if all(getattr(self, op) is None for op in type(self).model_fields):
            raise PydanticCustomError("op_required", "give at least one of gte, gt, lte, lt, eq")
        return self

    def comparisons(self) -> list[tuple[str, int | float]]:
        """(op, threshold) for the ops that are set, in a fixed order."""
        return [(op, value) for op in ("gte", "gt", "lte", "lt", "eq") if (value := getattr(self, op)) is not None]


class ScannerFilter(_Strict):
    """Which sessions a scanner looks at. Every part given must hold; empty matches all."""

    min_duration_seconds: NonNegativeNumber | None = None
    max_duration_seconds: NonNegativeNumber | None = None
    counters: dict[CounterName, CounterOps] = Field(default_factory=dict)
    events: tuple[EventFilter, ...] = Field(default=(), max_length=MAX_EVENT_FILTERS)
    distinct_ids: tuple[Text200, ...] | None = Field(default=None, min_length=1, max_length=1000)

    @field_validator("max_duration_seconds")
    @classmethod
    def _max_not_below_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min_duration_seconds")
        if value is not None and low is not None and value < low:
            raise PydanticCustomError(
                "duration_range", "must be >= min_duration_seconds ({low})", {"low": low}
            )
        return value

    @field_validator("counters")
    @classmethod
    def _cost_fits_decimal(cls, value: dict[str, CounterOps]) -> dict[str, CounterOps]:
        ops = value.get("cost_usd")
        for op, threshold in ops.comparisons() if ops else []:
            if Decimal(str(threshold)) >= MAX_COST_THRESHOLD:
                # Raised as a ValidationError so pydantic keeps the full path.
                raise ValidationError.from_exception_data(
                    "ScannerFilter",
                    [
                        {
                            "type": PydanticCustomError("cost_range", "cost_usd thresholds must be below 1e26"),
                            "loc": ("cost_usd", op),
                            "input": threshold,
                        }
                    ],
                )
        return value


class Scanner(_Strict):
    """A saved session filter plus a verdict rule (SPEC §7)."""

    id: StrictStr
    team_id: StrictInt = Field(gt=0, le=2**63 - 1)
    name: Text200
    enabled: StrictBool = True
    kind: StrictStr  # declared before `rule`, which is validated against it
    filter: ScannerFilter = Field(default_factory=ScannerFilter)
    # validate_default: a missing rule is checked like `rule: {}`, its problems under `rule.`.
    rule: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    sample_rate: NonNegativeNumber = 1.0
    start_at: datetime | None = None

    _parsed_rule: BaseModel = PrivateAttr()

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not ID_PATTERN.fullmatch(value):
            raise PydanticCustomError("scanner_id", "must be 1 to 64 of a-z, 0-9 and '-'")
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise PydanticCustomError("unknown_kind", "unknown kind (known kinds: {known})", {"known": ", ".join(sorted(KINDS))})
        return value

    @field_validator("rule")
    @classmethod
    def _rule_fits_kind(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is None:
            return value  # the kind is already reported
        # A ValidationError raised here is merged by pydantic under `rule.`.
        parsed = get_kind(kind).rule_model.model_validate(value)
        # Stored as the model's own JSON form: JSON-able and round-trippable.
        return parsed.model_dump(mode="json", exclude_unset=True)

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: int | float) -> float:
        if value > 1:
            raise PydanticCustomError("sample_rate", "Input should be less than or equal to 1")
        return float(value)

    @field_validator("start_at", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> Any:
        if value is None or isinstance(value, datetime):
            return value
        if isinstance(value, date):
            return datetime.combine(value, time(0), tzinfo=UTC)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.strip())
            except ValueError:
                pass
        # Numbers are refused rather than read as epoch seconds: too easy to get wrong.
        raise PydanticCustomError("timestamp", "Input should be an ISO 8601 timestamp")

    @field_validator("start_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
            value = None
        if value is None or not START_AT_MIN <= value < START_AT_MAX:
            raise PydanticCustomError(
                "start_at_range",
                "start_at must be from 1970-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z",
            )
        return value

    def model_post_init(self, context: Any) -> None:
        self._parsed_rule = get_kind(self.kind).rule_model.model_validate(self.rule)

    @property
    def parsed_rule(self) -> BaseModel:
        """The rule as the kind's `rule_model` instance (validated at load)."""
        return self._parsed_rule

    @property
    def sample_threshold(self) -> int:
        """`round(sample_rate × 10000)`, rounding half up (not Python's banker's rounding).

        Sessions with `cityHash64(concat(session_id, scanner_id)) % 10000 <` this
        are sampled (SPEC §6). The rate is taken as the decimal it prints as, so
        0.29 gives exactly 2900 and 0.00005 gives 1, 0.00004 gives 0.
        """
        scaled = Decimal(repr(self.sample_rate)) * 10000
        return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def apply(self, summary: SessionSummary, events: Sequence[Mapping[str, Any]] | None = None) -> Verdict:
        """Run this scanner's kind on one session."""
        kind = get_kind(self.kind)
        return kind.apply(summary, events if kind.needs_events else None, self.parsed_rule)

    def to_record(self) -> dict[str, Any]:
        """A row for the Postgres `scanners` table: filter and rule as plain JSON-able dicts."""
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "enabled": self.enabled,
            "kind": self.kind,
            "filter": self.filter.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
            "rule": copy.deepcopy(self.rule),
            "sample_rate": self.sample_rate,
            "start_at": self.start_at,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Scanner:
        """A scanner from a stored row; a row that no longer validates raises ScannerError naming its id.

        `created_at`/`updated_at` are ignored; `filter`/`rule` may be dicts or JSON text.
        """
        data = {k: v for k, v in dict(record).items() if k not in RECORD_METADATA_COLUMNS}
        ident = data.get("id")
        label = f"stored scanner ({show_value(ident) if not isinstance(ident, str) else ident})"
        for key in ("filter", "rule"):
            if isinstance(data.get(key), (str, bytes)):
                try:
                    data[key] = json.loads(data[key])
                except ValueError as error:
                    raise ScannerError(Problem(key, f"stored JSON does not parse ({error})", source=label)) from None
        return parse_scanner(data, source="stored scanner")


def parse_scanner(mapping: Mapping[str, Any], source: str = "scanner") -> Scanner:
    """Validate one scanner mapping; ScannerError names `source`, the scanner id, each path and value."""
    ident = mapping.get("id") if isinstance(mapping, Mapping) else None
    label = source
    if isinstance(ident, str) and ident:
        # A malformed id is quoted (repr), so a newline in it cannot break the message.
        label = f"{source} ({ident})" if ID_PATTERN.fullmatch(ident) else f"{source} ({show_value(ident)})"
    if not isinstance(mapping, Mapping):
        raise ScannerError(Problem("", "expected a mapping of scanner fields", mapping, source=label))
    try:
        return Scanner.model_validate(dict(mapping))
    except ValidationError as error:
        kind = mapping.get("kind")
        rule_model = KINDS[kind].rule_model if isinstance(kind, str) and kind in KINDS else None
        problems = problems_from_validation(
            error,
            Scanner,
            sub_models={"rule": rule_model} if rule_model else None,
            counter_names=COUNTER_COLUMNS,
        )
        raise ScannerError([Problem(p.path, p.message, p.value, label) for p in problems]) from None


# --- YAML ------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys instead of silently keeping the last one, and merge keys."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # `<<: [*a, *a, ...]` copies the merged pairs into every mapping that merges them:
        # 40 KB of YAML made 4 million pairs (12 s), and older PyYAML doubled them at every
        # level. Scanner files need no merges; an alias (*name) still repeats a whole value.
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not supported in scanner files: write the keys out", key_node.start_mark
                )
        super().flatten_mapping(node)


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            duplicate = False  # unhashable keys are reported by the mapping constructor
        if duplicate:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_scanners(path_or_text: str | Path) -> list[Scanner]:
    """Scanners from a YAML file (one mapping or a list), a folder of such files, or YAML text.

    A `str` is a path when it has no newline and names an existing file or ends
    in .yaml/.yml; otherwise it is YAML text. Every problem of every scanner is
    reported in one ScannerError; duplicate ids (in a file or a folder) are one.
    """
    if isinstance(path_or_text, Path) or _looks_like_path(path_or_text):
        path = Path(path_or_text)
        if not path.is_dir():
            return _unique(_load_file(path), source=path.name)
        loaded, problems = [], []
        for file in sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
            try:
                loaded.extend((f"{file.name}: {label}", scanner) for label, scanner in _load_file(file))
            except ScannerError as error:
                problems.extend(_under(error.source, p) for p in error.problems)
        if problems:
            raise ScannerError(problems, source=str(path))
        return _unique(loaded, source=str(path))
    return _unique(_load_text(path_or_text, source=""), source="")


def _under(outer: str, problem: Problem) -> Problem:
    source = ": ".join(part for part in (outer, problem.source) if part)
    return Problem(problem.path, problem.message, problem.value, source)


def _looks_like_path(text: str) -> bool:
    if "\n" in text or not text.strip():
        return False
    return text.endswith((".yaml", ".yml")) or Path(text).is_file()


def _load_file(path: Path) -> list[tuple[str, Scanner]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScannerError(f"cannot read scanner file: {error}", source=str(path)) from None
    return _load_text(text, source=path.name)


def _load_text(text: str, *, source: str) -> list[tuple[str, Scanner]]:
    """(label, scanner) pairs, label like "scanner[2] (checkout-errors)"."""
    try:
        # A SafeLoader subclass (what yaml.safe_load uses) that also refuses duplicate keys.
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = error.problem or error.context or "not valid YAML"
        raise ScannerError(f"invalid YAML{where}: {reason}", source=source) from None
    except yaml.YAMLError as error:
        raise ScannerError(f"invalid YAML: {error}", source=source) from None
    except RecursionError:
        raise ScannerError("invalid YAML: nested too deeply", source=source) from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise ScannerError(f"invalid YAML: {error}", source=source) from None
    expanded = _expanded_size(document, MAX_YAML_VALUES)
    if expanded > MAX_YAML_VALUES:
        raise ScannerError(
            f"invalid YAML: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values", source=source
        )
    if document is None:
        return []
    if isinstance(document, Mapping):
        items, labels = [document], ["scanner"]
    elif isinstance(document, list):
        items, labels = document, [f"scanner[{i}]" for i in range(len(document))]
    else:
        raise ScannerError(Problem("", "expected a scanner mapping or a list of them", document), source=source)
    loaded, problems = [], []
    for item, label in zip(items, labels):
        try:
            scanner = parse_scanner(item, source=label)
        except ScannerError as error:
            problems.extend(error.problems)
        else:
            loaded.append((f"{label} ({scanner.id})", scanner))
    if problems:
        raise ScannerError(problems, source=source)
    return loaded


def _expanded_size(document: Any, limit: int) -> int:
    """How many values `document` holds with every alias expanded, counted up to just past `limit`.

    PyYAML builds an alias as a second reference to the same object, so nine
    levels of nine aliases each are a few hundred bytes of YAML and hold 9**9
    values once walked. Each distinct container is counted once (no expansion),
    iteratively; a structure that contains itself counts its back reference as one.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (list, tuple, dict, set, frozenset)) or (id(node) in sizes and not children_done):
            continue
        children = [v for pair in node.items() for v in pair] if isinstance(node, dict) else list(node)
        if children_done:
            in_progress.discard(id(node))
            total = 1
            for child in children:
                if isinstance(child, (list, tuple, dict, set, frozenset)):
                    total += sizes.get(id(child), 1)  # 1: a back reference into itself
                else:
                    total += 1
                if total > limit:
                    break
            sizes[id(node)] = min(total, limit + 1)
            continue
        if id(node) in in_progress:
            continue
        in_progress.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    if isinstance(document, (list, tuple, dict, set, frozenset)):
        return sizes[id(document)]
    return 1


def _unique(loaded: list[tuple[str, Scanner]], *, source: str) -> list[Scanner]:
    """The scanners, or a ScannerError naming every id defined twice."""
    first: dict[str, str] = {}
    problems = []
    for label, scanner in loaded:
        if scanner.id in first:
            problems.append(Problem("id", f"duplicate scanner id (first defined at {first[scanner.id]})", scanner.id, label))
        else:
            first[scanner.id] = label
    if problems:
        raise ScannerError(problems, source=source)
    return [scanner for _, scanner in loaded]
