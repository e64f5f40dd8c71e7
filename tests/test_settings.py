"""Settings from the environment: defaults, and one clear error for a bad value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from session_assets import settings, sweeps


def test_seconds_settings_default_and_parse():
    assert settings.seconds_setting(settings.SWEEP_INTERVAL_VAR, 300, {}) == 300
    assert settings.seconds_setting(settings.SWEEP_INTERVAL_VAR, 300, {settings.SWEEP_INTERVAL_VAR: "15"}) == 15


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "five", " 10"])
def test_a_bad_seconds_setting_names_the_variable_and_value(bad):
    with pytest.raises(ValueError) as error:
        settings.seconds_setting(settings.RETRY_BACKOFF_VAR, 300, {settings.RETRY_BACKOFF_VAR: bad})
    assert str(error.value) == f"{settings.RETRY_BACKOFF_VAR}={bad!r} is not a positive whole number of seconds"


def test_backoff_doubles_from_its_base_and_caps_at_twelve_times_it():
    assert [sweeps.backoff(n) for n in (1, 2, 3, 4, 5)] == [timedelta(minutes=m) for m in (5, 10, 20, 40, 60)]
    base = timedelta(seconds=2)
    assert [sweeps.backoff(n, base) for n in (1, 2, 3, 4, 5, 9)] == [timedelta(seconds=s) for s in (2, 4, 8, 16, 24, 24)]
