"""The retry policy as data: what a status or a transport failure means for a method, and the backoff."""

from __future__ import annotations

import pytest

from handler.dataflow.retry import RetryPolicy

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("method", "status", "kind"),
    [
        ("POST", 429, "retryable"),
        ("POST", 503, "retryable"),
        ("POST", 408, "retryable"),
        ("POST", 500, "ambiguous"),
        ("POST", 502, "ambiguous"),
        ("POST", 504, "ambiguous"),
        ("GET", 500, "retryable"),  # reading twice is harmless
        ("GET", 504, "retryable"),
        ("POST", 400, "permanent"),
        ("POST", 401, "permanent"),
        ("GET", 404, "permanent"),
    ],
)
def test_a_status_means_the_same_wherever_it_is_asked(method: str, status: int, kind: str) -> None:
    assert POLICY.status_kind(method, status) == kind


def test_a_read_that_may_have_been_answered_is_read_again_but_a_create_is_not() -> None:
    assert POLICY.transport_kind("GET", "ambiguous") == "retryable"
    assert POLICY.transport_kind("POST", "ambiguous") == "ambiguous"


def test_an_exceeded_quota_is_not_retried_now_though_a_later_delivery_may_succeed() -> None:
    assert POLICY.status_kind("POST", 429) == "retryable"
    assert POLICY.retries_now("retryable", 429, "400") is False
    assert POLICY.retries_now("retryable", 429, "420") is True
    assert POLICY.retries_now("ambiguous", 500, "") is False


def test_backoff_is_full_jitter_doubling_to_a_cap_with_retry_after_as_a_floor() -> None:
    def full() -> float:
        return 1.0

    assert [POLICY.backoff(attempt, full, None) for attempt in (1, 2, 3, 6, 9)] == [0.2, 0.4, 0.8, 5.0, 5.0]
    assert POLICY.backoff(1, lambda: 0.0, None) == 0.0
    assert POLICY.backoff(1, lambda: 0.0, 3.0) == 3.0  # the server asked for 3 s
    assert POLICY.backoff(1, lambda: 0.0, 60.0) == 5.0  # capped: the invocation's time is short
    assert RetryPolicy(attempts=2).exhausted(2) and not RetryPolicy(attempts=2).exhausted(1)
