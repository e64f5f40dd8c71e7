"""The SQL files under `sql/`: loading, includes, statement splitting, migrations.

Every statement that matters lives in a `.sql` file. Files are trusted project
text; the only thing this module splices into them is another project file
(`-- @include NAME`), never a user value: values travel as bound parameters.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # session_assets/


class SchemaNotReady(RuntimeError):
    """A store's schema is not at the migrations this code knows, or its role may not read
    or change it; the message names the store and `session-assets migrate`."""
# In a wheel the files ship inside the package; in a checkout they sit at the top level.
_CANDIDATES = (_PACKAGE_DIR / "_sql", _PACKAGE_DIR.parent / "sql")
_INCLUDE = re.compile(r"^[ \t]*--[ \t]*@include[ \t]+(\S+)[ \t]*$", re.MULTILINE)
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def sql_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no sql/ folder found in {', '.join(map(str, _CANDIDATES))}")


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """Text of `sql/<name>` with `-- @include other.sql` lines expanded (same folder)."""
    path = sql_dir() / name
    text = path.read_text()
    folder = Path(name).parent

    def expand(match: re.Match[str]) -> str:
        return load(str(folder / match.group(1))).rstrip().rstrip(";")

    return _INCLUDE.sub(expand, text)


def statements(text: str) -> list[str]:
    """Split a DDL file on semicolons that end a line (our DDL has none inside literals)."""
    parts = re.split(r";[ \t]*(?:\n|$)", text)
    return [part.strip() for part in parts if _strip_comments(part).strip()]


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*", "", text)


def migrations(dialect: str) -> list[tuple[str, str]]:
    """(version name, file name) of `sql/<dialect>/NNN_*.sql`, in order."""
    folder = sql_dir() / dialect
    found = sorted(p.name for p in folder.iterdir() if _MIGRATION_NAME.match(p.name))
    return [(name.removesuffix(".sql"), f"{dialect}/{name}") for name in found]


def bind(text: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a ClickHouse statement names (`{name:Type}`): servers reject unused ones."""
    return {name: value for name, value in params.items() if "{" + name + ":" in text}


_FILTER_SLOT = re.compile(r"^[ \t]*--[ \t]*@filter[ \t]*$", re.MULTILINE)


def with_filter(text: str, predicate: str) -> str:
    """Put a compiled scanner filter in a statement's `-- @filter` slot.

    The predicate is SQL the filter compiler generated from whitelisted names
    and `{param:Type}` placeholders; user values travel only as parameters.
    """
    if len(_FILTER_SLOT.findall(text)) != 1:
        raise ValueError("statement has no single `-- @filter` slot")
    return _FILTER_SLOT.sub(lambda _: predicate, text)


_SCANNERS_SLOT = re.compile(r"^[ \t]*--[ \t]*@scanners[ \t]*$", re.MULTILINE)


def with_scanners(text: str, entries: str) -> str:
    """Put a candidates pass's per-scanner entries (project fragments with compiled filters,
    parameters only) in its `-- @scanners` slot."""
    if len(_SCANNERS_SLOT.findall(text)) != 1:
        raise ValueError("statement has no single `-- @scanners` slot")
    return _SCANNERS_SLOT.sub(lambda _: entries, text)
