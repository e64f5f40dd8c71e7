"""Bringing up the stack a command needs: embedded stores by default, the
environment for Dagster processes, and the schemas."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from session_assets import settings
from session_assets.stores import postgres

_PACKAGE = Path(__file__).resolve().parents[1]  # session_assets/
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
        # This process started the embedded server as its superuser: its start-up migrates.
        postgres.migrate(app_url)
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


# What differs between machines, from the environment (the checkout's file needs none).
STORAGE_FROM_ENV = {"postgres": {"postgres_url": {"env": settings.DAGSTER_POSTGRES_URL_VAR}}}
MAX_CONCURRENT_RUNS_FROM_ENV = {"env": settings.MAX_CONCURRENT_RUNS_VAR}


def instance_config() -> dict:
    """The repo's dagster.yaml with Postgres storage and the run limit from the environment."""
    config = yaml.safe_load(DAGSTER_YAML.read_text()) or {}
    config["storage"] = STORAGE_FROM_ENV
    config.setdefault("run_coordinator", {}).setdefault("config", {})["max_concurrent_runs"] = MAX_CONCURRENT_RUNS_FROM_ENV
    return config


def install_dagster_yaml(dagster_home: Path, overwrite: bool = True) -> Path:
    """Put the project's instance config in DAGSTER_HOME."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if overwrite or not target.exists():
        header = f"# Written by session-assets from {DAGSTER_YAML.name}: edit that one (see its comments).\n"
        target.write_text(header + yaml.safe_dump(instance_config(), sort_keys=False))
    return target


CODE_LOCATION = "session_assets"  # as pyproject's [tool.dagster] and [tool.dg] name it


def install_workspace_yaml(dagster_home: Path) -> Path:
    """The workspace `dev` serves: this package's definitions, under the code location's name."""
    target = dagster_home / "workspace.yaml"
    workspace = {"load_from": [{"python_module": {"module_name": "session_assets.definitions", "location_name": CODE_LOCATION}}]}
    target.write_text(yaml.safe_dump(workspace, sort_keys=False))
    return target
