"""The retry policy as data: what a status or a transport failure means for an operation, and the backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from handler.dataflow.client import Answer, DataflowClient, ExecutionRequest
from handler.dataflow.retry import RetryPolicy
from handler.dataflow.signing import Credentials
from handler.errors import RequestError
from handler.jobs import JobSpec
from tests.conftest import FakeClock

if TYPE_CHECKING:
    from handler.dataflow.retry import Operation
    from handler.errors import FailureKind

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("operation", "status", "kind"),
    [
        ("create", 429, "retryable"),
        ("create", 503, "retryable"),
        ("create", 408, "retryable"),
        ("create", 500, "ambiguous"),
        ("create", 502, "ambiguous"),
        ("create", 504, "ambiguous"),
        ("list", 500, "retryable"),  # reading twice is harmless
        ("list", 504, "retryable"),
        ("create", 400, "permanent"),
        ("create", 401, "permanent"),
        ("list", 404, "permanent"),
    ],
)
def test_a_status_means_the_same_wherever_it_is_asked(operation: Operation, status: int, kind: str) -> None:
    assert POLICY.status_kind(operation, status) == kind


def test_a_read_that_may_have_been_answered_is_read_again_but_a_create_is_not() -> None:
    assert POLICY.transport_kind("list", "ambiguous") == "retryable"
    assert POLICY.transport_kind("create", "ambiguous") == "ambiguous"


def test_the_rules_are_stated_per_operation_not_per_http_method() -> None:
    # A create may have started a run, so what may have reached the backend is never resent;
    # a list or a get only reads, so reading again is harmless. The same statuses mean the same.
    rules = {
        operation: (
            [POLICY.status_kind(operation, status) for status in (408, 429, 503, 500, 502, 504, 400, 404)],
            [POLICY.transport_kind(operation, kind) for kind in ("retryable", "ambiguous", "permanent")],
        )
        for operation in ("create", "list", "get")
    }
    refused_before, permanent = ["retryable"] * 3, ["permanent"] * 2
    assert rules == {
        "create": (refused_before + ["ambiguous"] * 3 + permanent, ["retryable", "ambiguous", "permanent"]),
        "list": (refused_before + ["retryable"] * 3 + permanent, ["retryable", "retryable", "permanent"]),
        "get": (refused_before + ["retryable"] * 3 + permanent, ["retryable", "retryable", "permanent"]),
    }
    assert POLICY.idempotent_operations == frozenset({"list", "get"})


def test_an_exceeded_quota_is_not_retried_now_though_a_later_delivery_may_succeed() -> None:
    assert POLICY.status_kind("create", 429) == "retryable"
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


def client_whose_every_attempt(ends_in: RequestError | Answer, monkeypatch: pytest.MonkeyPatch) -> DataflowClient:
    # The transport seam: nothing is sent, and each attempt raises the same error or gets the same answer.
    client = DataflowClient("http://127.0.0.1:9", Credentials("a", "s"), clocks=FakeClock().clocks())

    def attempt(*_: object) -> Answer:
        if isinstance(ends_in, RequestError):
            raise ends_in
        return ends_in

    monkeypatch.setattr(client, "_attempt", attempt)
    return client


SENDS: dict[str, Callable[[DataflowClient], object]] = {
    "list": lambda client: client.list_executions("J1", page=0, limit=100),
    "create": lambda client: client.create_execution(ExecutionRequest(JobSpec("J1"), {})),
}


@pytest.mark.parametrize(("operation", "attempts", "kind"), [("list", 4, "retryable"), ("create", 1, "ambiguous")])
def test_the_retry_loop_raises_a_new_error_and_leaves_the_transports_untouched(
    operation: Operation, attempts: int, kind: FailureKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = RequestError("unknown-outcome", "the connection dropped after the request was sent", kind="ambiguous")
    client = client_whose_every_attempt(seen, monkeypatch)
    with pytest.raises(RequestError) as raised:
        SENDS[operation](client)
    assert raised.value is not seen
    assert (raised.value.code, raised.value.attempts, raised.value.kind) == ("unknown-outcome", attempts, kind)
    assert (seen.attempts, seen.kind) == (1, "ambiguous")  # what the attempt saw, as it saw it


def test_a_retry_after_beyond_the_cap_is_said_in_a_new_error_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = Answer(429, "Too Many Requests", {"Retry-After": "30"}, b'{"error": {"errorCode": "420"}}')
    with pytest.raises(RequestError) as raised:
        client_whose_every_attempt(busy, monkeypatch).list_executions("J1", page=0, limit=100)
    said = "; the gateway asked to retry after 30 s"
    assert (raised.value.message.endswith(said), str(raised.value).endswith(said)) == (True, True)
    assert (raised.value.attempts, raised.value.kind) == (1, "retryable")
