"""The project's one error hierarchy: every error the handler raises derives from HandlerError."""

from collections.abc import Iterable, Mapping
from typing import Any, Final

from handler.records import Record


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


class SubmitError(HandlerError):
    """A Data Flow request failed; carries the server's or the handler's code as data.

    `ambiguous` means the request was sent and may have run (the answer was lost, cut off or a
    5xx that the backend can return after starting the run): never resend it without a lookup.
    `retryable` means a later delivery of the same event may succeed and cannot double the run.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        ambiguous: bool = False,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.message = message
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.status = status
        self.attempts = attempts
        super().__init__(f"{code}: {message}")


class InvocationFailedError(HandlerError):
    """Something in the invocation failed; raised after logging so the platform keeps the event."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        self.result = dict(result)
        failed = self.result.get("failed", [])
        errors = "; ".join(str(entry.get("error")) for entry in failed[:5])
        more = f" (+{len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} failed: {errors}{more}")
