from __future__ import annotations

import pytest

from session_assets.resources import ObjectStoreResource


@pytest.fixture(params=["local", "s3"])
def object_store(request) -> ObjectStoreResource:
    return request.getfixturevalue(f"{request.param}_object_store")


def test_objects_round_trip_and_overwrite(object_store):
    key = "observations/team=1/scanner=a/date=2024-03-01/000001.jsonl.gz"
    object_store.put(key, b"first")
    object_store.put(key, b"second")  # a retry overwrites the same key
    object_store.put("observations/team=2/other.jsonl.gz", b"x")
    assert object_store.get(key) == b"second"
    assert list(object_store.list_keys("observations/team=1/")) == [key]
    assert object_store.location(key).endswith("/" + key)


def test_s3_objects_land_in_the_bucket_under_the_prefix(s3_object_store, s3_endpoint, s3_bucket):
    import boto3

    s3_object_store.put("a/b.txt", b"hello")
    body = boto3.client("s3", endpoint_url=s3_endpoint).get_object(Bucket=s3_bucket, Key="prefix/a/b.txt")["Body"].read()
    assert body == b"hello"


def test_unknown_object_store_scheme_is_named():
    from dagster_aws.s3 import S3Resource

    store = ObjectStoreResource(url="ftp://x/y", s3=S3Resource())
    with pytest.raises(ValueError, match="ftp://x/y"):
        store.put("k", b"v")
