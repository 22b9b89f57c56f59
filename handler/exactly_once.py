"""Exactly once: the dedup memory, the lookup decision and the submit/settle loop, ending in typed outcomes."""

import logging
import threading
from collections import OrderedDict
from collections.abc import Container, Mapping
from datetime import datetime
from typing import Any, Final, assert_never

from handler.clocks import Clocks
from handler.dataflow.client import CreateAnswer, ExecutionRequest
from handler.dataflow.reconcile import CLOCK_TOLERANCE, Absent, Found, Identity, Lookup, Unknown, find
from handler.errors import RequestError
from handler.outcomes import Failed, Outcome, Skipped, Submitted
from handler.planning import PlannedExecution
from handler.records import Record
from handler.results import logged
from handler.settings import DedupCheck, Settings
from handler.wiring import Wiring

log = logging.getLogger(__name__)

RECENT_KEYS = 4096
# A lookup reads at most this many pages of this size: a few requests, whatever the job's history.
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 3
# Resends after a lookup proved the run absent; each one follows an unknown outcome of its own.
MAX_RESENDS = 2


class Call(Record):
    """What every submission of one invocation shares."""

    __slots__ = ("settings", "started", "deadline", "now", "headers")

    def __init__(
        self,
        settings: Settings,
        started: float,
        deadline: float | None,
        now: datetime,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.settings: Final = settings
        # monotonic: the elapsedMs of submissions, failures and the summary counts from here
        self.started: Final = started
        self.deadline: Final = deadline
        self.now: Final = now
        self.headers: Final = headers

    @property
    def dedup_check(self) -> DedupCheck:
        return "off" if self.settings.dry_run else self.settings.dedup_check


class DedupMemory:
    """Dedup keys this warm container submitted (with the execution id) or saw end in an unknown outcome."""

    def __init__(self, capacity: int = RECENT_KEYS) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._submitted: OrderedDict[str, str | None] = OrderedDict()
        self._ambiguous: OrderedDict[str, None] = OrderedDict()
        self._owners: dict[str, str] = {}  # execution id -> the key it was started for

    def submitted(self, key: str) -> tuple[bool, str | None]:
        with self._lock:
            return key in self._submitted, self._submitted.get(key)

    def remember(self, key: str, execution_id: str | None) -> None:
        with self._lock:
            self._owners.pop(self._submitted.pop(key, None) or "", None)
            self._submitted[key] = execution_id
            if execution_id:
                self._owners[execution_id] = key
            self._ambiguous.pop(key, None)
            while len(self._submitted) > self.capacity:
                _, forgotten = self._submitted.popitem(last=False)
                self._owners.pop(forgotten or "", None)

    def mark_ambiguous(self, key: str) -> None:
        with self._lock:
            self._ambiguous[key] = None
            while len(self._ambiguous) > self.capacity:
                self._ambiguous.popitem(last=False)

    def was_ambiguous(self, key: str) -> bool:
        with self._lock:
            return key in self._ambiguous

    def others_than(self, key: str) -> Container[str]:
        """The executions this container started for any other key, as a membership test."""
        return _OtherRuns(self, key)

    def owner(self, execution_id: str) -> str | None:
        with self._lock:
            return self._owners.get(execution_id)


class _OtherRuns:
    def __init__(self, memory: DedupMemory, key: str) -> None:
        self.memory = memory
        self.key = key

    def __contains__(self, execution_id: object) -> bool:
        owner = self.memory.owner(execution_id) if isinstance(execution_id, str) else None
        return owner is not None and owner != self.key


class ExactlyOnce:
    """Runs one planned execution so that no delivery of its event starts a second run."""

    def __init__(self, wiring: Wiring, memory: DedupMemory | None = None) -> None:
        self.wiring = wiring
        self.clocks: Clocks = wiring.clocks
        self.memory = memory or DedupMemory()

    def execute(self, step: PlannedExecution, call: Call) -> Outcome:
        """One planned execution, exactly once: remembered, looked up, or submitted; logged as it ends."""
        seen, known_id = self.memory.submitted(step.dedup_key)
        if seen:
            return logged(_duplicate(step, known_id))
        mode = call.dedup_check
        after_unknown = mode != "off" and self.memory.was_ambiguous(step.dedup_key)
        # Only a dedupParameter tells which event a run belongs to; without one a check could not tell.
        if after_unknown or (mode == "always" and step.dedup_parameter is not None):
            try:
                lookup = self._lookup(step, call, by_parameters=after_unknown)
            except RequestError as exc:  # the lookup met what the submission would meet: say that
                return logged(_failed(step, exc.code, exc.message, exc.retryable, status=exc.status))
            match lookup:
                case Found():
                    self.memory.remember(step.dedup_key, lookup.execution_id)
                    return logged(_duplicate(step, lookup.execution_id))
                case Unknown():
                    message = f"cannot tell whether this event already started a run: {lookup.reason}"
                    return logged(_failed(step, "unknown-outcome", message, _replay_safe(step, mode)))
                case Absent():
                    pass
                case _:
                    assert_never(lookup)
        return logged(self._submit(step, call))

    def _submit(self, step: PlannedExecution, call: Call) -> Outcome:
        request = ExecutionRequest(step.job, step.parameters)
        for resend in range(MAX_RESENDS + 1):
            try:
                submitter = self.wiring.submitter(call.settings)
                answer = submitter.create_execution(request, deadline=call.deadline, headers=call.headers)
            except RequestError as exc:
                details = {"attempts": exc.attempts, "status": exc.status, "elapsedMs": self._since(call.started)}
                if not exc.ambiguous:
                    return _failed(step, exc.code, exc.message, exc.retryable, details, exc.status)
                settled = self._after_unknown(step, call, exc, details)
                if settled is not None:
                    return settled
                log.warning(
                    "resending: the lookup shows the execution absent",
                    extra={"dedupKey": step.dedup_key, "error": str(exc), "resend": resend + 1},
                )
                continue
            if answer.body_lost and call.dedup_check != "off":
                found = self._settle(step, call)
                if isinstance(found, Found):
                    answer = CreateAnswer(
                        {"jobExecutionId": found.execution_id, "status": found.status}, answer.attempts
                    )
            return self._submitted(step, answer, None, call)
        message = f"the execution stayed absent after {MAX_RESENDS} resends that each lost their answer"
        return _failed(step, "unknown-outcome", message, True)

    def _after_unknown(
        self, step: PlannedExecution, call: Call, exc: RequestError, details: Mapping[str, Any]
    ) -> Outcome | None:
        """The outcome after a request that may have run; None when the lookup proved it absent (resend)."""
        self.memory.mark_ambiguous(step.dedup_key)
        mode = call.dedup_check
        lookup = Unknown("DATAFLOW_DEDUP_CHECK is off") if mode == "off" else self._settle(step, call)
        match lookup:
            case Found():
                answer = CreateAnswer({"jobExecutionId": lookup.execution_id, "status": lookup.status}, 0)
                return self._submitted(step, answer, "found by lookup after " + exc.code, call)
            case Unknown():
                code, message = _unresolved(exc, lookup.reason)
                return _failed(step, code, message, _replay_safe(step, mode), details, exc.status)
            case Absent():
                return None
            case _:
                assert_never(lookup)

    def _submitted(self, step: PlannedExecution, answer: CreateAnswer, reconciled: str | None, call: Call) -> Submitted:
        if not answer.dry_run:
            self.memory.remember(step.dedup_key, answer.execution_id)
        details: dict[str, Any] = {
            "attempts": answer.attempts,
            "dryRun": answer.dry_run,
            "elapsedMs": self._since(call.started),
        }
        if reconciled:
            details["reconciled"] = reconciled
        if answer.body_lost:
            details["bodyLost"] = True
        return Submitted(
            step.route,
            step.job.job_id,
            answer.execution_id,
            answer.status,
            step.dedup_key,
            step.source,
            step.messages,
            details,
        )

    def _lookup(self, step: PlannedExecution, call: Call, *, by_parameters: bool) -> Lookup:
        """Looks for this planned execution among the job's recent ones; raises what the list call met."""
        # Nothing older than the event can be its run; the window bounds how far back a lookup reads.
        # (Taking the later bound first keeps year-1 event times from underflowing.)
        since = max(min(step.time, call.now), call.now - call.settings.dedup_window + CLOCK_TOLERANCE) - CLOCK_TOLERANCE
        identity = Identity(
            step.parameters,
            step.job.job_condition,
            step.dedup_parameter,
            since,
            by_parameters,
            self.memory.others_than(step.dedup_key),
        )

        def list_page(page: int, limit: int) -> dict[str, Any]:
            return self.wiring.submitter(call.settings).list_executions(
                step.job.job_id, page=page, limit=limit, deadline=call.deadline, headers=call.headers
            )

        try:
            lookup = find(list_page, identity, limit=LOOKUP_PAGE_SIZE, max_pages=LOOKUP_MAX_PAGES)
        except RequestError as exc:
            if exc.status != 404:
                raise
            lookup = Absent(0)  # no such job: nothing can have run, and the submission will say so
        log.info("lookup", extra={"dedupKey": step.dedup_key, "route": step.route, "lookup": _describe(lookup)})
        return lookup

    def _settle(self, step: PlannedExecution, call: Call) -> Lookup:
        """A lookup after an unknown outcome: any failure of its own leaves the outcome unknown."""
        try:
            return self._lookup(step, call, by_parameters=True)
        except RequestError as exc:
            return Unknown(f"the lookup failed ({exc})")

    def _since(self, started: float) -> float:
        return round((self.clocks.monotonic() - started) * 1000, 1)


def _duplicate(step: PlannedExecution, execution_id: str | None) -> Skipped:
    return Skipped(step.route, "duplicate", step.source, step.messages, step.dedup_key, execution_id)


def _failed(
    step: PlannedExecution,
    code: str,
    message: str,
    retryable: bool,
    details: Mapping[str, Any] | None = None,
    status: int | None = None,
) -> Failed:
    return Failed(
        step.route,
        step.job.job_id,
        code,
        message,
        retryable,
        step.source,
        step.messages,
        step.dedup_key,
        status,
        details,
    )


def _describe(lookup: Lookup) -> str:
    match lookup:
        case Found():
            return f"found {lookup.execution_id}"
        case Absent():
            return f"absent ({lookup.examined} executions in the window)"
        case Unknown():
            return f"cannot tell: {lookup.reason}"
        case _:
            assert_never(lookup)


def _replay_safe(step: PlannedExecution, mode: DedupCheck) -> bool:
    """Whether a redelivery of a run that may exist is checked first, in any container."""
    return mode == "always" and step.dedup_parameter is not None


def _unresolved(exc: RequestError, reason: str) -> tuple[str, str]:
    """(code, message) of a request that may have run and that the lookup could not settle."""
    code = exc.code if exc.code in ("unknown-outcome", "bad-response") else "unknown-outcome"
    cause = exc.message if code == exc.code else f"{exc.code}: {exc.message}"
    return code, f"{cause}; not resent, because {reason}"
