"""The test object store (SeaweedFS) behaves as the S3 publisher relies on: buckets, puts, listings,
conditional creates refused with 412, and no anonymous access."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError


def test_bucket_put_list_and_conditional_create(object_store, bucket: str) -> None:
    s3 = object_store.client()
    assert object_store.endpoint.startswith("http://127.0.0.1:")
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    s3.put_object(Bucket=bucket, Key="m/1/saved_model.pb", Body=b"abc")
    first = s3.put_object(Bucket=bucket, Key="m/.claims/1", Body=b"one", IfNoneMatch="*")
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="m/.claims/1", Body=b"two", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    # The refused write changed nothing.
    assert s3.get_object(Bucket=bucket, Key="m/.claims/1")["Body"].read() == b"one"

    listing = s3.list_objects_v2(Bucket=bucket, Prefix="m/")
    assert sorted(o["Key"] for o in listing["Contents"]) == ["m/.claims/1", "m/1/saved_model.pb"]
    folders = s3.list_objects_v2(Bucket=bucket, Prefix="m/", Delimiter="/")
    assert sorted(p["Prefix"] for p in folders["CommonPrefixes"]) == ["m/.claims/", "m/1/"]


def test_anonymous_and_wrong_credentials_are_refused(object_store, bucket: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{object_store.endpoint}/{bucket}?list-type=2", timeout=10)
    assert anonymous.value.code == 403

    wrong = object_store.client(credentials=(object_store.access_key, "not-the-secret"))
    with pytest.raises(ClientError) as refused:
        wrong.list_objects_v2(Bucket=bucket)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_read_only_identity_reads_but_cannot_write(object_store, bucket: str) -> None:
    object_store.client().put_object(Bucket=bucket, Key="m/1.commit.json", Body=b"{}")
    reader = object_store.client(credentials=object_store.read_only_credentials)
    assert reader.get_object(Bucket=bucket, Key="m/1.commit.json")["Body"].read() == b"{}"
    with pytest.raises(ClientError) as refused:
        reader.put_object(Bucket=bucket, Key="m/2.commit.json", Body=b"{}")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
