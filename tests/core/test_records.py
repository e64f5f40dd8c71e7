"""The watermark store's records: what the assets write is what the sensor, checks and status read."""

from datetime import date, datetime, timedelta, timezone

import dagster as dg

from session_assets.core import records
from session_assets.core.records import RollupRecord, ScannerDayRecord
from session_assets.core.watermarks import Watermark

T = datetime(2026, 11, 23, 14, 5, 7, 123456, tzinfo=timezone.utc)


def _stored(metadata: dict[str, dg.MetadataValue]) -> dict:
    """The metadata as an instance stores and returns it (normalized by Dagster's serializer)."""
    return dg.AssetMaterialization(asset_key="x", metadata=metadata).metadata


def test_a_sweep_record_reads_back_as_written():
    written = ScannerDayRecord(
        Watermark(T, "0192-session", T + timedelta(minutes=3)), as_of=T + timedelta(minutes=40),
        frontier=T + timedelta(minutes=5), complete=True, quota_stopped=True,
    )  # fmt: skip
    assert ScannerDayRecord.from_metadata(_stored(written.to_metadata())) == written
    # Plain values, as `latest_materializations` returns them, read the same.
    assert ScannerDayRecord.from_metadata(records.metadata_values(written.to_metadata())) == written


def test_a_sweep_record_that_saw_nothing_and_had_no_rollups_reads_back_as_none():
    written = ScannerDayRecord(Watermark(T, ""), as_of=T, frontier=None)
    metadata = written.to_metadata()
    assert metadata[records.SEEN_UNTIL].value == "nothing seen yet"
    assert metadata[records.FRONTIER].value == "no rollups yet"
    assert ScannerDayRecord.from_metadata(_stored(metadata)) == written


def test_a_record_written_before_seen_until_existed_saw_up_to_its_as_of():
    old = {records.WATERMARK_END: T.timestamp(), records.WATERMARK_SESSION_ID: "s", records.AS_OF: (T + timedelta(hours=1)).timestamp()}
    assert ScannerDayRecord.from_metadata(old).watermark == Watermark(T, "s", T + timedelta(hours=1))


def test_a_rollup_materialization_holds_no_watermark_and_a_sweep_no_coverage():
    rollup = RollupRecord(T, complete=False, late_covered_until=T, late_covered_days=frozenset({date(2026, 11, 21)}))
    sweep = ScannerDayRecord(Watermark(T, "s", T), as_of=T, frontier=T)
    assert RollupRecord.from_metadata(_stored(rollup.to_metadata())) == rollup
    assert ScannerDayRecord.from_metadata(rollup.to_metadata()) is None
    assert RollupRecord.from_metadata(sweep.to_metadata()) is None
    assert records.watermark_of(sweep.to_metadata()) == sweep.watermark
    assert records.watermark_of({}) is None
