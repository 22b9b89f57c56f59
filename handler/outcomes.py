"""Typed outcomes: how each planned execution, or each event that fired none, ended."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from handler.records import Record

if TYPE_CHECKING:
    from handler.events import EventSource


class Submitted(Record):
    """A run was started (or, in a dry run or after a 2xx without a body, would have been)."""

    __slots__ = (
        "route",
        "job_id",
        "execution_id",
        "status",
        "dedup_key",
        "source",
        "messages",
        "details",
        "objects",
        "closed",
        "request",
    )

    def __init__(
        self,
        route: str | None,
        job_id: str,
        execution_id: str | None,
        status: str | None,
        *,
        dedup_key: str,
        source: EventSource,
        messages: tuple[str, ...] = (),
        details: Mapping[str, Any] | None = None,
        objects: tuple[str, ...] = (),
        closed: str | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> None:
        self.route: Final = route
        self.job_id: Final = job_id
        self.execution_id: Final = execution_id
        self.status: Final = status
        self.dedup_key: Final = dedup_key
        self.source: Final = source
        # The SQS messages this outcome stands for: a failure names each in batchItemFailures.
        self.messages: Final = messages
        # Log-only facts (attempts, elapsedMs, reconciled, bodyLost): never part of the result entry.
        self.details: Final = details or {}
        # A coalesced run: the keys of the objects it names, and why its group closed (size, bytes, end of batch).
        self.objects: Final = objects
        self.closed: Final = closed
        # A dry run's would-be request (parameters, query, jobCondition): what it would have sent.
        self.request: Final = request


class Skipped(Record):
    """Nothing was started, on purpose: the reason is one of the contract's stable words."""

    __slots__ = ("route", "reason", "source", "messages", "dedup_key", "execution_id", "details")

    def __init__(
        self,
        route: str | None,
        reason: str,
        source: EventSource,
        messages: tuple[str, ...] = (),
        *,
        dedup_key: str | None = None,
        execution_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.route: Final = route
        self.reason: Final = reason
        self.source: Final = source
        self.messages: Final = messages
        self.dedup_key: Final = dedup_key
        # For a duplicate: the run that already covers the event.
        self.execution_id: Final = execution_id
        self.details: Final = details or {}


class Failed(Record):
    """Nothing was started and the event must be kept: `retryable` says whether a redelivery may succeed."""

    __slots__ = (
        "route",
        "job_id",
        "code",
        "message",
        "retryable",
        "source",
        "messages",
        "dedup_key",
        "status",
        "details",
    )

    def __init__(
        self,
        route: str | None,
        job_id: str | None,
        code: str,
        message: str,
        *,
        retryable: bool,
        source: EventSource,
        messages: tuple[str, ...] = (),
        dedup_key: str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.route: Final = route
        self.job_id: Final = job_id
        # The code as the error text starts with it: the server's (bad-parameter, 200) or the handler's own.
        self.code: Final = code
        self.message: Final = message
        self.retryable: Final = retryable
        self.source: Final = source
        self.messages: Final = messages
        self.dedup_key: Final = dedup_key
        # The HTTP status the service answered, when a request failed on one.
        self.status: Final = status
        self.details: Final = details or {}

    @property
    def error(self) -> str:
        return f"{self.code}: {self.message}"

    @property
    def machine_code(self) -> str:
        """The code in one namespace: kebab words, `gateway-N` for the gateway's numbers, `http-N`."""
        if self.status is not None and self.code == str(self.status):
            return f"http-{self.status}"
        return f"gateway-{self.code}" if self.code.isdigit() else self.code


Outcome = Submitted | Skipped | Failed
