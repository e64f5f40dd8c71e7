"""The watermark store: what a materialization record says, written and read here only.

A partition's state lives in the metadata of its newest successful materialization
(SPEC §5): a rollup day's coverage, a (scanner, day) sweep's watermark and frontier.
The assets write these records with `to_metadata`; the sensor, the checks, `status`
and the sweeps read them back with `from_metadata`. The metadata keys are the contract:
renaming one strands every partition's state, so they are named once, below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping

import dagster as dg

from session_assets.core.run_context import metadata_time, metadata_values
from session_assets.core.watermarks import Watermark

# Rollup day records.
COVERED_UNTIL = "covered_until"
COMPLETE = "complete"
LATE_COVERED_UNTIL = "late_covered_until"
LATE_COVERED_DAYS = "late_covered_days"
# (scanner, day) sweep records.
WATERMARK_END = "watermark_end"
WATERMARK_SESSION_ID = "watermark_session_id"
SEEN_UNTIL = "seen_until"
FRONTIER = "frontier"
QUOTA_STOPPED = "quota_stopped"
AS_OF = "as_of"


def _time_or_text(value: datetime | None, text: str) -> dg.MetadataValue:
    return dg.MetadataValue.timestamp(value) if value is not None else dg.MetadataValue.text(text)


def _optional_time(value: Any) -> datetime | None:
    # Written as text ("nothing seen yet", "no rollups yet") when there was no time to record.
    return metadata_time(value) if isinstance(value, (int, float, datetime)) else None


@dataclass(frozen=True)
class RollupRecord:
    """What the latest materialization of one rollup day says about its coverage (see coverage.py)."""

    covered_until: datetime
    complete: bool = False
    late_covered_until: datetime | None = None
    late_covered_days: frozenset[date] = field(default_factory=frozenset)

    def to_metadata(self) -> dict[str, dg.MetadataValue]:
        return {
            COVERED_UNTIL: dg.MetadataValue.timestamp(self.covered_until),
            COMPLETE: dg.MetadataValue.bool(self.complete),
            # The earlier days whose late events this run re-rolled up to late_covered_until.
            LATE_COVERED_UNTIL: _time_or_text(self.late_covered_until, "no late pass"),
            LATE_COVERED_DAYS: dg.MetadataValue.json([d.isoformat() for d in sorted(self.late_covered_days)]),
        }

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any]) -> RollupRecord | None:
        values = metadata_values(values)
        covered = metadata_time(values.get(COVERED_UNTIL))
        if covered is None:
            return None
        return cls(
            covered_until=covered,
            complete=bool(values.get(COMPLETE)),
            late_covered_until=_optional_time(values.get(LATE_COVERED_UNTIL)),
            late_covered_days=frozenset(date.fromisoformat(str(d)) for d in values.get(LATE_COVERED_DAYS) or []),
        )


@dataclass(frozen=True)
class ScannerDayRecord:
    """What the latest materialization of a (scanner, day) partition says: where its next sweep resumes."""

    watermark: Watermark
    as_of: datetime | None = None
    frontier: datetime | None = None  # None: no rollups yet
    complete: bool = False
    quota_stopped: bool = False

    def to_metadata(self) -> dict[str, dg.MetadataValue]:
        mark = self.watermark
        return {
            WATERMARK_END: dg.MetadataValue.timestamp(mark.end),
            WATERMARK_SESSION_ID: dg.MetadataValue.text(mark.session_id),
            SEEN_UNTIL: _time_or_text(mark.seen_until, "nothing seen yet"),
            FRONTIER: _time_or_text(self.frontier, "no rollups yet"),
            COMPLETE: dg.MetadataValue.bool(self.complete),
            QUOTA_STOPPED: dg.MetadataValue.bool(self.quota_stopped),
            **({AS_OF: dg.MetadataValue.timestamp(self.as_of)} if self.as_of is not None else {}),
        }

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any]) -> ScannerDayRecord | None:
        values = metadata_values(values)
        end = metadata_time(values.get(WATERMARK_END))
        if end is None:
            return None
        as_of = metadata_time(values.get(AS_OF))
        # Records written before `seen_until` existed: their as-of time played its part.
        seen = _optional_time(values[SEEN_UNTIL]) if SEEN_UNTIL in values else as_of
        return cls(
            watermark=Watermark(end, str(values.get(WATERMARK_SESSION_ID) or ""), seen),
            as_of=as_of,
            frontier=_optional_time(values.get(FRONTIER)),
            complete=bool(values.get(COMPLETE)),
            quota_stopped=bool(values.get(QUOTA_STOPPED)),
        )


def watermark_of(values: Mapping[str, Any]) -> Watermark | None:
    """The watermark a (scanner, day) materialization recorded; None for one that recorded none."""
    record = ScannerDayRecord.from_metadata(values)
    return record.watermark if record else None
