"""Settings from the environment: defaults, and one clear error for a bad value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from session_assets import settings
from session_assets.core import tick_plan


def test_seconds_settings_default_and_parse():
    assert settings.seconds_setting(settings.SWEEP_INTERVAL_VAR, 300, {}) == 300
    assert settings.seconds_setting(settings.SWEEP_INTERVAL_VAR, 300, {settings.SWEEP_INTERVAL_VAR: "15"}) == 15


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "five", " 10"])
def test_a_bad_seconds_setting_names_the_variable_and_value(bad):
    with pytest.raises(ValueError) as error:
        settings.seconds_setting(settings.RETRY_BACKOFF_VAR, 300, {settings.RETRY_BACKOFF_VAR: bad})
    assert str(error.value) == f"{settings.RETRY_BACKOFF_VAR}={bad!r} is not a positive whole number of seconds"


def test_the_candidate_query_limit_defaults_parses_and_reaches_the_clickhouse_resource(monkeypatch):
    from session_assets.resources import build_resources

    var = settings.CANDIDATE_QUERY_SECONDS_VAR
    assert settings.candidate_query_seconds({}) == settings.DEFAULT_CANDIDATE_QUERY_SECONDS == 120
    assert settings.candidate_query_seconds({var: "0.25"}) == 0.25
    monkeypatch.setenv(var, "45")
    assert build_resources()["clickhouse"].candidate_query_seconds == 45


@pytest.mark.parametrize("bad", ["0", "-5", "five", "nan", "inf", "1e999"])
def test_a_bad_candidate_query_limit_names_the_variable_and_value(bad, monkeypatch):
    from session_assets.resources import build_resources

    expected = f"{settings.CANDIDATE_QUERY_SECONDS_VAR}={bad!r} is not a positive number of seconds"
    with pytest.raises(ValueError) as error:
        settings.candidate_query_seconds({settings.CANDIDATE_QUERY_SECONDS_VAR: bad})
    assert str(error.value) == expected
    monkeypatch.setenv(settings.CANDIDATE_QUERY_SECONDS_VAR, bad)
    with pytest.raises(ValueError, match=expected):
        build_resources()


def test_backoff_doubles_from_its_base_and_caps_at_twelve_times_it():
    assert [tick_plan.backoff(n) for n in (1, 2, 3, 4, 5)] == [timedelta(minutes=m) for m in (5, 10, 20, 40, 60)]
    base = timedelta(seconds=2)
    assert [tick_plan.backoff(n, base) for n in (1, 2, 3, 4, 5, 9)] == [timedelta(seconds=s) for s in (2, 4, 8, 16, 24, 24)]


def test_the_embedded_stack_remembers_where_its_demo_data_starts(tmp_path):
    """Issue #13: partitions from 2024-01-01 showed the lineage '0% filled' over a few days of
    demo data. The first load records its first day; later commands adopt it, and a
    start date the user set always wins."""
    from datetime import date

    from session_assets import settings

    env = {settings.HOME_VAR: str(tmp_path)}
    settings.adopt_remembered_start_date(env)
    assert settings.START_DATE_VAR not in env  # nothing remembered yet: the default applies
    settings.remember_start_date(tmp_path, date(2026, 12, 1), env)
    assert env[settings.START_DATE_VAR] == "2026-12-01"

    later = {settings.HOME_VAR: str(tmp_path)}
    settings.adopt_remembered_start_date(later)
    assert later[settings.START_DATE_VAR] == "2026-12-01"
    assert settings.load_settings(later).start_date == date(2026, 12, 1)

    chosen = {settings.HOME_VAR: str(tmp_path), settings.START_DATE_VAR: "2025-06-01"}
    settings.adopt_remembered_start_date(chosen)
    settings.remember_start_date(tmp_path, date(2026, 12, 3), chosen)
    assert chosen[settings.START_DATE_VAR] == "2025-06-01"
    assert (tmp_path / settings.START_DATE_FILE).read_text().strip() == "2026-12-01"
