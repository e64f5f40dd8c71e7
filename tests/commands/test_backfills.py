from __future__ import annotations

from datetime import date

import pytest

from session_assets.commands import backfills
from session_assets.partitions import scanner_partitions_def


def test_a_backfill_covers_each_day_of_the_scanner(instance):
    instance.add_dynamic_partitions(scanner_partitions_def.name, ["checkout"])
    backfill_id = backfills.launch(instance, "checkout", date(2024, 3, 1), date(2024, 3, 3))
    stored = instance.get_backfill(backfill_id)
    subset = stored.asset_backfill_data.target_subset
    targeted = {(key.to_user_string(), str(pk)) for key, pk in subset.iterate_asset_partitions()}
    expected_keys = {f"2024-03-0{d}|checkout" for d in (1, 2, 3)}
    assert targeted == {(a, k) for a in ("scanner_candidate_windows", "observation_batches") for k in expected_keys}
    assert backfills.progress(instance, backfill_id) == ("REQUESTED", 0, 0, 0)


def test_bad_ranges_and_unknown_scanners_are_named(instance):
    with pytest.raises(ValueError, match="before --start"):
        backfills.partition_keys("x", date(2024, 3, 2), date(2024, 3, 1))
    with pytest.raises(ValueError, match="'ghost' is not a partition"):
        backfills.launch(instance, "ghost", date(2024, 3, 1), date(2024, 3, 1))


def test_launching_imports_no_private_dagster_module():
    """Upgrades break private imports: the backfill goes through the public GraphQL API."""
    source = open(backfills.__file__).read()
    assert "dagster._" not in source


def test_waiting_without_a_daemon_says_so(instance):
    """A backfill stays REQUESTED for ever without a daemon: `--wait` must say why."""
    assert backfills.daemon_silence(instance) == "no Dagster daemon has run on this instance"
