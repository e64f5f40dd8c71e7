"""`session-assets load-events`: load a PostHog JSONL export or a CSV into the events table.

Two streaming passes over the file, so memory stays flat however long it is:

1. validate every row, keeping at most the first `MAX_PROBLEMS` problems; any bad
   row aborts the load before anything is written (all or nothing);
2. parse again and insert in batches of `batch_size` rows through `insert_events`.

Each batch carries a deduplication token built from the bytes of its lines, the
`--team-id` option (when one of its rows has no team of its own: the option never
overrides a row's `team_id`) and its index, never from the load time, so a load
that is run twice, or re-run after a crash, never doubles a row: ClickHouse drops a
block whose token it has already seen (`non_replicated_deduplication_window` on the
table). Loading the same file again with another `--team-id` loads again the batches
that hold a row without a team.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any, BinaryIO

from session_assets.resources import ClickHouseResource
from session_assets.stores import clickhouse as ch
from session_assets.stores.events_io import EVENT_COLUMNS, insert_events

__all__ = [
    "EventFileError",
    "LoadReport",
    "MAX_PROBLEMS",
    "RowProblem",
    "detect_format",
    "load_events_file",
]

MAX_PROBLEMS = 50
# The longest line (JSONL) or record (CSV, whose quoted cells may span lines) the loader
# takes, in bytes, line feeds not counted; the same for both formats. A longer one is
# refused, naming its line, after reading at most this much of it (a 201 MB line used to
# be read whole: 1.65 GB at peak). A line this long costs about 8 times as much to parse.
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_SESSION_ID_LENGTH = 128
# Integers (token counts, team ids) are Int64: at most 19 digits before the decimal point.
# A number written as text with more is refused before it is converted, so `"1e999999999"`
# costs nothing (converting it would build an integer of a billion digits).
MAX_INTEGER_DIGITS = 19
# Derived uuids live in their own namespace so they never collide with uuid5s made elsewhere.
UUID_NAMESPACE = uuid.UUID("6f6d1c52-3f0e-5b57-9d8e-7c1a2b0d4e61")

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
_FORMATS = ("csv", "jsonl")

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_US = timedelta(microseconds=1)
_DAY_US = 86_400 * 1_000_000
_MIN_TIME_US = (datetime(2000, 1, 1, tzinfo=_UTC) - _EPOCH) // _US
# Epoch numbers at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_EPOCH_MS_THRESHOLD = 100_000_000_000
_INT64_MAX = 2**63 - 1
# Epoch numbers beyond this (year 33 million in milliseconds) are out of range however read.
_MAX_EPOCH = 10**18

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_TOKEN_KEYS = ("$ai_input_tokens", "$ai_output_tokens")
_COST_KEY = "$ai_total_cost_usd"
_AI_KEYS = (*_TOKEN_KEYS, _COST_KEY)
# The rollup's cost columns are Decimal(38, 12): 26 integer digits, so a cost of 1e26 USD
# or more would be counted as 0. Beyond 60 fractional digits the text is cut (ROUND_DOWN):
# the rollup reads 12 of them, and `1e-999999999` would otherwise be a gigabyte of zeros.
_MAX_COST = Decimal(10) ** 26
_COST_FRACTION_DIGITS = 60
# Rollup SQL reads the cost with toDecimal128OrNull(JSONExtractRaw(...)), which does not
# take exponents: the cost is spliced into the JSON as fixed-point text via this placeholder.
_COST_PLACEHOLDER = f"\x00cost-{uuid.uuid4().hex}\x00"
_COST_PLACEHOLDER_JSON = json.dumps(_COST_PLACEHOLDER, ensure_ascii=False)

_CSV_EVENT = "event"
_CSV_TIMESTAMP = "timestamp"
_CSV_DISTINCT = ("distinct_id", "user_id")
_CSV_SESSION = ("session_id", "$session_id")
# A `properties` column (as in a CSV dump of an events table) holds a JSON object that the
# other columns are added to.
_CSV_OPTIONAL = ("uuid", "team_id", "inserted_at", "properties")


@dataclass(frozen=True)
class RowProblem:
    """One thing wrong with one row; `line` is 1-based (a CSV header is line 1)."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: field {self.field!r}: {self.message}"


class EventFileError(ValueError):
    """The file cannot be loaded; nothing (or, see the message, nothing more) was inserted."""

    def __init__(self, message: str, problems: Iterable[RowProblem] = (), *, bad_rows: int = 0) -> None:
        super().__init__(message)
        self.problems: list[RowProblem] = list(problems)
        self.bad_rows = bad_rows


@dataclass(frozen=True)
class LoadReport:
    """What a load did. `skipped_duplicate_batches` is None where it cannot be measured."""

    path: str
    rows: int
    batches: int
    skipped_duplicate_batches: int | None
    seconds: float


def detect_format(path: str | Path) -> str:
    """'jsonl' or 'csv' from the file name (an extra `.gz` is allowed)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise EventFileError(
            f"{path}: cannot tell the format from the file name; expected .jsonl, .ndjson, .json or .csv "
            "(optionally .gz), or pass --format csv|jsonl"
        )
    return fmt


def load_events_file(
    clickhouse: ClickHouseResource,
    path: str | Path,
    *,
    fmt: str | None = None,
    team_id: int | None = None,
    batch_size: int = 50_000,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,  # (rows inserted, rows in the file)
) -> LoadReport:
    """Validate the whole file, then insert it in idempotent batches; see the module docstring."""
    started = time.monotonic()
    name = str(path)
    fmt = detect_format(path) if fmt is None else fmt.lower()
    if fmt not in _FORMATS:
        raise EventFileError(f"{name}: unknown format {fmt!r}; expected one of {', '.join(_FORMATS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if team_id is not None and (
        isinstance(team_id, bool) or not isinstance(team_id, int) or not 0 < team_id <= _INT64_MAX
    ):
        raise EventFileError(f"{name}: --team-id must be a positive integer, not {team_id!r}")
    load_time = datetime.now(_UTC) if now is None else now
    if load_time.tzinfo is None:
        load_time = load_time.replace(tzinfo=_UTC)
    rows = _RowParser(name=name, fmt=fmt, team_id=team_id, now_us=(load_time - _EPOCH) // _US)

    _require_events_table(clickhouse)
    total = _validate(name, path, rows)
    if progress is not None:
        progress(0, total)

    inserter = _BatchInserter(clickhouse, rows, progress and (lambda done: progress(done, total)))
    rows.start_batch()  # forget what the validating pass saw
    with _open_lines(name, path) as source:
        columns = _empty_columns()
        for _, row, problems in rows.parse(source):
            if row is None:
                # Only if the file changed between the passes. The batches already in stay, and a
                # re-run of the fixed file skips them through their tokens.
                raise EventFileError(
                    f"{name} changed while loading: {problems[0]}; {inserter.rows} rows were inserted "
                    "before it; fix the file and run the load again",
                    problems,
                    bad_rows=1,
                )
            for values, value in zip(columns, row, strict=True):
                values.append(value)
            if len(columns[0]) >= batch_size:
                inserter.insert(columns, source.take_digest())
        if columns[0]:
            inserter.insert(columns, source.take_digest())
    return LoadReport(
        path=name,
        rows=inserter.rows,
        batches=inserter.batches,
        skipped_duplicate_batches=inserter.skipped,
        seconds=time.monotonic() - started,
    )


# ---------------------------------------------------------------------------
# passes and batches
# ---------------------------------------------------------------------------


def _require_events_table(clickhouse: ClickHouseResource) -> None:
    """Raise EventFileError unless the events table exists (before reading the file, not at the first insert)."""
    problem = clickhouse.missing_events_table()
    if problem:
        raise EventFileError(f"{problem}; nothing loaded")


def _validate(name: str, path: str | Path, rows: _RowParser) -> int:
    """First pass: raise EventFileError listing the first problems if any row is bad; else
    the number of rows."""
    kept: list[RowProblem] = []
    bad_rows = 0
    good_rows = 0
    total_problems = 0
    with _open_lines(name, path) as source:
        for _, row, problems in rows.parse(source):
            if row is not None:
                good_rows += 1
                continue
            bad_rows += 1
            total_problems += len(problems)
            kept.extend(problems[: MAX_PROBLEMS - len(kept)])
    if bad_rows:
        listing = "\n".join(f"  {problem}" for problem in kept)
        more = total_problems - len(kept)
        tail = f"\n  ... and {more} more problem{'s' if more != 1 else ''}" if more else ""
        raise EventFileError(
            f"{name}: {bad_rows} bad row{'s' if bad_rows != 1 else ''}, nothing loaded:\n{listing}{tail}",
            kept,
            bad_rows=bad_rows,
        )
    return good_rows


def _empty_columns() -> list[list[Any]]:
    return [[] for _ in EVENT_COLUMNS]


class _BatchInserter:
    """Inserts batches in order, each under its dedup token, and counts what ClickHouse dropped."""

    def __init__(
        self, clickhouse: ClickHouseResource, rows: _RowParser, progress: Callable[[int], None] | None
    ) -> None:
        self._client = clickhouse.client()
        self._table = clickhouse.events
        self._rows = rows
        self._progress = progress
        self.rows = 0
        self.batches = 0
        # DuplicatedInsertedBlocks is a process-wide counter: exact for in-process chDB, but
        # a shared server counts other clients' inserts too, so there we report None.
        in_process = ch.chdb_path(clickhouse.url) is not None
        self._duplicates = self._duplicated_blocks() if in_process else 0
        self.skipped: int | None = 0 if in_process else None

    def insert(self, columns: list[list[Any]], digest: str) -> None:
        token = self._rows.batch_token(digest, self.batches)
        insert_events(self._client, self._table, dict(zip(EVENT_COLUMNS, columns, strict=True)), dedup_token=token)
        self.rows += len(columns[0])
        # The driver's insert context keeps our lists in a reference cycle until the garbage
        # collector runs; emptying them frees a batch now, which keeps memory flat.
        for values in columns:
            values.clear()
        self.batches += 1
        if self.skipped is not None:
            after = self._duplicated_blocks()
            self.skipped += after > self._duplicates
            self._duplicates = after
        if self._progress is not None:
            self._progress(self.rows)

    def _duplicated_blocks(self) -> int:
        result = self._client.query("SELECT sum(value) FROM system.events WHERE event = 'DuplicatedInsertedBlocks'")
        return int(result.result_rows[0][0] or 0)


class _LineSource:
    """Raw lines of a file, numbered from 1, hashed into a digest a batch takes and resets."""

    def __init__(self, name: str, stream: BinaryIO) -> None:
        self._name = name
        self._stream = stream
        self.line_no = 0
        self._digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        readline = self._stream.readline
        while True:
            try:
                raw = readline(MAX_LINE_BYTES + 1)  # bounded: a longer line is refused unread
            except (gzip.BadGzipFile, EOFError, zlib.error) as error:
                raise EventFileError(
                    f"{self._name}: not a readable gzip file after line {self.line_no}: {error}"
                ) from error
            if not raw:
                return
            self.line_no += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise _too_long(self._name, self.line_no, "line")
            self._digest.update(raw)
            yield raw

    def take_digest(self) -> str:
        digest, self._digest = self._digest.hexdigest(), hashlib.sha256()
        return digest


def _too_long(name: str, line: int, what: str) -> EventFileError:
    """A line (or a CSV record starting at `line`) over MAX_LINE_BYTES: the load stops there."""
    message = f"longer than {MAX_LINE_BYTES:,} bytes, the most the loader takes in one line or CSV record"
    where = f"line {line}" if what == "line" else f"the CSV record starting at line {line}"
    return EventFileError(
        f"{name}: {where} is {message}; nothing is loaded from this file",
        [RowProblem(line, "size", message)],
        bad_rows=1,
    )


@contextmanager
def _open_lines(name: str, path: str | Path) -> Iterator[_LineSource]:
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    try:
        stream = opener(path, "rb")
    except OSError as error:
        raise EventFileError(f"{name}: cannot open: {error.strerror or error}") from error
    with stream:
        yield _LineSource(name, stream)


# ---------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------

# uuid (canonical text), event, properties, timestamp µs, team_id, distinct_id, $session_id, inserted_at µs
_Row = tuple[str, str, str, int, int, str, str, int]
_Parsed = tuple[int, "_Row | None", list[RowProblem]]


class _NonFinite:
    """A NaN/Infinity literal in a JSON line: not JSON, rejected where it is used."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _reject_non_json(value: Any) -> Any:
    raise ValueError(f"{value!r} is not valid JSON")


# Built once: json.loads/dumps with options would build a decoder/encoder for every row.
_decode_json = json.JSONDecoder(parse_constant=_NonFinite).decode
_encode_json = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_reject_non_json
).encode
_UUID_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _canonical_uuid(value: Any) -> str | None:
    """Lower-case hyphenated text of a UUID in any form uuid.UUID reads, or None."""
    if type(value) is not str:
        return None
    if _UUID_CANONICAL.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


class _RowParser:
    """Turns the lines of one file into event rows, or into the problems of each bad row."""

    def __init__(self, *, name: str, fmt: str, team_id: int | None, now_us: int) -> None:
        self.name = name
        self.fmt = fmt
        self.team_id = team_id
        self.now_us = now_us
        self._header_text = ""
        self._team_option_used = False  # since the last batch token: did a row take --team-id?

    def batch_token(self, digest: str, index: int) -> str:
        # --team-id is part of a batch's meaning only if one of its rows took it: a batch whose
        # rows all carry their own team is the same batch with or without the option.
        team = str(self.team_id) if self._team_option_used else "-"
        self.start_batch()
        header = (
            hashlib.sha256(self._header_text.encode("utf-8", "replace")).hexdigest()[:16] if self._header_text else "-"
        )
        return f"session_assets.load_events:v1:{self.fmt}:{header}:{digest}:team={team}:batch={index}"

    def start_batch(self) -> None:
        self._team_option_used = False

    def parse(self, source: _LineSource) -> Iterator[_Parsed]:
        return self._jsonl(source) if self.fmt == "jsonl" else self._csv(source)

    # -- JSONL ---------------------------------------------------------------

    def _jsonl(self, source: _LineSource) -> Iterator[_Parsed]:
        for raw in source:
            line = source.line_no
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield (
                    line,
                    None,
                    [RowProblem(line, "encoding", f"not valid UTF-8 (byte {error.start + 1} of the line)")],
                )
                continue
            if line == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue  # blank lines, e.g. a trailing one, are not rows
            problems: list[RowProblem] = []
            row = self._jsonl_row(line, text.rstrip("\r\n"), problems)
            yield line, (None if problems else row), problems

    def _jsonl_row(self, line: int, text: str, problems: list[RowProblem]) -> _Row | None:
        obj = _json_object(text, line, "json", "malformed JSON", problems)
        if obj is None:
            return None
        props = obj.get("properties")
        if props is None:
            props = {}
        elif isinstance(props, str):
            # Exports straight from an events table carry properties as JSON text.
            props = _json_object(props, line, "properties", "malformed JSON text", problems)
            if props is None:
                return None
        elif not isinstance(props, dict):
            problems.append(RowProblem(line, "properties", f"not a JSON object but {_kind(props)}"))
            return None
        # The first non-empty of properties.$session_id, a top-level $session_id, session_id.
        session = props.get("$session_id")
        if session is None or session == "":
            session = obj.get("$session_id")
            if session is None or session == "":
                session = obj.get("session_id")
        return self._row(
            line,
            problems,
            content=text,
            uuid_value=obj.get("uuid"),
            event=obj.get("event"),
            distinct_id=obj.get("distinct_id"),
            distinct_field="distinct_id",
            timestamp=obj.get("timestamp"),
            session=session,
            session_field="$session_id",
            team=obj.get("team_id"),
            inserted_at=obj.get("inserted_at"),
            props=props,
        )

    # -- CSV -----------------------------------------------------------------

    def _csv(self, source: _LineSource) -> Iterator[_Parsed]:
        bad_lines: list[tuple[int, int]] = []
        lines = _CsvLines(self.name, source, bad_lines)
        reader = csv.reader(lines, strict=True)
        header_line, header = self._csv_header(reader, source)
        lines.next_record()
        if bad_lines:
            raise EventFileError(f"{self.name}: the CSV header (line {bad_lines[0][0]}) is not valid UTF-8")
        if header is None:
            raise EventFileError(f"{self.name}: no CSV header row (the file is empty)")
        columns = _CsvColumns.from_header(header, header_line, self.name)
        width = len(header)
        last_line = source.line_no
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                lines.next_record()
                line, last_line = last_line + 1, source.line_no
                bad_lines.clear()
                yield line, None, [RowProblem(line, "csv", f"malformed CSV: {error}")]
                continue
            lines.next_record()
            line, last_line = last_line + 1, source.line_no
            if bad_lines:
                bad_line, byte = bad_lines[0]
                bad_lines.clear()
                yield line, None, [RowProblem(bad_line, "encoding", f"not valid UTF-8 (byte {byte + 1} of the line)")]
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line, e.g. a trailing one, is not a row
            if len(cells) != width:
                yield line, None, [RowProblem(line, "csv", f"{len(cells)} cells, the header has {width}")]
                continue
            problems: list[RowProblem] = []
            row = self._csv_row(line, cells, columns, problems)
            yield line, (None if problems else row), problems

    def _csv_header(self, reader: Any, source: _LineSource) -> tuple[int, list[str] | None]:
        while True:
            try:
                header = next(reader)
            except StopIteration:
                return source.line_no, None
            except csv.Error as error:
                raise EventFileError(f"{self.name}: malformed CSV header at line {source.line_no}: {error}") from error
            if header and any(cell.strip() for cell in header):
                self._header_text = _joined(header)
                # The header belongs to every batch's meaning but not to the first batch's lines.
                source.take_digest()
                return source.line_no, [cell.strip() for cell in header]

    def _csv_row(self, line: int, cells: list[str], columns: _CsvColumns, problems: list[RowProblem]) -> _Row | None:
        props: dict[str, Any] = {}
        if columns.properties_json is not None and cells[columns.properties_json].strip():
            decoded = _json_object(cells[columns.properties_json], line, "properties", "malformed JSON text", problems)
            if decoded is None:
                return None
            props = decoded
        for index, key in columns.properties:
            value = cells[index]
            if value == "":
                continue
            props[key] = value  # AI numbers are normalised with the JSONL ones, in _ai_properties
        distinct = _first_cell(cells, columns.distinct)
        session = _first_cell(cells, columns.session)
        return self._row(
            line,
            problems,
            content=self._header_text + "\n" + _joined(cells),
            uuid_value=_cell(cells, columns.uuid),
            event=cells[columns.event],
            distinct_id=distinct[1],
            distinct_field=distinct[0],
            timestamp=cells[columns.timestamp],
            session=session[1],
            session_field=session[0],
            team=_cell(cells, columns.team_id),
            inserted_at=_cell(cells, columns.inserted_at),
            props=props,
        )

    # -- both ----------------------------------------------------------------

    def _row(
        self,
        line: int,
        problems: list[RowProblem],
        *,
        content: str,
        uuid_value: Any,
        event: Any,
        distinct_id: Any,
        distinct_field: str,
        timestamp: Any,
        session: Any,
        session_field: str,
        team: Any,
        inserted_at: Any,
        props: dict[str, Any],
    ) -> _Row | None:
        def problem(field: str, message: str) -> None:
            problems.append(RowProblem(line, field, message))

        if type(event) is not str or not event or event.isspace():
            blank = event is None or (type(event) is str and (not event or event.isspace()))
            problem("event", "missing" if blank else f"not a string: {_short(event)}")
            event = ""
        if type(distinct_id) is int:
            distinct_id = str(distinct_id)
        if type(distinct_id) is not str or not distinct_id:
            problem(distinct_field, "missing" if distinct_id in (None, "") else f"not a string: {_short(distinct_id)}")
            distinct_id = ""

        if timestamp is None or timestamp == "":
            problem("timestamp", "missing")
            ts_us = None
        else:
            ts_us = self._time(timestamp, "timestamp", problem)
        if inserted_at is None or inserted_at == "":
            inserted_us: int | None = self.now_us
        else:
            inserted_us = self._time(inserted_at, "inserted_at", problem)

        if session is None:
            session = ""
        elif type(session) is not str:
            problem(session_field, f"not a string: {_short(session)}")
            session = ""
        elif len(session) > MAX_SESSION_ID_LENGTH:
            problem(
                session_field, f"longer than {MAX_SESSION_ID_LENGTH} characters ({len(session)}): {_short(session)}"
            )
        elif "\x00" in session:
            # Postgres text cannot hold NUL: such a session would be rolled up but never observed.
            problem(session_field, f"contains NUL (\\u0000), which Postgres cannot store: {_short(session)}")

        # --team-id is the team of rows that carry none; a row's own team_id always wins.
        if (team is None or team == "") and self.team_id is not None:
            team_id: int | None = self.team_id
            self._team_option_used = True
        elif team is None or team == "":
            problem("team_id", "missing: the row has none and no --team-id was given")
            team_id = None
        else:
            team_id = _positive_int(team)
            if team_id is None:
                problem("team_id", f"not a positive integer: {_short(team)}")

        if uuid_value is None or uuid_value == "":
            # Same content at the same line for the same team: the same id on every re-load.
            row_uuid: str | None = str(uuid.uuid5(UUID_NAMESPACE, f"{line}\n{team_id}\n{content}"))
        else:
            row_uuid = _canonical_uuid(uuid_value)
            if row_uuid is None:
                problem("uuid", f"not a UUID: {_short(uuid_value)}")

        cost_text = self._ai_properties(props, problem)
        if session:
            props["$session_id"] = session
        else:
            props.pop("$session_id", None)  # it was null or empty: an event without a session
        try:
            props_text = _encode_json(props)
        except (ValueError, RecursionError) as error:
            problem("properties", f"not representable as JSON: {error}")
            props_text = "{}"
        if cost_text is not None:
            props_text = props_text.replace(_COST_PLACEHOLDER_JSON, cost_text, 1)

        if not (event.isascii() and distinct_id.isascii() and session.isascii() and props_text.isascii()):
            # A JSON escape like \ud800 decodes to a lone surrogate, which no UTF-8 insert can carry.
            for field, text in (
                ("event", event),
                (distinct_field, distinct_id),
                (session_field, session),
                ("properties", props_text),
            ):
                if not _utf8_encodable(text):
                    problem(field, "contains an unpaired UTF-16 surrogate escape, which is not valid UTF-8")

        if problems or row_uuid is None or ts_us is None or inserted_us is None or team_id is None:
            return None
        return (row_uuid, event, props_text, ts_us, team_id, distinct_id, session, inserted_us)

    def _time(self, value: Any, field: str, problem: Callable[[str, str], None]) -> int | None:
        """Microseconds since the epoch, UTC, within [2000-01-01, load time + 1 day]."""
        us = _parse_time(value)
        if us is None:
            problem(field, f"not an ISO 8601 time: {_short(value)}")
            return None
        if us < _MIN_TIME_US:
            problem(field, f"before 2000-01-01, too far in the past: {_short(value)}")
            return None
        if us > self.now_us + _DAY_US:
            problem(field, f"more than 1 day after the load time, too far in the future: {_short(value)}")
            return None
        return us

    def _ai_properties(self, props: dict[str, Any], problem: Callable[[str, str], None]) -> str | None:
        """Normalise AI tokens to JSON integers and the cost to a fixed-point number.

        Returns the cost's JSON text when it replaces the placeholder left in `props`.
        """
        for key in _TOKEN_KEYS:
            if key not in props or props[key] is None:
                continue  # null: rollups count it as 0, as PostHog SDKs sometimes send it
            tokens = _non_negative_int(props[key])
            if tokens is None:
                problem(key, f"not a non-negative integer: {_short(props[key])}")
                props[key] = None  # reported once here, not again when serialising a NaN
            else:
                props[key] = tokens
        if _COST_KEY not in props or props[_COST_KEY] is None:
            return None
        cost = _non_negative_decimal(props[_COST_KEY])
        if cost is None:
            problem(_COST_KEY, f"not a non-negative finite number: {_short(props[_COST_KEY])}")
            props[_COST_KEY] = None
            return None
        if cost >= _MAX_COST:
            problem(_COST_KEY, f"1e26 USD or more, beyond what the rollup can hold: {_short(props[_COST_KEY])}")
            props[_COST_KEY] = None
            return None
        if cost.as_tuple().exponent < -_COST_FRACTION_DIGITS:  # type: ignore[operator]  # finite: an int
            with localcontext() as context:
                context.prec = 26 + _COST_FRACTION_DIGITS
                cost = cost.quantize(Decimal(1).scaleb(-_COST_FRACTION_DIGITS), rounding=ROUND_DOWN)
        props[_COST_KEY] = _COST_PLACEHOLDER
        return format(cost, "f")


# csv's own limit on a cell (128 KiB by default) would refuse cells a JSONL line may hold;
# a record is bounded by MAX_LINE_BYTES instead (csv counts characters, never more than bytes).
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))


class _CsvLines:
    """Decoded lines for csv.reader, a line that is not UTF-8 noted and decoded with U+FFFD;
    refuses a record (its lines from the last `next_record()`) longer than MAX_LINE_BYTES."""

    def __init__(self, name: str, source: _LineSource, bad_lines: list[tuple[int, int]]) -> None:
        self._name = name
        self._source = source
        self._bad_lines = bad_lines
        self._record_line = 1
        self._record_bytes = 0

    def next_record(self) -> None:
        self._record_line = self._source.line_no + 1
        self._record_bytes = 0

    def __iter__(self) -> Iterator[str]:
        source = self._source
        for raw in source:
            self._record_bytes += len(raw) - raw.endswith(b"\n")
            if self._record_bytes > MAX_LINE_BYTES:
                raise _too_long(self._name, self._record_line, "csv")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                self._bad_lines.append((source.line_no, error.start))
                text = raw.decode("utf-8", "replace")
            yield text.removeprefix("\ufeff") if source.line_no == 1 else text


@dataclass(frozen=True)
class _CsvColumns:
    event: int
    timestamp: int
    distinct: tuple[tuple[str, int], ...]
    session: tuple[tuple[str, int], ...]
    uuid: int | None
    team_id: int | None
    inserted_at: int | None
    properties_json: int | None
    properties: tuple[tuple[int, str], ...]

    @classmethod
    def from_header(cls, header: list[str], line: int, name: str) -> _CsvColumns:
        problems: list[RowProblem] = []
        index: dict[str, int] = {}
        for position, column in enumerate(header):
            if column == "":
                problems.append(RowProblem(line, f"column {position + 1}", "the header names no column here"))
            elif column in index:
                where = f"columns {index[column] + 1} and {position + 1}"
                problems.append(RowProblem(line, column, f"column named twice ({where})"))
            else:
                index[column] = position
        for required in (_CSV_EVENT, _CSV_TIMESTAMP):
            if required not in index:
                problems.append(RowProblem(line, required, "no such column in the header"))
        distinct = tuple((n, index[n]) for n in _CSV_DISTINCT if n in index)
        session = tuple((n, index[n]) for n in _CSV_SESSION if n in index)
        if not distinct:
            problems.append(RowProblem(line, "distinct_id", "no distinct_id or user_id column in the header"))
        if not session:
            problems.append(RowProblem(line, "session_id", "no session_id or $session_id column in the header"))
        if problems:
            raise EventFileError(
                f"{name}: bad CSV header, nothing loaded:\n" + "\n".join(f"  {p}" for p in problems), problems
            )
        known = {_CSV_EVENT, _CSV_TIMESTAMP, *_CSV_DISTINCT, *_CSV_SESSION, *_CSV_OPTIONAL}
        return cls(
            event=index[_CSV_EVENT],
            timestamp=index[_CSV_TIMESTAMP],
            distinct=distinct,
            session=session,
            uuid=index.get("uuid"),
            team_id=index.get("team_id"),
            inserted_at=index.get("inserted_at"),
            properties_json=index.get("properties"),
            properties=tuple((i, n) for n, i in index.items() if n not in known),
        )


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------


def _parse_time(value: Any) -> int | None:
    """ISO 8601 (offset or `Z`; naive is UTC) or epoch seconds/milliseconds, as UTC microseconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _epoch_us(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if not _JSON_NUMBER.fullmatch(text):
            return None
        exact = Decimal(text)
        if exact.copy_abs() > _MAX_EPOCH:  # abs() would round, and overflow on 1e999999999
            return _epoch_us(float(exact))  # out of range either way; never int() of "1e999999999"
        return _epoch_us(float(exact) if any(c in text for c in ".eE") else int(exact))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    try:
        return (moment - _EPOCH) // _US
    except OverflowError:
        return None


def _epoch_us(value: int | float) -> int | None:
    if isinstance(value, float) and math.isnan(value):
        return None
    if abs(value) > _MAX_EPOCH:
        # Far beyond any time the loader takes (1e308 * 1000 is not even a float): reported as
        # too far in the future or the past, without converting it.
        return _INT64_MAX if value > 0 else -_INT64_MAX
    if abs(value) >= _EPOCH_MS_THRESHOLD:
        return int(value * 1_000) if isinstance(value, int) else round(value * 1_000)
    return int(value * 1_000_000) if isinstance(value, int) else round(value * 1_000_000)


def _positive_int(value: Any) -> int | None:
    number = _non_negative_int(value)
    return number if number else None


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str) and _JSON_NUMBER.fullmatch(value.strip()):
        exact = Decimal(value.strip())
        if exact != exact.to_integral_value():
            return None
        if exact.adjusted() >= MAX_INTEGER_DIGITS:
            # Beyond Int64, and int() would build every digit: "1e999999999" is a billion of them.
            return None
        number = int(exact)
    else:
        return None
    return number if 0 <= number <= _INT64_MAX else None


def _non_negative_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            exact = Decimal(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return None
            exact = Decimal(repr(value))  # the shortest text that round-trips, not the binary expansion
        elif isinstance(value, str) and _JSON_NUMBER.fullmatch(value.strip()):
            exact = Decimal(value.strip())
        else:
            return None
    except InvalidOperation:
        return None
    if exact < 0:
        return None
    return exact if exact != 0 else Decimal(0)


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_object(text: str, line: int, field: str, malformed: str, problems: list[RowProblem]) -> dict[str, Any] | None:
    """`text` decoded as a JSON object; None, with the problem recorded for `field`, otherwise."""
    try:
        value = _decode_json(text)
    except (ValueError, RecursionError) as error:
        problems.append(RowProblem(line, field, f"{malformed}: {_json_error(error)}"))
        return None
    if not isinstance(value, dict):
        problems.append(RowProblem(line, field, f"not a JSON object but {_kind(value)}"))
        return None
    return value


def _json_error(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    return str(error)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cell(cells: list[str], index: int | None) -> str | None:
    return None if index is None else cells[index]


def _first_cell(cells: list[str], candidates: tuple[tuple[str, int], ...]) -> tuple[str, str]:
    """The first non-empty of several alternative columns, with its column name."""
    for name, index in candidates:
        if cells[index] != "":
            return name, cells[index]
    return candidates[0][0], ""


def _joined(cells: list[str]) -> str:
    return "\x1f".join(cells)
