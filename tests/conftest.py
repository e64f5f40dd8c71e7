"""Real stores for every test: one chDB path and one pgserver per test session,
a fresh ClickHouse database and Postgres database per test, and moto's S3
server on loopback."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from hypothesis import settings

from session_assets.stores import clickhouse, postgres
from session_assets.resources import ClickHouseResource, ObjectStoreResource, object_store_for, PostgresResource
from tests.support import app_database, free_port

# Test credentials for the loopback S3 server; tests grep for them in logs.
TEST_AWS_KEY_ID = "testing-key-id"
TEST_AWS_SECRET = "testing-secret-key"

# `pytest --slow`: property tests run many more examples (tests/test_properties.py).
settings.register_profile("slow", max_examples=200)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run the property tests with many more examples")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):
        settings.load_profile("slow")


@pytest.fixture(scope="session")
def stack_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def chdb_url(stack_home: Path) -> Iterator[str]:
    yield f"chdb://{stack_home / 'clickhouse'}"
    clickhouse.close_clients()


@pytest.fixture
def clickhouse_resource(chdb_url: str) -> ClickHouseResource:
    """A ClickHouse database of its own, migrated, on the session's chDB path."""
    resource = ClickHouseResource(url=chdb_url, database=f"t_{uuid.uuid4().hex[:12]}")
    resource.migrate()
    return resource


@pytest.fixture(scope="session")
def postgres_admin_url(stack_home: Path) -> Iterator[str]:
    url = postgres.embedded_server_url(stack_home / "postgres", database="postgres")
    yield url
    postgres.close_pools()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> str:
    """A fresh, migrated Postgres database on the session's pgserver (run time only checks the schema)."""
    return app_database(postgres_admin_url)


@pytest.fixture
def postgres_resource(postgres_url: str) -> PostgresResource:
    return PostgresResource(url=postgres_url)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 API server on a free loopback port, with test credentials in the environment."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ACCESS_KEY_ID=TEST_AWS_KEY_ID, AWS_SECRET_ACCESS_KEY=TEST_AWS_SECRET, AWS_DEFAULT_REGION="us-east-1"
    )
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    name = f"bucket-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def local_object_store(tmp_path: Path) -> ObjectStoreResource:
    return object_store_for(f"file://{tmp_path / 'objects'}", S3Resource())


@pytest.fixture
def s3_object_store(s3_endpoint: str, s3_bucket: str) -> ObjectStoreResource:
    return object_store_for(f"s3://{s3_bucket}/prefix", S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1"))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance
