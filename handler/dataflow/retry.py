"""The retry policy as data: which answers are retried, which may have run, attempts and backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from handler.records import Record

if TYPE_CHECKING:  # types for the checker only, as errors.FailureKind
    from typing import Literal

    from handler.errors import FailureKind

    # What the client asks of Data Flow: create a run, list a job's runs, get one run.
    Operation = Literal["create", "list", "get"]
    # What the object-storage client asks of the S3 API: list a prefix, read an object's state, write an object.
    StorageOperation = Literal["list-objects", "head-object", "put-object"]
    AnyOperation = Operation | StorageOperation


class RetryPolicy(Record):
    """Like urllib3's Retry: rules as values, asked by the client, never scattered through it.

    `retry_statuses` were refused before the backend was reached (the gateway's rate limits, its
    "endpoint error"); `ambiguous_statuses` may come after the backend started the run. An operation
    in `idempotent_operations` is retried on those too: reading twice is harmless. The rules name
    operations, not HTTP methods: whether a resend is harmless depends on what is asked, and two
    operations may share a method. `later_codes` are
    gateway codes of a status that end the invocation's tries but leave the event retryable later
    (a daily or monthly quota resets long after any invocation ends).
    """

    __slots__ = (
        "attempts",
        "retry_statuses",
        "ambiguous_statuses",
        "idempotent_operations",
        "later_codes",
        "backoff_base",
        "backoff_cap",
        "retry_after_cap",
    )

    def __init__(
        self,
        *,
        attempts: int = 4,
        retry_statuses: frozenset[int] = frozenset({408, 429, 503}),
        ambiguous_statuses: frozenset[int] = frozenset({500, 502, 504}),
        idempotent_operations: frozenset[AnyOperation] = frozenset({"list", "get"}),
        later_codes: frozenset[tuple[int, str]] = frozenset({(429, "400")}),
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        retry_after_cap: float = 5.0,
    ) -> None:
        self.attempts: Final = attempts
        self.retry_statuses: Final = retry_statuses
        self.ambiguous_statuses: Final = ambiguous_statuses
        self.idempotent_operations: Final = idempotent_operations
        self.later_codes: Final = later_codes
        self.backoff_base: Final = backoff_base
        self.backoff_cap: Final = backoff_cap
        self.retry_after_cap: Final = retry_after_cap

    def status_kind(self, operation: AnyOperation, status: int) -> FailureKind:
        """What a non-2xx answer to `operation` says about the run it asked for."""
        if status in self.retry_statuses:
            return "retryable"
        if status in self.ambiguous_statuses:
            return "retryable" if operation in self.idempotent_operations else "ambiguous"
        return "permanent"

    def transport_kind(self, operation: AnyOperation, kind: FailureKind) -> FailureKind:
        """A transport failure's kind for `operation`: a read that may have been answered is read again."""
        return "retryable" if kind == "ambiguous" and operation in self.idempotent_operations else kind

    def retries_now(self, kind: FailureKind, status: int | None = None, code: str = "") -> bool:
        """Whether this failure is tried again inside the invocation (time and attempts allowing)."""
        return kind == "retryable" and (status, code) not in self.later_codes

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.attempts

    def backoff(self, attempt: int, jitter: Callable[[], float], asked: float | None) -> float:
        """Full jitter, exponential per attempt; a Retry-After the server sent is a floor (capped)."""
        delay: float = jitter() * min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        if asked is not None:
            delay = max(delay, min(asked, self.retry_after_cap))
        return delay
