"""The project's one error hierarchy: every error the handler raises derives from HandlerError."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from handler.records import Record

# What a failed request says about the run it asked for, and so what may follow it:
# "retryable": surely did not run, so trying again (now or in a later delivery) cannot double it;
# "ambiguous": may have run, so it is never resent without a lookup;
# "permanent": refused for good, and a later delivery would be refused alike.
if TYPE_CHECKING:  # a type for the checker only: a Literal costs tens of microseconds at every cold start
    FailureKind = Literal["retryable", "ambiguous", "permanent"]


class HandlerError(Exception):
    """Root of every error raised by this package."""


class Problem(Record):
    """One thing wrong with the configuration or an event: where it is and why it is wrong."""

    __slots__ = ("where", "reason")

    def __init__(self, where: str, reason: str) -> None:
        self.where: Final = where
        self.reason: Final = reason

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class Problems:
    """Collects every problem found so that one error can list them all."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, where: str, reason: str) -> None:
        self.items.append(Problem(where, reason))

    def __bool__(self) -> bool:
        return bool(self.items)


class ConfigError(HandlerError):
    """The configuration is invalid; lists every problem at once."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"- {problem}" for problem in self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid configuration ({count} {noun}):\n{lines}")


class EventError(HandlerError):
    """An event, or one record of it, cannot be turned into a trigger."""

    def __init__(self, reason: str) -> None:
        # A reason may quote the event's own field names: never let a lone surrogate reach a log or result.
        self.reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(self.reason)


class RequestError(HandlerError):
    """A Data Flow request (a create or a list call) failed; its code and failure kind are data.

    `kind` is one value (FailureKind above): "ambiguous" means the request
    was sent and may have run, so it is never resent without a lookup; "retryable" means a later
    delivery of the same event may succeed and cannot double the run; "permanent" means it cannot.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        kind: FailureKind,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.message = message
        self.kind: FailureKind = kind
        self.status = status
        self.attempts = attempts
        super().__init__(f"{code}: {message}")

    def but(self, *, message: str | None = None, kind: FailureKind | None = None, attempts: int | None = None) -> Self:
        """A new error with these fields changed, as urllib3's Retry.new: one already made is never altered."""
        return type(self)(
            self.code,
            self.message if message is None else message,
            kind=self.kind if kind is None else kind,
            status=self.status,
            attempts=self.attempts if attempts is None else attempts,
        )

    @property
    def ambiguous(self) -> bool:
        return self.kind == "ambiguous"

    @property
    def retryable(self) -> bool:
        return self.kind == "retryable"


class StorageError(RequestError):
    """An object-storage (S3 API) request failed: `code` is S3's error code (SlowDown, AccessDenied, ...).

    Every storage request is a read or a write of the same bytes, so a failure is never "ambiguous":
    "retryable" (throttled, unanswered, no time left) or "permanent" (refused: the message says the fix).
    """


class InvocationFailedError(HandlerError):
    """Something in the invocation failed; raised after logging so the platform keeps the event."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        self.result = dict(result)
        failed = self.result.get("failed", [])
        errors = "; ".join(str(entry.get("error")) for entry in failed[:5])
        more = f" (+{len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} failed: {errors}{more}")
