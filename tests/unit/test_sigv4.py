"""The S3 signer pinned by AWS's published SigV4 known answers and S3's own signing examples."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from handler.storage.sigv4 import (
    S3Credentials,
    S3SignerV4,
    authorization,
    canonical_query,
    canonical_request,
    canonical_uri,
    credential_scope,
    query_pairs,
    sha256_hex,
    string_to_sign,
)

SUITE = Path(__file__).resolve().parent.parent / "data" / "aws-sig-v4-test-suite"
CASES = sorted(path.name for path in SUITE.iterdir() if path.is_dir())
SUITE_CREDENTIALS = S3Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
# The examples of S3's "Signature Calculations for the Authorization Header" page.
S3_CREDENTIALS = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_EXAMPLE_TIME = datetime(2013, 5, 24, tzinfo=UTC).timestamp()
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def read(case: str, extension: str) -> str:
    return (SUITE / case / f"{case}.{extension}").read_text(encoding="utf-8")


def parse_request(text: str) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    """(method, raw path, raw query, headers, body) of a suite's .req file."""
    head, _, body = text.partition("\n\n")
    request_line, *lines = head.split("\n")
    method, rest = request_line.split(" ", 1)
    target = rest.rsplit(" ", 1)[0]  # a raw path may hold a space (get-space)
    path, _, query = target.partition("?")
    headers = [(name, value) for name, _, value in (line.partition(":") for line in lines if line)]
    return method, path, query, headers, body.encode("utf-8")


@pytest.mark.parametrize("case", CASES)
def test_the_published_vectors_give_the_same_canonical_request_string_and_signature(case: str) -> None:
    method, path, query, headers, body = parse_request(read(case, "req"))
    creq_text = read(case, "creq")
    token = next(
        (line.split(":", 1)[1] for line in creq_text.split("\n") if line.startswith("x-amz-security-token:")), None
    )
    if token and not any(name.lower() == "x-amz-security-token" for name, _ in headers):
        headers.append(("X-Amz-Security-Token", token))
    amz_date = next(value for name, value in headers if name.lower() == "x-amz-date")
    # The suite's service normalises paths; S3 does not (the next tests), the encoding is the same.
    uri = canonical_uri(path, normalize=True)
    creq, signed = canonical_request(method, uri, canonical_query(query_pairs(query)), headers, sha256_hex(body))
    assert creq == creq_text
    scope = credential_scope(amz_date, "us-east-1", "service")
    sts = string_to_sign(amz_date, scope, creq)
    assert sts == read(case, "sts")
    assert authorization(SUITE_CREDENTIALS, scope, signed, sts) == read(case, "authz")


def test_the_suite_covers_what_s3_keys_need() -> None:
    assert {"get-utf8", "get-space", "get-vanilla-query-order-key", "get-vanilla-with-session-token"} <= set(CASES)
    assert {"post-x-www-form-urlencoded", "get-relative-relative", "post-sts-header-before"} <= set(CASES)


def test_s3_encodes_a_key_once_and_never_normalises_it() -> None:
    assert canonical_uri("/bucket/a//b/../c d+e/ሴ", normalize=False) == "/bucket/a//b/../c%20d%2Be/%E1%88%B4"
    assert canonical_uri("/bucket/100%", normalize=False) == "/bucket/100%25"


def sign(url: str, credentials: S3Credentials = S3_CREDENTIALS, method: str = "GET") -> requests.PreparedRequest:
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = url
    prepared.headers = requests.structures.CaseInsensitiveDict()
    prepared.body = None
    return S3SignerV4(credentials, "us-east-1", lambda: S3_EXAMPLE_TIME).sign(prepared)


def test_the_signer_gives_s3s_published_list_objects_example() -> None:
    # S3's documented example "GET Bucket (List Objects)": GET /?max-keys=2&prefix=J on examplebucket.
    prepared = sign("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J")
    assert prepared.headers["x-amz-content-sha256"] == EMPTY_SHA256
    assert prepared.headers["x-amz-date"] == "20130524T000000Z"
    assert prepared.headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_s3s_published_get_object_example_with_a_signed_range() -> None:
    headers = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
    ]
    creq, signed = canonical_request("GET", canonical_uri("/test.txt", normalize=False), "", headers, EMPTY_SHA256)
    scope = credential_scope("20130524T000000Z", "us-east-1", "s3")
    header = authorization(S3_CREDENTIALS, scope, signed, string_to_sign("20130524T000000Z", scope, creq))
    assert header.endswith("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_a_session_token_is_sent_and_signed_and_never_shown() -> None:
    credentials = S3Credentials("ASIAEXAMPLE", "the-secret", "the-session-token")
    prepared = sign("https://examplebucket.s3.amazonaws.com/?list-type=2", credentials)
    assert prepared.headers["x-amz-security-token"] == "the-session-token"
    assert "x-amz-security-token" in prepared.headers["Authorization"].split("SignedHeaders=")[1]
    assert "the-secret" not in repr(credentials)
    assert "the-session-token" not in repr(credentials)


def test_ncp_is_addressed_by_path_and_aws_by_host_name_unless_the_bucket_cannot_be_one() -> None:
    from handler.storage.client import NCP_OBJECT_STORAGE, aws_s3

    assert NCP_OBJECT_STORAGE.region == "kr-standard"
    assert NCP_OBJECT_STORAGE.object_url("data", "in/a b+c.csv") == (
        "https://kr.object.ncloudstorage.com/data/in/a%20b%2Bc.csv"
    )
    assert NCP_OBJECT_STORAGE.object_url("data") == "https://kr.object.ncloudstorage.com/data"
    aws = aws_s3("ap-northeast-2")
    assert aws.object_url("landing", "dt=2026-12-05/ሴ.csv") == (
        "https://landing.s3.ap-northeast-2.amazonaws.com/dt%3D2026-12-05/%E1%88%B4.csv"
    )
    # A dotted name would not match the TLS certificate's wildcard as a host name.
    assert aws.object_url("my.bucket", "k") == "https://s3.ap-northeast-2.amazonaws.com/my.bucket/k"
