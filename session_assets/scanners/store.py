"""Scanners saved in Postgres."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from session_assets.core.days import SETTLE
from session_assets.scanners.model import Scanner, ScannerError
from session_assets.stores import sql


class TeamChange(ValueError):
    def __init__(self, scanner_id: str, saved: int, wanted: int):
        super().__init__(
            f"scanner {scanner_id!r}: team_id {wanted} differs from its saved team_id {saved}; a scanner's team cannot "
            f"change (its watermarks, observations and quota belong to team {saved}): give it a new id"
        )


class UnknownScanner(ValueError):
    def __init__(self, scanner_id: str):
        super().__init__(f"no scanner with id {scanner_id!r} (see `session-assets scanners list`)")


@dataclass(frozen=True)
class StoredScanner:
    """A row of `scanners`: the definition if it still validates, else the error."""

    row: dict[str, Any]
    scanner: Scanner | None
    error: str | None

    @property
    def id(self) -> str:
        return self.row["id"]

    @property
    def enabled(self) -> bool:
        return bool(self.row["enabled"])

    @property
    def start_at(self) -> datetime:
        return self.row["start_at"].astimezone(timezone.utc)

    def valid(self) -> Scanner:
        if self.scanner is None:
            raise ScannerError(self.error or f"scanner {self.id!r} does not validate")
        return self.scanner


def _stored(row: dict[str, Any]) -> StoredScanner:
    try:
        return StoredScanner(row, Scanner.from_record(row), None)
    except ScannerError as error:
        return StoredScanner(row, None, str(error))


def save(pool: ConnectionPool, scanner: Scanner, now: datetime | None = None) -> bool:
    """Insert or update; a new scanner starts at its start_at or now - settle. True if new."""
    return save_all(pool, [scanner], now)[0]


def save_all(pool: ConnectionPool, scanners: list[Scanner], now: datetime | None = None) -> list[bool]:
    """Save every scanner or none (one transaction); which were new.

    A scanner's team never changes: its watermarks, candidates, observations and
    quota belong to the team it was created for.
    """
    now = now or datetime.now(timezone.utc)
    added = []
    with pool.connection() as conn, conn.transaction():
        for scanner in scanners:
            record = scanner.to_record()
            params = {
                **record,
                "filter": Jsonb(record["filter"]),
                "rule": Jsonb(record["rule"]),
                "start_at": scanner.start_at or now - SETTLE,
            }
            row = conn.execute(sql.load("postgres/scanner_upsert.sql"), params).fetchone()
            if row is None:  # the id exists with another team: nothing is written
                saved = conn.execute(sql.load("postgres/scanner_get.sql"), {"id": scanner.id}).fetchone()
                raise TeamChange(scanner.id, int(saved[1]), scanner.team_id)
            added.append(bool(row[0]))
    return added


def get(pool: ConnectionPool, scanner_id: str) -> StoredScanner:
    with pool.connection() as conn:
        row = conn.cursor(row_factory=dict_row).execute(sql.load("postgres/scanner_get.sql"), {"id": scanner_id}).fetchone()
    if row is None:
        raise UnknownScanner(scanner_id)
    return _stored(row)


def list_all(pool: ConnectionPool) -> list[StoredScanner]:
    with pool.connection() as conn:
        rows = conn.cursor(row_factory=dict_row).execute(sql.load("postgres/scanner_list.sql")).fetchall()
    return [_stored(row) for row in rows]


def set_enabled(pool: ConnectionPool, scanner_id: str, enabled: bool, start_at: datetime | None = None) -> None:
    with pool.connection() as conn:
        found = conn.execute(
            sql.load("postgres/scanner_set_enabled.sql"), {"id": scanner_id, "enabled": enabled, "start_at": start_at}
        ).fetchone()
    if found is None:
        raise UnknownScanner(scanner_id)


def remove(pool: ConnectionPool, scanner_id: str) -> None:
    with pool.connection() as conn:
        if conn.execute(sql.load("postgres/scanner_delete.sql"), {"id": scanner_id}).fetchone() is None:
            raise UnknownScanner(scanner_id)
