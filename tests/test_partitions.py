"""The (scanner, day) partition key helpers: the one place the key's shape is written."""

from datetime import date

import dagster as dg
import pytest

from session_assets.partitions import (
    scanner_day_key,
    scanner_day_partition_key,
    scanner_day_partitions_def,
    split_scanner_day_key,
)


def test_a_key_is_dagsters_own_and_splits_back_to_its_day_and_scanner():
    key = scanner_day_key(date(2026, 11, 23), "checkout-errors")
    multi = scanner_day_partition_key(key)
    # Dagster's own string form of the multi-partition key is the one the helpers write.
    assert str(multi) == key
    assert multi.keys_by_dimension == {"date": "2026-11-23", "scanner": "checkout-errors"}
    assert split_scanner_day_key(key) == split_scanner_day_key(multi) == (date(2026, 11, 23), "checkout-errors")
    assert scanner_day_partitions_def.get_partition_key_from_str(key) == multi


@pytest.mark.parametrize("bad", ["2026-11-23", "2026-11-23|", "checkout-errors|2026-11-23", "|checkout-errors"])
def test_a_key_not_of_a_scanner_day_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match=r"not a \(scanner, day\) partition key") as refused:
        split_scanner_day_key(bad)
    assert repr(bad) in str(refused.value)


def test_dagster_multi_partition_keys_split_like_strings():
    multi = dg.MultiPartitionKey({"scanner": "ai-spend", "date": "2026-01-02"})
    assert split_scanner_day_key(multi) == split_scanner_day_key(str(multi)) == (date(2026, 1, 2), "ai-spend")
