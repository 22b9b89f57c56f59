"""Signature v2: a pinned known answer, the query in the signed message, and masking."""

from __future__ import annotations

import requests

from handler.dataflow.signing import (
    SIGNATURE_HEADER,
    Credentials,
    NcpSignatureV2,
    masked,
    signature,
    signed_headers,
    string_to_sign,
)

CREDENTIALS = Credentials("AKIAEXAMPLE", "SECRETEXAMPLE")
# Computed once from the documented formula (base64 of HMAC-SHA256) and pinned.
KNOWN_SIGNATURE = "Tf3nb7+0aTEgaUTn+iGFDqFI45lUkKeZeiQHtH/GyTI="
KNOWN_SIGNATURE_WITH_QUERY = "9XtWiliAJI8Nj7XUIM4A8rNYxn7EqrrLYC2T2PySmDE="


def test_string_to_sign_is_method_path_timestamp_and_key_on_three_lines() -> None:
    message = string_to_sign("post", "/api/v1/jobs/gqigvH123456/executions", "1700000000000", "AKIAEXAMPLE")
    assert message == "POST /api/v1/jobs/gqigvH123456/executions\n1700000000000\nAKIAEXAMPLE"


def test_known_answer_vector() -> None:
    headers = signed_headers(CREDENTIALS, "POST", "/api/v1/jobs/gqigvH123456/executions", "1700000000000")
    assert headers == {
        "x-ncp-apigw-timestamp": "1700000000000",
        "x-ncp-iam-access-key": "AKIAEXAMPLE",
        "x-ncp-apigw-signature-v2": KNOWN_SIGNATURE,
    }


def test_auth_signs_the_query_string_as_sent() -> None:
    auth = NcpSignatureV2(CREDENTIALS, clock=lambda: 1_700_000_000.0)
    unsigned = requests.Request(
        "POST",
        "https://dataflow.apigw.ntruss.com/api/v1/jobs/gqigvH123456/executions",
        params={"triggerId": "t1", "workflowId": "w1"},
        json={"parameters": {}},
    ).prepare()
    request = auth.sign(unsigned, auth.offset)
    assert request.path_url == "/api/v1/jobs/gqigvH123456/executions?triggerId=t1&workflowId=w1"
    assert request.headers[SIGNATURE_HEADER] == KNOWN_SIGNATURE_WITH_QUERY
    assert request.headers[SIGNATURE_HEADER] != KNOWN_SIGNATURE


def test_each_signing_takes_a_fresh_timestamp() -> None:
    now = [1_700_000_000.0]
    auth = NcpSignatureV2(CREDENTIALS, clock=lambda: now[0])
    first = auth.sign(requests.Request("GET", "https://h/api/v1/jobs/a/executions").prepare(), auth.offset)
    first_headers = dict(first.headers)
    now[0] += 1.5
    second = auth.sign(requests.Request("GET", "https://h/api/v1/jobs/a/executions").prepare(), auth.offset)
    assert first_headers["x-ncp-apigw-timestamp"] == "1700000000000"
    assert second.headers["x-ncp-apigw-timestamp"] == "1700000001500"
    assert second.headers[SIGNATURE_HEADER] != first_headers[SIGNATURE_HEADER]


def test_skew_correction_shifts_the_timestamp() -> None:
    auth = NcpSignatureV2(CREDENTIALS, clock=lambda: 1_700_000_000.0)
    auth.offset = -600.0
    assert auth.timestamp_ms() == "1699999400000"


def test_masked_hides_only_the_signature() -> None:
    headers = signed_headers(CREDENTIALS, "GET", "/x", "1")
    shown = masked(headers)
    assert shown[SIGNATURE_HEADER] == "***"
    assert shown["x-ncp-iam-access-key"] == "AKIAEXAMPLE"
    assert signature("SECRETEXAMPLE", "m") not in str(shown)


def test_credentials_repr_hides_the_secret() -> None:
    assert "SECRETEXAMPLE" not in repr(CREDENTIALS)
