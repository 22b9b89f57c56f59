"""The object-storage client against moto's S3 API on loopback, request authentication on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from emulator.s3_faults import S3FaultProxy
from emulator.s3_server import S3Server
from handler.errors import StorageError
from handler.storage.client import ObjectStorageClient, S3Endpoint
from handler.storage.sigv4 import S3Credentials
from tests.conftest import FakeClock, SleeplessClock


def fresh_bucket_name() -> str:
    return f"bucket-{uuid.uuid4().hex[:12]}"


def client_for(
    server: S3Server, url: str | None = None, secret: str | None = None, **options: object
) -> ObjectStorageClient:
    credentials = S3Credentials(server.access_key, secret or server.secret_key)
    return ObjectStorageClient(S3Endpoint(url or server.url, "us-east-1", path_style=True), credentials, **options)  # type: ignore[arg-type]


def test_a_wrong_secret_is_refused_with_403_and_the_secret_is_never_in_the_error(s3_server: S3Server) -> None:
    bucket = s3_server.bucket(fresh_bucket_name(), {"a.csv": b"1"})
    client = client_for(s3_server, secret="not-the-secret-key-0123456789")
    with pytest.raises(StorageError) as caught:
        list(client.list_objects(bucket, ""))
    assert caught.value.status == 403
    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.kind == "permanent"
    assert "check the pair" in str(caught.value)
    assert "not-the-secret-key" not in str(caught.value)
    assert "not-the-secret-key" not in repr(client.credentials)


def test_temporary_credentials_sign_with_their_session_token(s3_server: S3Server) -> None:
    bucket = s3_server.bucket(fresh_bucket_name(), {"a.csv": b"1"})
    key, secret, token = s3_server.role_credentials()
    client = ObjectStorageClient(S3Endpoint(s3_server.url, "us-east-1", True), S3Credentials(key, secret, token))
    assert [stored.key for stored in client.list_objects(bucket, "")] == ["a.csv"]
    without_token = ObjectStorageClient(S3Endpoint(s3_server.url, "us-east-1", True), S3Credentials(key, secret))
    with pytest.raises(StorageError) as caught:
        list(without_token.list_objects(bucket, ""))
    assert caught.value.status == 403
    assert secret not in str(caught.value)


def test_paging_lists_every_key_once_in_key_order(s3_server: S3Server) -> None:
    keys = {f"landing/part-{index:04d}.csv": b"x" for index in range(1003)}
    bucket = s3_server.bucket(fresh_bucket_name(), {**keys, "elsewhere/x.csv": b"x"})
    listed = [stored.key for stored in client_for(s3_server).list_objects(bucket, "landing/")]
    assert listed == sorted(keys)
    small_pages = [stored.key for stored in client_for(s3_server).list_objects(bucket, "landing/", page_size=100)]
    assert small_pages == sorted(keys)


def test_url_encoded_listings_give_back_keys_with_spaces_unicode_and_plus_signs(s3_server: S3Server) -> None:
    keys = ["in/a b.csv", "in/a+b.csv", "in/데이터 2026.csv", "in/100%.csv", "in/x&y=z?.csv", "in/ሴ/~tilde.csv"]
    bucket = s3_server.bucket(fresh_bucket_name(), {key: key.encode() for key in keys})
    client = client_for(s3_server)
    assert [stored.key for stored in client.list_objects(bucket, "in/", page_size=2)] == sorted(keys)
    # The same keys are read back one by one: the path is signed as sent, encoded once.
    for key in keys:
        assert client.head_object(bucket, key).size == len(key.encode())


def test_head_object_gives_the_etag_last_modified_size_and_version(s3_server: S3Server) -> None:
    bucket = s3_server.bucket(fresh_bucket_name())
    client = client_for(s3_server)
    written = client.put_object(bucket, "manifests/group-1.json", b'{"files": ["a.csv"]}')
    head = client.head_object(bucket, "manifests/group-1.json")
    listed = next(iter(client.list_objects(bucket, "manifests/")))
    assert head.etag == written.etag == listed.etag
    assert head.etag and '"' not in head.etag
    assert head.size == listed.size == len(b'{"files": ["a.csv"]}')
    assert head.last_modified == listed.last_modified.replace(microsecond=0)
    assert abs((head.last_modified - datetime.now(UTC)).total_seconds()) < 120
    stored = s3_server.s3.get_object(bucket, "manifests/group-1.json")
    assert stored is not None
    assert stored.value == b'{"files": ["a.csv"]}'


def test_a_missing_object_or_bucket_says_which_and_how_to_fix_it(s3_server: S3Server) -> None:
    bucket = s3_server.bucket(fresh_bucket_name())
    client = client_for(s3_server)
    with pytest.raises(StorageError) as missing:
        client.head_object(bucket, "nope.csv")
    assert (missing.value.code, missing.value.status, missing.value.kind) == ("NoSuchKey", 404, "permanent")
    with pytest.raises(StorageError) as no_bucket:
        list(client.list_objects("no-such-bucket-here", ""))
    assert no_bucket.value.code == "NoSuchBucket"
    assert "check the bucket name" in str(no_bucket.value)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(s3_server.url) as faults:
        yield faults


def test_slow_down_is_retried_with_backoff_until_it_passes(s3_server: S3Server, proxy: S3FaultProxy) -> None:
    bucket = s3_server.bucket(fresh_bucket_name(), {"in/a.csv": b"a", "in/b.csv": b"b"})
    clock = SleeplessClock()
    client = client_for(s3_server, proxy.url, clocks=clock.clocks())
    proxy.slow_downs = 3
    assert [stored.key for stored in client.list_objects(bucket, "in/")] == ["in/a.csv", "in/b.csv"]
    assert len(proxy.seen) == 4
    proxy.slow_downs = 2
    assert client.head_object(bucket, "in/a.csv").size == 1
    proxy.slow_downs = 1
    assert client.put_object(bucket, "out/m.json", b"{}").etag


def test_slow_down_past_the_attempts_is_a_retryable_error(s3_server: S3Server, proxy: S3FaultProxy) -> None:
    bucket = s3_server.bucket(fresh_bucket_name(), {"in/a.csv": b"a"})
    client = client_for(s3_server, proxy.url, clocks=SleeplessClock().clocks())
    proxy.slow_downs = 10
    with pytest.raises(StorageError) as caught:
        list(client.list_objects(bucket, "in/"))
    assert (caught.value.code, caught.value.status, caught.value.kind) == ("SlowDown", 503, "retryable")
    assert caught.value.attempts == 4
    assert len(proxy.seen) == 4


def test_no_retry_is_started_past_the_deadline(s3_server: S3Server, proxy: S3FaultProxy) -> None:
    bucket = s3_server.bucket(fresh_bucket_name(), {"in/a.csv": b"a"})
    clock = FakeClock()
    client = client_for(s3_server, proxy.url, clocks=clock.clocks())
    proxy.slow_downs = 10
    # Backoffs of 0.2 s and 0.4 s fit in one second; the third (0.8 s) would end past it.
    with pytest.raises(StorageError) as caught:
        list(client.list_objects(bucket, "in/", deadline=clock.monotonic() + 1.0))
    assert caught.value.code == "SlowDown"
    assert len(proxy.seen) == 3
    assert clock.sleeps == [0.2, 0.4]


def test_an_answer_that_never_comes_is_cut_off_at_the_deadline(s3_server: S3Server, proxy: S3FaultProxy) -> None:
    bucket = s3_server.bucket(fresh_bucket_name(), {"in/a.csv": b"a"})
    client = client_for(s3_server, proxy.url)
    proxy.holds = 1
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        client.head_object(bucket, "in/a.csv", deadline=time.monotonic() + 0.6)
    assert time.monotonic() - started < 3.0
    assert caught.value.kind == "retryable"
    assert caught.value.code == "timeout"
    assert "the time left to the deadline" in str(caught.value)
