"""Bringing up the stack a command needs: embedded stores by default, the
environment for Dagster processes, and the schemas."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from session_assets import postgres, settings

_PACKAGE = Path(__file__).resolve().parent
# In a wheel the file ships inside the package; in a checkout it sits at the top level.
DAGSTER_YAML = next(
    (p for p in (_PACKAGE / "_dagster.yaml", _PACKAGE.parent / "dagster.yaml") if p.exists()),
    _PACKAGE.parent / "dagster.yaml",
)


@dataclass(frozen=True)
class Stack:
    settings: settings.Settings
    app_postgres_url: str
    dagster_postgres_url: str
    dagster_home: Path
    max_concurrent_runs: int

    def environment(self) -> dict[str, str]:
        """Variables every process of the stack (webserver, daemon, run workers) must see."""
        s = self.settings
        return {
            settings.HOME_VAR: str(s.home),
            settings.CLICKHOUSE_URL_VAR: s.clickhouse_url,
            settings.CLICKHOUSE_DATABASE_VAR: s.clickhouse_database,
            settings.EVENTS_TABLE_VAR: s.events_table,
            settings.POSTGRES_URL_VAR: self.app_postgres_url,
            settings.DAGSTER_POSTGRES_URL_VAR: self.dagster_postgres_url,
            settings.OBJECT_STORE_URL_VAR: s.object_store_url,
            settings.MAX_CONCURRENT_RUNS_VAR: str(self.max_concurrent_runs),
            "DAGSTER_HOME": str(self.dagster_home),
        }


def bring_up(environ: dict[str, str] | None = None) -> Stack:
    """Start what is embedded, write `$DAGSTER_HOME/dagster.yaml`, export the environment."""
    env = dict(os.environ if environ is None else environ)
    s = settings.load_settings(env)
    s.home.mkdir(parents=True, exist_ok=True)
    if s.embedded_postgres:
        app_url = postgres.embedded_server_url(s.postgres_data_dir, postgres.APP_DATABASE)
        dagster_url = postgres.sqlalchemy_url(postgres.embedded_server_url(s.postgres_data_dir, postgres.DAGSTER_DATABASE))
    else:
        app_url = s.postgres_url
        dagster_url = env.get(settings.DAGSTER_POSTGRES_URL_VAR) or postgres.sqlalchemy_url(app_url)
    user_home = env.get("DAGSTER_HOME")
    dagster_home = Path(user_home or s.dagster_home).resolve()
    # A DAGSTER_HOME of the user's keeps its own dagster.yaml; ours follows the repo's.
    install_dagster_yaml(dagster_home, overwrite=not user_home)
    runs = env.get(settings.MAX_CONCURRENT_RUNS_VAR)
    stack = Stack(
        settings=s,
        app_postgres_url=app_url,
        dagster_postgres_url=dagster_url,
        dagster_home=dagster_home,
        max_concurrent_runs=1 if s.embedded_clickhouse else int(runs or 4),
    )
    os.environ.update(stack.environment())
    return stack


def install_dagster_yaml(dagster_home: Path, overwrite: bool = True) -> Path:
    """Put the project's dagster.yaml in DAGSTER_HOME."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if overwrite or not target.exists():
        shutil.copyfile(DAGSTER_YAML, target)
    return target
