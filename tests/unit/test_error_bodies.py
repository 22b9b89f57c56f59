"""Both documented error bodies are read (anything else falls back to the status and the body's start); a bad-state is told apart."""

from __future__ import annotations

import pytest

from handler.dataflow.client import bad_state_reading, error_from_body, refused_create
from handler.errors import RequestError


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            '{"error": {"errorCode": "200", "message": "Authentication Failed", "details": "bad signature"}}',
            ("200", "HTTP 401 Authentication Failed (gateway code 200; bad signature)"),
        ),
        (
            429,
            '{"error": {"errorCode": 420, "message": "Rate Limited"}}',
            ("420", "HTTP 429 Rate Limited (gateway code 420)"),
        ),
        (
            400,
            '{"errorType": "bad-state", "detail": "concurrency limit reached"}',
            ("bad-state", "concurrency limit reached"),
        ),
        (400, '{"errorType": "bad-parameter", "message": "numWorker"}', ("bad-parameter", "numWorker")),
        (502, "<html>\n  <body>Bad   Gateway</body>\n</html>", ("502", "<html> <body>Bad Gateway</body> </html>")),
        (500, "", ("500", "Internal Server Error")),
        (503, "[1, 2]", ("503", "[1, 2]")),
    ],
)
def test_error_bodies(status: int, body: str, expected: tuple[str, str]) -> None:
    assert error_from_body(status, "Internal Server Error", body) == expected


def test_long_bodies_are_cut_to_300_characters() -> None:
    code, message = error_from_body(500, "", "x" * 1000)
    assert code == "500"
    assert message == "x" * 300


@pytest.mark.parametrize(
    ("message", "reading"),
    [
        ("concurrency limit reached", "limit"),
        ("job gq1 has reached its maximum number of concurrent executions (maxConcurrentRuns 2)", "limit"),
        ("maxConcurrentRuns exceeded", "limit"),
        ("execution limit reached: 3 running", "limit"),
        ("too many executions in progress", "limit"),
        ("최대 동시 실행 횟수를 초과했습니다", "limit"),  # the Korean console's words for the setting
        ("job is not runnable", "cannot-run"),
        ("job gq1 is not runnable in its current status (STOPPED)", "cannot-run"),
        ("the job is disabled", "cannot-run"),
        ("bad state", "unclear"),
        ("", "unclear"),
    ],
)
def test_a_bad_state_is_read_as_a_concurrency_limit_a_job_that_cannot_run_or_unclear(
    message: str, reading: str
) -> None:
    assert bad_state_reading(message) == reading


def test_a_create_refused_at_the_concurrency_limit_is_a_retryable_deferral() -> None:
    refused = refused_create(RequestError("bad-state", "concurrency limit reached", kind="permanent", status=400))
    assert refused is not None
    assert (refused.code, refused.kind, refused.status) == ("deferred", "retryable", 400)
    assert refused.message == "the job is at Data Flow's own limit of concurrent runs (maxConcurrentRuns): " + (
        "concurrency limit reached"
    )


def test_an_unclear_bad_state_stays_permanent_and_names_the_limit_and_doctor() -> None:
    refused = refused_create(RequestError("bad-state", "bad state", kind="permanent", status=400))
    assert refused is not None and (refused.code, refused.kind) == ("bad-state", "permanent")
    assert refused.message.startswith("bad state; if the job has a maxConcurrentRuns limit it may be at it: ")
    assert "`python -m handler doctor`" in refused.message


@pytest.mark.parametrize(
    "error",
    [
        RequestError("bad-state", "job is not runnable", kind="permanent", status=400),
        RequestError("bad-parameter", "concurrency limit reached", kind="permanent", status=400),
    ],
)
def test_other_refusals_are_left_as_they_are(error: RequestError) -> None:
    assert refused_create(error) is None
