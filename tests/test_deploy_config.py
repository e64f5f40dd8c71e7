"""The production instance config (docs/production/dagster.yaml) and the repo's
dagster.yaml, checked with Dagster's own instance-config validation.

`validate_instance_dir` does what `DagsterInstance.from_config` checks before it
builds anything: the instance schema (`dagster_instance_config`), the `env:`
values resolved, and every pluggable class (run coordinator, run launcher,
compute log manager) imported and its config processed against the class's own
schema, as `ConfigurableClassData.rehydrate` does. The last step matters:
`dagster_instance_config` alone accepts any mapping under a class's `config`.
One test then builds the production instance for real (Postgres from pgserver;
the ECS launcher and the S3 compute log manager make no AWS call when built).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Callable

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config, dagster_instance_config_schema
from dagster._serdes.config_class import ConfigurableClassData

from session_assets.stores import postgres
from session_assets.commands import stack

ROOT = Path(__file__).resolve().parents[1]
PROD_YAML = ROOT / "docs" / "production" / "dagster.yaml"
REPO_YAML = ROOT / "dagster.yaml"

# Placeholders only: nothing here is a credential (the URL's password is the word).
PROD_ENV = {
    "SESSION_ASSETS_DAGSTER_POSTGRES_URL": "postgresql+psycopg2://dagster:password@db.internal:5432/dagster",
    "SESSION_ASSETS_MAX_CONCURRENT_RUNS": "4",
    "SESSION_ASSETS_COMPUTE_LOGS_BUCKET": "session-assets-example",
    "SESSION_ASSETS_COMPUTE_LOGS_PREFIX": "dagster/compute-logs",
    "SESSION_ASSETS_RUN_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/session-assets-run",
    "SESSION_ASSETS_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/session-assets-execution",
    "SESSION_ASSETS_ECS_LOG_GROUP": "/ecs/session-assets",
    "SESSION_ASSETS_CLICKHOUSE_URL_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ch",
    "SESSION_ASSETS_POSTGRES_URL_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg",
    "SESSION_ASSETS_DAGSTER_POSTGRES_URL_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dg",
    "AWS_DEFAULT_REGION": "us-east-1",
}
REPO_ENV = {
    "SESSION_ASSETS_DAGSTER_POSTGRES_URL": "postgresql+psycopg2://dagster:password@db.internal:5432/dagster",
    "SESSION_ASSETS_MAX_CONCURRENT_RUNS": "1",
}
CLASS_SECTIONS = ("run_coordinator", "run_launcher", "compute_logs", "scheduler", "local_artifact_storage")
# Variables whose values carry a password: never copied into an ECS task definition.
SECRET_VARS = {
    "SESSION_ASSETS_CLICKHOUSE_URL",
    "SESSION_ASSETS_POSTGRES_URL",
    "SESSION_ASSETS_DAGSTER_POSTGRES_URL",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
}


def validate_instance_dir(base_dir: Path) -> dict[str, Any]:
    """Validate `base_dir/dagster.yaml` as Dagster would load it; return it processed.

    Raises DagsterInvalidConfigError (schema, env) or dagster's CheckError (a class
    that cannot be imported). Builds no storage, coordinator or launcher.
    """
    dagster_instance_config(str(base_dir))  # the instance schema, as DagsterInstance loads it
    raw = yaml.safe_load((base_dir / "dagster.yaml").read_text()) or {}
    resolved = process_config(dagster_instance_config_schema(), raw)  # `env:` values resolved
    if not resolved.success:
        raise DagsterInvalidConfigError("instance config", resolved.errors, raw)
    processed = dict(resolved.value)
    for section in CLASS_SECTIONS:
        if section not in raw:
            continue
        data = ConfigurableClassData(raw[section]["module"], raw[section]["class"], yaml.dump(raw[section].get("config") or {}))
        try:
            klass = getattr(importlib.import_module(data.module_name), data.class_name)
        except (ImportError, AttributeError) as error:
            raise DagsterInvalidConfigError(f"{section}: cannot load {data.module_name}.{data.class_name}: {error}", [], raw[section]) from error
        result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
        if not result.success:
            raise DagsterInvalidConfigError(f"{section}: {data.class_name} config", result.errors, data.config_dict)
        processed[section] = {"class": klass, "config": result.value}
    return processed


def install(tmp_path: Path, source: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """Copy `source` to tmp_path/dagster.yaml, optionally edited (comments are not kept)."""
    target = tmp_path / "dagster.yaml"
    if edit is None:
        target.write_text(source.read_text())
    else:
        config = yaml.safe_load(source.read_text())
        edit(config)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


@pytest.fixture
def prod_env(monkeypatch):
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)


def test_production_config_validates_with_its_environment(tmp_path, prod_env):
    config = validate_instance_dir(install(tmp_path, PROD_YAML))

    assert config["storage"]["postgres"]["postgres_url"] == PROD_ENV["SESSION_ASSETS_DAGSTER_POSTGRES_URL"]
    coordinator = config["run_coordinator"]
    assert coordinator["class"].__name__ == "QueuedRunCoordinator"
    assert coordinator["config"]["max_concurrent_runs"] == 4  # from the environment
    limits = {limit["key"]: limit for limit in coordinator["config"]["tag_concurrency_limits"]}
    assert limits["dagster/backfill"]["limit"] == 2
    assert limits["dagster/partition/scanner"]["value"] == {"applyLimitPerUniqueValue": True}
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["run_monitoring"]["enabled"] is True
    assert config["telemetry"]["enabled"] is False
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] == 7
    assert config["compute_logs"]["class"].__name__ == "S3ComputeLogManager"

    launcher = config["run_launcher"]
    assert launcher["class"].__module__.startswith("dagster_aws.ecs")
    assert launcher["class"].__name__ == "EcsRunLauncher"
    assert launcher["config"]["use_current_ecs_task_config"] is True
    assert launcher["config"]["secrets_tag"] is None
    assert {s["name"] for s in launcher["config"]["secrets"]} == {
        "SESSION_ASSETS_CLICKHOUSE_URL",
        "SESSION_ASSETS_POSTGRES_URL",
        "SESSION_ASSETS_DAGSTER_POSTGRES_URL",
    }
    assert all(s["valueFrom"].startswith("arn:aws:secretsmanager:") for s in launcher["config"]["secrets"])
    # Plain env_vars are written into the task definition in clear: no secret among them.
    assert not SECRET_VARS & {v.partition("=")[0] for v in launcher["config"]["env_vars"]}
    assert len(launcher["config"]["task_definition_prefix"]) <= 16  # the launcher's own limit


def test_production_config_takes_every_secret_from_the_environment():
    raw = yaml.safe_load(PROD_YAML.read_text())
    assert raw["storage"]["postgres"]["postgres_url"] == {"env": "SESSION_ASSETS_DAGSTER_POSTGRES_URL"}
    launcher = raw["run_launcher"]["config"]
    assert all(set(secret["valueFrom"]) == {"env"} for secret in launcher["secrets"])
    for key in ("task_role_arn", "execution_role_arn", "log_group"):
        assert set(launcher["task_definition"][key]) == {"env"}, key
    text = PROD_YAML.read_text()
    assert not re.search(r"arn:aws:", text), "account-specific ARNs belong in the environment"
    # No URL with credentials at all, not even a placeholder one: the URL comes from the environment.
    assert re.findall(r"://([^/\s]*)@", text) == []
    assert "postgresql+psycopg2://" in text, "the comment still names the driver the URL must use"


def test_the_production_instance_builds_as_the_daemon_builds_it(tmp_path, prod_env, postgres_admin_url, monkeypatch):
    """DagsterInstance.from_config on Postgres: storage, queue limits, the ECS launcher and
    the S3 compute log manager are all constructed; none of them calls AWS to do so."""
    postgres.ensure_database(postgres_admin_url, "deploy_config_test")
    url = postgres.sqlalchemy_url(postgres.with_database(postgres_admin_url, "deploy_config_test"))
    monkeypatch.setenv("SESSION_ASSETS_DAGSTER_POSTGRES_URL", url)
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import PostgresRunStorage

    with dg.DagsterInstance.from_config(str(install(tmp_path, PROD_YAML))) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 4
        assert {"key": "dagster/backfill", "limit": 2} in queue.tag_concurrency_limits
        launcher = instance.run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        assert launcher.task_role_arn == PROD_ENV["SESSION_ASSETS_RUN_TASK_ROLE_ARN"]
        assert [s["valueFrom"] for s in launcher.secrets] == [
            PROD_ENV["SESSION_ASSETS_CLICKHOUSE_URL_SECRET_ARN"],
            PROD_ENV["SESSION_ASSETS_POSTGRES_URL_SECRET_ARN"],
            PROD_ENV["SESSION_ASSETS_DAGSTER_POSTGRES_URL_SECRET_ARN"],
        ]
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        assert instance.run_retries_enabled and instance.run_monitoring_enabled
        assert not instance.telemetry_enabled


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(config: dict) -> None:
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = value

    return edit


BROKEN = [
    # (id, edit of the file, environment changes, what the error must name)
    ("limit-env-unset", None, {"SESSION_ASSETS_MAX_CONCURRENT_RUNS": None}, "SESSION_ASSETS_MAX_CONCURRENT_RUNS"),
    ("limit-env-not-a-number", None, {"SESSION_ASSETS_MAX_CONCURRENT_RUNS": "four"}, "SESSION_ASSETS_MAX_CONCURRENT_RUNS"),
    ("postgres-url-env-unset", None, {"SESSION_ASSETS_DAGSTER_POSTGRES_URL": None}, "SESSION_ASSETS_DAGSTER_POSTGRES_URL"),
    ("storage-key-misspelt", _set("storage.postgres", {"postgres_uri": {"env": "SESSION_ASSETS_DAGSTER_POSTGRES_URL"}}), {}, "postgres_uri"),
    ("retries-not-a-number", _set("run_retries.max_retries", "two"), {}, "max_retries"),
    ("retention-key-misspelt", _set("retention.sensor.purge_after_days", {"succes": 7}), {}, "succes"),
    ("launcher-key-misspelt", _set("run_launcher.config.use_current_ecs_task_confg", True), {}, "use_current_ecs_task_confg"),
    ("launcher-secret-without-arn", _set("run_launcher.config.secrets", [{"name": "X"}]), {}, "valueFrom"),
    ("launcher-arn-env-unset", None, {"SESSION_ASSETS_POSTGRES_URL_SECRET_ARN": None}, "SESSION_ASSETS_POSTGRES_URL_SECRET_ARN"),
    ("launcher-class-misspelt", _set("run_launcher.class", "EcsRunLaunchr"), {}, "EcsRunLaunchr"),
    ("tag-limit-not-a-number", _set("run_coordinator.config.tag_concurrency_limits", [{"key": "k", "limit": "2"}]), {}, "limit"),
    # Why the file sets no pool default: Dagster refuses `concurrency` next to the
    # coordinator's own limits, and only the coordinator reads the limit from env.
    ("pools-next-to-coordinator-limits", _set("concurrency", {"pools": {"default_limit": 1}}), {}, "concurrency"),
]


@pytest.mark.parametrize(("edit", "env", "named"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_production_config_fails_validation(tmp_path, prod_env, monkeypatch, edit, env, named):
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    base = install(tmp_path, PROD_YAML, edit)
    with pytest.raises(DagsterInvalidConfigError) as raised:
        validate_instance_dir(base)
    assert named in str(raised.value) + repr(getattr(raised.value, "errors", ""))


def test_the_instance_schema_alone_does_not_check_the_launchers_config(tmp_path, prod_env):
    """Why validate_instance_dir processes each class's config itself."""
    base = install(tmp_path, PROD_YAML, _set("run_launcher.config.use_current_ecs_task_confg", True))
    dagster_instance_config(str(base))  # accepted
    with pytest.raises(DagsterInvalidConfigError):
        validate_instance_dir(base)


def test_the_repo_dagster_yaml_validates_the_same_way(tmp_path, monkeypatch):
    """tests/test_definitions.py builds it on Postgres; this adds the schema-level checks."""
    for name, value in REPO_ENV.items():
        monkeypatch.setenv(name, value)
    stack.install_dagster_yaml(tmp_path)
    config = validate_instance_dir(tmp_path)
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 1
    assert config["run_retries"]["enabled"] and not config["telemetry"]["enabled"]

    monkeypatch.delenv("SESSION_ASSETS_MAX_CONCURRENT_RUNS")
    with pytest.raises(DagsterInvalidConfigError, match="SESSION_ASSETS_MAX_CONCURRENT_RUNS"):
        validate_instance_dir(tmp_path)


def test_both_files_name_the_same_stores_and_limits():
    """The production file extends the repo's; the parts they share must not drift apart."""
    repo, prod = stack.instance_config(), yaml.safe_load(PROD_YAML.read_text())
    assert prod["storage"] == repo["storage"]
    assert prod["run_coordinator"]["config"]["max_concurrent_runs"] == repo["run_coordinator"]["config"]["max_concurrent_runs"]
    assert prod["run_retries"] == repo["run_retries"]
    assert prod["retention"] == repo["retention"]
    assert prod["telemetry"] == repo["telemetry"] == {"enabled": False}


def test_the_checkouts_dagster_yaml_needs_no_environment(tmp_path, monkeypatch):
    """Stock `dagster` commands in a checkout read it with no DAGSTER_HOME and no variable set."""
    for name in REPO_ENV:
        monkeypatch.delenv(name, raising=False)
    config = validate_instance_dir(install(tmp_path, REPO_YAML))
    assert "storage" not in yaml.safe_load(REPO_YAML.read_text())  # SQLite in the stock tools' home
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 1
