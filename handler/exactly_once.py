"""Exactly once: the dedup memory, the lookup decision and the submit/settle loop, ending in typed outcomes."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar, assert_never

from handler.clocks import Clocks
from handler.dataflow.client import LIMIT_HINT, CreateAnswer, ExecutionRequest
from handler.errors import RequestError
from handler.outcomes import Failed, Outcome, Skipped, Submitted
from handler.planning import CoalescedPlan, Member, PlannedExecution, unique_keys
from handler.records import Record
from handler.results import logged
from handler.routes import Route
from handler.runs.execution import FINGERPRINTED
from handler.runs.reader import Asked, Runs, Source, source
from handler.runs.view import Absent, Coverage, Found, Identity, Lookup, Unknown
from handler.runs.view import Member as RunMember
from handler.settings import Settings
from handler.wiring import Wiring

if TYPE_CHECKING:
    from handler.events import Platform
    from handler.settings import DedupCheck, Unverifiable

_T = TypeVar("_T")
# Executions carry the service's clock and events the source's, both NTP-synchronised; the service's
# createdDate is truncated to the second. A run created this long before the event still covers it.
CLOCK_TOLERANCE = timedelta(seconds=5)

log = logging.getLogger(__name__)

RECENT_KEYS = 4096
# Data Flow's default execution timeout (minutes): a run older than that is no longer going.
DEFAULT_TIMEOUT_MINUTES = 360
# A wait for the job's creates in flight wakes this often to check the invocation's deadline.
GATE_POLL_S = 0.5
SWEPT_GUARANTEE = (
    "always checked: a file a run covers is a duplicate; where the runs cannot be identified, a file is skipped as "
    "unproven, never started twice"
)
SWEPT_ALONE = (
    "; served by its sweep alone, such a route then starts nothing once its job has runs: declare its parameters "
    "in the job (doctor says how runs echo)"
)
# The skip of a swept object whose duplicate check cannot prove it new: a sweep starts only what it can.
UNPROVEN = "unproven"
# How far a schedule's or a direct call's time may run ahead of this clock: the gateway's signature window.
FUTURE_TOLERANCE = timedelta(minutes=5)
UNVERIFIABLE_HINT = (
    "set a dedupParameter the job echoes, or check how it echoes with `python -m handler doctor`; "
    "see docs/delivery-guarantees.md"
)
# Resends after a lookup proved the run absent; each one follows an unknown outcome of its own.
MAX_RESENDS = 2


class Call(Record):
    """What every submission of one invocation shares."""

    __slots__ = ("settings", "started", "deadline", "now", "headers", "reaches", "platform")

    def __init__(
        self,
        settings: Settings,
        started: float,
        deadline: float | None,
        now: datetime,
        *,
        headers: Mapping[str, str] | None,
        reaches: dict[str, datetime] | None = None,
        platform: Platform = "aws",
    ) -> None:
        self.settings: Final = settings
        # monotonic: the elapsedMs of submissions, failures and the summary counts from here
        self.started: Final = started
        self.deadline: Final = deadline
        self.now: Final = now
        self.headers: Final = headers
        # Per job, how far back the invocation's lookups reach: its one read of the job goes that far.
        self.reaches: Final[dict[str, datetime]] = {} if reaches is None else reaches
        # Whose object storage a group's manifest is written to (its endpoint and keys).
        self.platform: Final = platform

    def reach(self, job_id: str, since: datetime) -> datetime:
        return min(self.reaches.get(job_id, since), since)

    @property
    def dedup_check(self) -> DedupCheck:
        return "off" if self.settings.dry_run else self.settings.dedup_check


class DedupMemory:
    """Dedup keys this warm container submitted (with the execution id) or saw end in an unknown outcome,
    and which event each execution it started or found belongs to (two events never share a run)."""

    def __init__(self, capacity: int = RECENT_KEYS, wall: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.wall = wall
        self._lock = threading.Lock()
        # key -> (its execution id, when this container remembered it: its run is no older)
        self._submitted: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._ambiguous: OrderedDict[str, None] = OrderedDict()
        self._owners: dict[str, str] = {}  # execution id -> the key it was started or found for

    def submitted(self, key: str, since: datetime | None = None) -> tuple[bool, str | None]:
        """Whether this container has the key's run, and which; with `since` (an event's time), only a run it
        remembered since then counts: an object's key is its state, and the same bytes uploaded again later
        share it, though the run of the first upload did not see the second."""
        with self._lock:
            held = self._submitted.get(key)
            if held is None or (since is not None and held[1] < (since - CLOCK_TOLERANCE).timestamp()):
                return False, None
            return True, held[0]

    def remember(self, key: str, execution_id: str | None) -> None:
        with self._lock:
            self._remember(key, execution_id)

    def claim(self, key: str, execution_id: str | None) -> bool:
        """Takes a found run for `key` unless another event of this container holds it; atomic."""
        with self._lock:
            if execution_id and self._owners.get(execution_id, key) != key:
                return False
            self._remember(key, execution_id)
        return True

    def _remember(self, key: str, execution_id: str | None) -> None:
        self._owners.pop(self._submitted.pop(key, (None, 0.0))[0] or "", None)
        self._submitted[key] = (execution_id, self.wall())
        if execution_id:
            self._owners[execution_id] = key
        self._ambiguous.pop(key, None)
        while len(self._submitted) > self.capacity:
            _, (forgotten, _) = self._submitted.popitem(last=False)
            self._owners.pop(forgotten or "", None)

    def mark_ambiguous(self, key: str) -> None:
        with self._lock:
            self._ambiguous[key] = None
            while len(self._ambiguous) > self.capacity:
                self._ambiguous.popitem(last=False)

    def was_ambiguous(self, key: str) -> bool:
        with self._lock:
            return key in self._ambiguous

    def others_than(self, key: str, besides: str | None = None) -> Container[str]:
        """The executions this container started or found for any other key (and `besides`), as a membership test."""
        return _OtherRuns(self, key, besides)

    def owner(self, execution_id: str) -> str | None:
        with self._lock:
            return self._owners.get(execution_id)


class _OtherRuns:
    def __init__(self, memory: DedupMemory, key: str, besides: str | None) -> None:
        self.memory = memory
        self.key = key
        self.besides = besides

    def __contains__(self, execution_id: object) -> bool:
        if execution_id == self.besides:
            return True
        owner = self.memory.owner(execution_id) if isinstance(execution_id, str) else None
        return owner is not None and owner != self.key


class Flights:
    """Per job, the creates of this container whose answer is not taken in yet. A read may show such a run
    before its owner remembered it (reads and creates never wait for each other): a lookup that found a
    run it cannot place, ours by its parameters or one that echoes too little, first waits for the creates
    that were in flight when it read, then judges again with what their answers said."""

    def __init__(self, clocks: Clocks) -> None:
        self.clocks = clocks
        self._changed = threading.Condition()
        self._started = 0
        self._flying: dict[str, set[int]] = {}  # job -> the numbers of its creates in flight

    def start(self, job_id: str) -> int:
        with self._changed:
            self._started += 1
            self._flying.setdefault(job_id, set()).add(self._started)
            return self._started

    def end(self, job_id: str, number: int) -> None:
        with self._changed:
            flying = self._flying.get(job_id, set())
            flying.discard(number)
            if not flying:
                self._flying.pop(job_id, None)
            self._changed.notify_all()

    def mark(self) -> int:
        """The number of the latest create started: those up to it may show in a read made before now."""
        with self._changed:
            return self._started

    def landed(self, job_id: str, mark: int, deadline: float | None) -> bool:
        """Waits until the job's creates numbered up to `mark` have ended; True if it waited for any."""
        waited = False
        with self._changed:
            while any(number <= mark for number in self._flying.get(job_id, ())):
                waited = True
                left = None if deadline is None else deadline - self.clocks.monotonic()
                if left is not None and left <= 0:
                    raise RequestError("timeout", "no time left to wait for this job's creates", kind="retryable")
                self._changed.wait(None if left is None else min(left, GATE_POLL_S))
        return waited


class RunningGuard:
    """Per job, the runs admitted under maxRunning whose create has not ended yet: no listing shows them.

    A run is counted from the listing, from the runs this container started (they join the job's runs
    before its next question), or from `pending` until its create ended: one run may count twice for a
    moment (a deferral too many, never a run too many), never zero times.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}

    def admit(self, job_id: str, running: int, limit: int) -> tuple[bool, int]:
        """Whether one more may start, and how many runs are going or starting (the listing's and ours)."""
        with self._lock:
            going = running + self._pending.get(job_id, 0)
            if going >= limit:
                return False, going
            self._pending[job_id] = going - running + 1
            return True, going

    def release(self, job_id: str) -> None:
        with self._lock:
            left = self._pending.get(job_id, 0) - 1
            if left > 0:
                self._pending[job_id] = left
            else:
                self._pending.pop(job_id, None)


class Looked(Record):
    """A lookup's verdict, the job's executions READY or RUNNING, whether to start, and the rule the
    count followed where it could not read every run that may be going (None: it read them all)."""

    __slots__ = ("lookup", "running", "admitted", "count_rule")

    def __init__(self, lookup: Lookup, running: int, admitted: bool, count_rule: str | None = None) -> None:
        self.lookup: Final = lookup
        self.running: Final = running
        self.admitted: Final = admitted
        self.count_rule: Final = count_rule


class ExactlyOnce:
    """Runs one planned execution so that no delivery of its event starts a second run."""

    def __init__(self, wiring: Wiring, memory: DedupMemory | None = None) -> None:
        self.wiring = wiring
        self.clocks: Clocks = wiring.clocks
        self.memory = memory or DedupMemory()
        self.flights = Flights(self.clocks)
        self.runs = Runs(self.clocks.monotonic)
        self.guard = RunningGuard()
        # What the lookups of the step this thread is running saw, for that step's one log record.
        self._trail = threading.local()

    def plan_reads(self, steps: Sequence[object], call: Call) -> None:
        """How far back each job's one read of this invocation must reach: its oldest lookup's window, and
        under maxRunning every run that may still be going."""
        for step in steps:
            if isinstance(step, PlannedExecution):
                job_id, since = step.job.job_id, lookup_since(step, call)
                if step.max_running is not None:
                    since = min(since, call.now - running_span(step))
                call.reaches[job_id] = call.reach(job_id, since)

    def execute(self, step: PlannedExecution, call: Call) -> Outcome:
        """One planned execution, exactly once; its one log record also says what each lookup saw."""
        self._trail.lookups, self._trail.slot = [], None
        try:
            outcome = self._decide(step, call)
        finally:
            self._release()  # a slot under maxRunning that no create took (a duplicate, a refusal)
        return logged(outcome, {"lookups": self._trail.lookups} if self._trail.lookups else None)

    def _release(self) -> None:
        if self._trail.slot is not None:
            self.guard.release(self._trail.slot)
            self._trail.slot = None

    def _decide(self, step: PlannedExecution, call: Call) -> Outcome:
        """Remembered, looked up (and admitted under maxRunning), or submitted."""
        seen, known_id = self.memory.submitted(step.dedup_key, step.time)
        if seen:
            return _duplicate(step, known_id)
        if ahead(step, call.now) and not call.settings.dry_run:
            message = (
                f"its time {step.time.isoformat()} is ahead of this clock ({call.now.isoformat(timespec='seconds')}): "
                "no run can yet be shown to cover it, so each delivery would start again; a fire or a replay names "
                "a time that has come (a dry run or explain shows what a future one renders)"
            )
            return step_failed(step, "bad-event", message, False)
        mode = call.dedup_check
        checks = (
            not step.members
            # A sweep lists what already ran as well: it always looks, whatever the setting.
            and (mode == "always" or swept(step) or (mode == "ambiguous" and self.memory.was_ambiguous(step.dedup_key)))
        )
        unverified = False
        refused = self._rerun_refused(step, call) if checks and unidentifiable(step) else None
        if refused is not None:
            return refused
        if checks or step.max_running is not None:
            try:
                looked = self._lookup(step, call, "check" if checks else "count")
            except RequestError as exc:  # the lookup met what the submission would meet: say that
                return _lookup_failed(step, exc)
            decided = self._judged(step, call, looked) if checks else None
            if decided is not None:
                return decided
            unverified = checks and isinstance(looked.lookup, Unknown)
            if not looked.admitted:
                going = f"{looked.running} executions READY, RUNNING or starting"
                counted = "" if looked.count_rule is None else f" ({looked.count_rule})"
                message = f"the job has {going}{counted} (maxRunning {step.max_running})"
                return step_failed(step, "deferred", message, True, {"running": looked.running})
        return self._submit(step, call, unverified)

    def _judged(self, step: PlannedExecution, call: Call, looked: Looked) -> Outcome | None:
        """The outcome a lookup decides before any submission: None to go on and submit."""
        lookup = looked.lookup
        match lookup:
            case Found():
                return _duplicate(step, lookup.candidates[0][0])
            case Unknown():
                return self._unverifiable(step, call, lookup)
            case Absent():
                return None
            case _:
                assert_never(lookup)

    def existing(self, step: PlannedExecution, call: Call) -> Lookup:
        """Read-only: whether the service already has this execution's run (what a duplicate check would see)."""
        self._trail.lookups, self._trail.slot = [], None
        return self._lookup(step, call, "peek").lookup

    def _unverifiable(self, step: PlannedExecution, call: Call, lookup: Unknown) -> Failed | Skipped | None:
        """What DATAFLOW_DEDUP_UNVERIFIABLE says when the check cannot prove the run absent: None to submit.
        A swept object is skipped as unproven whatever it says: a sweep lists what ran too, every time."""
        if swept(step):
            details = {"dedupUnverifiable": True, "why": f"cannot prove this object has no run yet: {lookup.reason}"}
            return Skipped(step.route, UNPROVEN, step.source, step.messages, dedup_key=step.dedup_key, details=details)
        if not self._refuses(step.job.job_id, step.route, call, lookup.reason):
            return None
        message = f"cannot prove this event has no run yet: {lookup.reason}"
        return step_failed(step, "unknown-outcome", message, True, {"dedupUnverifiable": True})

    def _refuses(self, job_id: str, route: str | None, call: Call, reason: str) -> bool:
        """Warns once per job and container that runs cannot be identified; True when the setting is fail."""
        setting = call.settings.dedup_unverifiable
        if self.runs.readings.first_unverifiable(job_id):
            follows = "fails such events (unknown-outcome, kept)" if setting == "fail" else "submits them anyway"
            log.warning(
                "the duplicate check cannot identify runs",
                extra={
                    "jobId": job_id,
                    "route": route,
                    "reason": reason,
                    "follows": f"DATAFLOW_DEDUP_UNVERIFIABLE={setting}: this container {follows}",
                    "hint": UNVERIFIABLE_HINT,
                },
            )
        return setting == "fail"

    def expand(self, plan: CoalescedPlan, call: Call) -> list[PlannedExecution | Skipped | Failed]:
        """A coalescing route's objects: each one a run already covers skipped, the others in groups."""
        from handler import coalescing  # imported here: only coalescing routes need it at all

        known = {member.file_key: self.memory.submitted(member.file_key, member.time) for member in plan.members}
        runs = {file_key: run for file_key, (seen, run) in known.items() if seen}
        decided: list[PlannedExecution | Skipped | Failed] = list(coalescing.remembered(plan, runs))
        rest = [member for member in plan.members if member.file_key not in runs]
        lost = any(self.memory.was_ambiguous(member.file_key) for member in rest)
        if rest and (call.dedup_check == "always" or swept(plan) or (call.dedup_check == "ambiguous" and lost)):
            rest, more = self._uncovered(CoalescedPlan(plan.route, tuple(rest)), call)
            decided += more
        return decided + coalescing.groups(plan, rest, call.settings.zone)

    def _uncovered(self, plan: CoalescedPlan, call: Call) -> tuple[list[Member], list[Skipped | Failed]]:
        """The objects no run covers yet, and what was decided of the others."""
        from handler import coalescing

        try:
            cover = self._coverage(plan, call)
        except RequestError as exc:
            return [], list(coalescing.failed(plan, exc.code, exc.message, exc.retryable))
        for file_key, run in cover.covered.items():
            self.memory.remember(file_key, run)
        decided: list[Skipped | Failed] = list(coalescing.remembered(plan, cover.covered))
        refused = bool(cover.unknown) and (
            swept(plan) or self._refuses(plan.route.job.job_id, plan.route.name, call, cover.reason)
        )
        if refused:
            unsure = CoalescedPlan(plan.route, tuple(m for m in plan.members if m.file_key in cover.unknown))
            message = f"cannot prove these objects have no run yet: {cover.reason}"
            decided += (
                coalescing.unproven(unsure, message)
                if swept(plan)
                else coalescing.failed(unsure, "unknown-outcome", message, True)
            )
        left = [
            member
            for member in plan.members
            if member.file_key not in cover.covered and not (refused and member.file_key in cover.unknown)
        ]
        return left, decided

    def _coverage(self, plan: CoalescedPlan, call: Call) -> Coverage:
        """Which of the plan's objects existing runs cover, each over its own window: one read for them all."""
        from handler import coalescing

        job_id = plan.route.job.job_id
        oldest = call.now - call.settings.dedup_window
        members = [
            RunMember(member.file_key, member.key, max(min(member.time, call.now), oldest) - CLOCK_TOLERANCE)
            for member in plan.members
        ]
        source = self._source(job_id, call)
        reach = min(member.since for member in members)
        return self.runs.cover(source, coalescing.covering(plan), members, self.runs.asked(job_id, call), reach)

    def _submit(self, step: PlannedExecution, call: Call, unverified: bool) -> Outcome:
        unwritten = self._manifest_written(step, call)
        if unwritten is not None:
            return unwritten
        for resend in range(MAX_RESENDS + 1):
            try:
                answer = self._create(step, call)
            except RequestError as exc:
                details = {"attempts": exc.attempts, "status": exc.status, "elapsedMs": self._since(call.started)}
                if not exc.ambiguous:
                    refused = self._at_limit(step, call, exc)
                    return step_failed(step, refused.code, refused.message, refused.retryable, details, exc.status)
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
                    answer = _answer(found, answer.attempts)
            return self._submitted(step, answer, None, call, unverified)
        message = f"the execution stayed absent after {MAX_RESENDS} resends that each lost their answer"
        return step_failed(step, "unknown-outcome", message, True)

    def _manifest_written(self, step: PlannedExecution, call: Call) -> Failed | None:
        """The group's manifest, written before its run is created (the run reads it); a dry run only says what
        it would write. A failed write fails the group, kept for a retry: no run starts without its list."""
        manifest = step.manifest
        if manifest is None:
            return None
        if call.settings.dry_run:
            log.info("dry run: manifest not written", extra={"manifest": manifest.path, "count": len(manifest.keys)})
            return None
        try:
            self.wiring.objects(call.settings, call.platform).write(manifest, call.deadline)
        except RequestError as exc:
            message = f"the group's manifest {manifest.path} could not be written ({exc.message}); nothing was sent"
            return step_failed(step, "manifest-failed", message, True, {"manifest": manifest.path}, exc.status)
        return None

    def _create(self, step: PlannedExecution, call: Call) -> CreateAnswer:
        """The create call, in flight for the lookups that may see its run before its answer is remembered."""
        request, job_id = ExecutionRequest(step.job, step.parameters), step.job.job_id
        # With the check off and no guard, no lookup of this container waits for its creates.
        flight = self.flights.start(job_id) if call.dedup_check != "off" or step.max_running is not None else None
        answer = None
        try:
            answer = self.wiring.submitter(call.settings).create_execution(
                request, deadline=call.deadline, headers=call.headers
            )
            if not answer.dry_run:  # a 2xx whose body was cut off started a run too, its id unknown yet
                self._remember(step, answer.execution_id)
            if not answer.dry_run and not answer.body_lost:
                self.runs.readings.started(job_id, answer.execution_id, step.parameters, answer.execution)
        except RequestError as exc:
            if exc.ambiguous:
                for key in (step.dedup_key, *(member.file_key for member in step.members)):
                    self.memory.mark_ambiguous(key)
            raise
        finally:
            # The run joins the job's runs before its flight ends (a lookup waiting for it then places it),
            # and before its slot under maxRunning is released (a count sees it in one place or the other).
            if answer is not None and not answer.dry_run:
                self.runs.created(job_id, answer.execution, answer.body_lost, step.parameters)
            if flight is not None:
                self.flights.end(job_id, flight)
            self._release()
        return answer

    def _at_limit(self, step: PlannedExecution, call: Call, exc: RequestError) -> RequestError:
        """A bad-state whose words do not say why: deferred where the job's own maxConcurrentRuns is reached
        by its runs going (the reader counts them, the job says its limit), else as it came."""
        if exc.code != "bad-state" or LIMIT_HINT not in exc.message:
            return exc
        source = self._source(step.job.job_id, call)
        try:
            limit = self.runs.concurrency_limit(source)
            going, _ = self.runs.going(source, call.now - running_span(step), None) if limit else (0, None)
        except RequestError:
            return exc  # what the refusal said stands
        if limit is None or going < limit:
            return exc
        message = f"the job's {going} READY or RUNNING runs are at its maxConcurrentRuns {limit}: {exc.message}"
        return RequestError("deferred", message, kind="retryable", status=exc.status, attempts=exc.attempts)

    def _remember(self, step: PlannedExecution, execution_id: str | None) -> None:
        """The run, for its event; for a coalesced group, for each object it names too."""
        self.memory.remember(step.dedup_key, execution_id)
        for member in step.members:
            self.memory.remember(member.file_key, execution_id)

    def _after_unknown(
        self, step: PlannedExecution, call: Call, exc: RequestError, details: Mapping[str, Any]
    ) -> Outcome | None:
        """The outcome after a request that may have run; None when the lookup proved it absent (resend)."""
        mode = call.dedup_check
        if mode == "off":
            lookup: Lookup = Unknown("DATAFLOW_DEDUP_CHECK is off")
        else:
            lookup = self._settle(step, call)
        match lookup:
            case Found():
                self._remember(step, lookup.candidates[0][0])
                return self._submitted(step, _answer(lookup, 0), "found by lookup after " + exc.code, call, False)
            case Unknown():
                # Never resent blindly: a redelivery is checked first, and where it cannot tell either, it
                # may start the run twice unless the unverifiable setting is fail.
                safe = mode == "always" and (not lookup.unidentified or call.settings.dedup_unverifiable == "fail")
                code, message = _unresolved(exc, lookup.reason)
                return step_failed(step, code, message, safe, details, exc.status)
            case Absent():
                return None
            case _:
                assert_never(lookup)

    def _submitted(
        self, step: PlannedExecution, answer: CreateAnswer, reconciled: str | None, call: Call, unverified: bool
    ) -> Submitted:
        details: dict[str, Any] = {
            "attempts": answer.attempts,
            "dryRun": answer.dry_run,
            "elapsedMs": self._since(call.started),
        }
        if reconciled:
            details["reconciled"] = reconciled
        if answer.body_lost:
            details["bodyLost"] = True
        if unverified:
            details["dedupUnverifiable"] = True
        if step.manifest is not None:
            details["manifest"] = step.manifest.path
        return Submitted(
            step.route,
            step.job.job_id,
            answer.execution_id,
            answer.status,
            dedup_key=step.dedup_key,
            source=step.source,
            messages=step.messages,
            details=details,
            objects=unique_keys(step.members),
            closed=step.closed,
            request=_would_send(step) if answer.dry_run else None,
        )

    def _lookup(self, step: PlannedExecution, call: Call, purpose: str) -> Looked:
        """This event's run among the job's recent ones, and under maxRunning whether it may start.
        Purposes: `check` before a submission (claims a found run, admits); `count` only admits;
        `settle` follows a create that reached the service (claims; reads afresh; a 404 then proves
        nothing); `peek` reads only. Raises what the list call met."""
        job_id, source = step.job.job_id, self._source(step.job.job_id, call)
        # Lookups asked together share one read (a burst's events cost one listing between them); a settle
        # must see what the create just did.
        asked = self.runs.asked(job_id, call) if purpose != "settle" else None
        lookup = Absent(0) if purpose == "count" else self._found(step, call, purpose, source, asked)
        running, admitted, rule = 0, True, None
        if purpose in ("check", "count") and step.max_running is not None:
            # Runs still going may be as old as the job's timeout: the count reads back that far.
            counted = self._read(purpose, lambda: self.runs.going(source, call.now - running_span(step), asked))
            running, rule = counted if isinstance(counted, tuple) else (0, None)
            admitted, running = self.guard.admit(job_id, running, step.max_running)
            self._trail.slot = job_id if admitted else None
        if asked is not None:
            self.runs.ahead(source, call)
        self._trail.lookups.append(describe(lookup))
        return Looked(lookup, running, admitted, rule)

    def _found(self, step: PlannedExecution, call: Call, purpose: str, source: Source, asked: Asked | None) -> Lookup:
        """This event's run, claimed unless only peeked at. A run found that cannot be placed yet may be a
        sibling's whose create is still in flight: once those creates ended, the runs are judged again."""
        job_id, since, besides = step.job.job_id, lookup_since(step, call), None
        if unidentifiable(step):
            rerun = self._rerun_since(step, call, source)
            if isinstance(rerun, Unknown):
                return rerun
            since, besides = rerun, step.rerun_of
        identity = Identity(
            step.parameters,
            step.job.job_condition,
            step.dedup_parameter,
            since,
            others=self.memory.others_than(step.dedup_key, besides),
            echo_known=self.runs.readings.echoes_all(job_id),
        )

        def find() -> Lookup:
            return self._read(purpose, lambda: self.runs.find(source, identity, asked, call.reach(job_id, since)))

        lookup, mark = find(), self.flights.mark()
        if self._unplaced(lookup) and self.flights.landed(job_id, mark, call.deadline):
            lookup = find()
        return lookup if purpose == "peek" else self._claimed(step, lookup)

    def _rerun_since(self, step: PlannedExecution, call: Call, source: Source) -> datetime | Unknown:
        """Where a re-run's own run may start: in a second after the run it re-runs was created (both on the
        service's clock, so no tolerance), never before the dedup window. A re-run is asked once that run
        ended, so its own is created in a later second (createdDate's grain); a run of the same second is a
        sibling of the run re-run, and counting it would leave that step never re-run."""
        original = self.runs.one(source, step.rerun_of or "", kept=True)
        if original is None or original.created is None:
            return Unknown(f"the run it re-runs, {step.rerun_of}, is not among the job's runs (or has no createdDate)")
        return max(original.created + timedelta(seconds=1), call.now - call.settings.dedup_window)

    def _rerun_refused(self, step: PlannedExecution, call: Call) -> Failed | None:
        """A re-run of a run that does not exist, or that may still be going, is refused before any lookup."""
        try:
            original = self.runs.one(self._source(step.job.job_id, call), step.rerun_of or "")
        except RequestError as exc:
            return _lookup_failed(step, exc)
        if original is None:
            message = (
                f"rerunOf {step.rerun_of} names no run of job {step.job.job_id}: give the jobExecutionId of one "
                f"of its runs (`./launcher runs --route {step.route}` lists them)"
            )
            return step_failed(step, "bad-event", message, False)
        if original.going:
            message = (
                f"the run it re-runs, {step.rerun_of}, is {original.status}: a run is not re-run while it may still "
                "be going; re-run it once it has ended"
            )
            return step_failed(step, "rerun-refused", message, False, {"rerunOf": step.rerun_of})
        return None

    def _unplaced(self, lookup: Lookup) -> bool:
        """A run found that no event of this container holds yet, or runs that echo too little to place."""
        match lookup:
            case Found():
                return any(run is None or self.memory.owner(run) is None for run, _ in lookup.candidates)
            case Unknown():
                return lookup.unidentified > 0
            case Absent():
                return False
            case _:
                assert_never(lookup)

    def _read(self, purpose: str, question: Callable[[], _T]) -> _T | Absent:
        """A question of the job's runs; a job that does not exist (404) has none, before anything was sent."""
        try:
            return question()
        except RequestError as exc:
            if exc.status != 404 or purpose == "settle":
                raise
            return Absent(0)

    def _source(self, job_id: str, call: Call) -> Source:
        """Where this call's reads of the job go: its submitter, deadline and headers, its coalesce parameters."""
        splits = {
            route.coalesce.parameter: route.coalesce.separator if route.coalesce.manifest is None else FINGERPRINTED
            for route in call.settings.routes
            if route.coalesce is not None and route.job.job_id == job_id
        }
        return source(
            self.wiring.submitter(call.settings), job_id, deadline=call.deadline, headers=call.headers, splits=splits
        )

    def _claimed(self, step: PlannedExecution, lookup: Lookup) -> Lookup:
        """A found run becomes this event's only if no other event of this container holds it."""
        if not isinstance(lookup, Found):
            return lookup
        for execution_id, status in lookup.candidates:
            if self.memory.claim(step.dedup_key, execution_id):
                return Found(((execution_id, status),), lookup.unidentified)
        if lookup.unidentified:
            return Unknown("the matching runs belong to other events; others cannot be identified", lookup.unidentified)
        return Absent(len(lookup.candidates))

    def _settle(self, step: PlannedExecution, call: Call) -> Lookup:
        """A lookup after an unknown outcome: any failure of its own leaves the outcome unknown."""
        try:
            return self._lookup(step, call, "settle").lookup
        except RequestError as exc:
            return Unknown(f"the lookup failed ({exc})")

    def _since(self, started: float) -> float:
        return round((self.clocks.monotonic() - started) * 1000, 1)


def ahead(step: PlannedExecution, now: datetime) -> bool:
    """A schedule's fire or a direct call timed past this clock (another host's clock allowed)."""
    return step.source.get("kind") in ("schedule", "direct") and step.time > now + FUTURE_TOLERANCE


def swept(step: PlannedExecution | CoalescedPlan) -> bool:
    """Whether a sweep listed the step's object(s) rather than a notification delivering them."""
    if isinstance(step, CoalescedPlan):
        return any("sweep" in member.source for member in step.members)
    return "sweep" in step.source


def unidentifiable(step: PlannedExecution) -> bool:
    """A re-run that sends what the run it re-runs sent: only a run after that one can be its own, so its
    lookups read the job's runs created since that run (itself excluded)."""
    return step.rerun_of is not None and step.dedup_parameter is None


def running_span(step: PlannedExecution) -> timedelta:
    """How long a run of the step's job can be going: its jobCondition timeout, else Data Flow's default."""
    timeout = (step.job.job_condition or {}).get("timeout")
    return timedelta(minutes=timeout if isinstance(timeout, int) else DEFAULT_TIMEOUT_MINUTES)


def lookup_since(step: PlannedExecution, call: Call) -> datetime:
    """How far back a lookup reads: from the event's time, never before the dedup window.

    A run that carries the dedup key matches exactly whenever it was created, so an event stamped
    ahead of this container's clock is looked for over the whole window. A run matched by what it
    does must have been created after the event (clock difference allowed), or it did not see it.
    """
    oldest = call.now - call.settings.dedup_window
    if step.dedup_parameter is not None:
        start = step.time if step.time <= call.now else oldest
    else:
        start = min(step.time, call.now)
    # (The later bound first keeps year-1 event times from underflowing.)
    return max(start, oldest) - CLOCK_TOLERANCE


def _would_send(step: PlannedExecution) -> dict[str, Any]:
    """What a dry run would have sent for this execution."""
    request = ExecutionRequest(step.job, step.parameters).body()
    return {"query": step.job.query(), **request}


def _answer(found: Found, attempts: int) -> CreateAnswer:
    execution_id, status = found.candidates[0]
    return CreateAnswer({"jobExecutionId": execution_id, "status": status}, attempts)


def _duplicate(step: PlannedExecution, execution_id: str | None) -> Skipped:
    return Skipped(
        step.route, "duplicate", step.source, step.messages, dedup_key=step.dedup_key, execution_id=execution_id
    )


def step_failed(
    step: PlannedExecution,
    code: str,
    message: str,
    retryable: bool,
    details: Mapping[str, Any] | None = None,
    status: int | None = None,
) -> Failed:
    """The step failed before or without a run: its route, job, source, messages and dedup key."""
    job_id, key = step.job.job_id, step.dedup_key
    return Failed(
        step.route,
        job_id,
        code,
        message,
        retryable=retryable,
        source=step.source,
        messages=step.messages,
        dedup_key=key,
        status=status,
        details=details,
    )


def _lookup_failed(step: PlannedExecution, exc: RequestError) -> Failed:
    """A read that failed before anything was sent: its own failure, never "the execution may exist"."""
    if exc.code not in ("unknown-outcome", "bad-response"):
        return step_failed(step, exc.code, exc.message, exc.retryable, status=exc.status)
    said = exc.message.removesuffix("; the execution may exist")
    message = f"the duplicate check could not read the job's runs ({said}); nothing was sent"
    return step_failed(step, "lookup-failed", message, True, status=exc.status)


def describe(lookup: Lookup) -> str:
    match lookup:
        case Found():
            return f"found {lookup.candidates[0][0]}"
        case Absent():
            return f"absent ({lookup.examined} executions in the window)"
        case Unknown():
            return f"cannot tell: {lookup.reason}"
        case _:
            assert_never(lookup)


def _unresolved(exc: RequestError, reason: str) -> tuple[str, str]:
    """(code, message) of a request that may have run and that the lookup could not settle."""
    code = exc.code if exc.code in ("unknown-outcome", "bad-response") else "unknown-outcome"
    cause = exc.message if code == exc.code else f"{exc.code}: {exc.message}"
    return code, f"{cause}; not resent, because {reason}"


def delivery_guarantee(route: Route, dedup_check: DedupCheck, unverifiable: Unverifiable) -> dict[str, str]:
    """What a redelivery of an event to `route` can do, for each way the service may echo runs (and what a
    sweep of it does, which checks whatever the settings say)."""
    said = {label: said for _, label, said in _guarantees(route, dedup_check, unverifiable)}
    if route.sweep is not None:
        said["a sweep of it"] = SWEPT_GUARANTEE + (SWEPT_ALONE if route.sweep.only else "")
    return said


def guarantee_in(route: Route, dedup_check: DedupCheck, unverifiable: Unverifiable, identifies: bool) -> str:
    """The guarantee `route` gets where the service's answers do (or do not) identify its runs."""
    for when, _, said in _guarantees(route, dedup_check, unverifiable):
        if when is None or when == identifies:
            return said
    raise ValueError(route.name)  # every list of guarantees covers both cases


def _guarantees(
    route: Route, dedup_check: DedupCheck, unverifiable: Unverifiable
) -> list[tuple[bool | None, str, str]]:
    """(whether the answers identify runs, or None for either; the reading; what a redelivery can do)."""
    if dedup_check == "off":
        said = "never looked up: a lost answer fails as unknown-outcome, a redelivery may start twice"
        return [(None, "any reading", said)]
    if dedup_check == "ambiguous":
        said = (
            "a lost answer is looked up before any resend; a redelivery into another container is not checked "
            "and may start twice"
        )
        return [(None, "any reading", said)]
    cannot_tell = (
        "cannot identify runs: events whose check finds unidentifiable runs fail as unknown-outcome (kept); "
        "never a second run"
        if unverifiable == "fail"
        else "cannot identify runs: the run is started anyway; a redelivery into another container may start twice"
    )
    if route.dedup_parameter is not None:
        again = "a key uploaded again" if route.match.source == "object" else "a schedule fired again"
        exact = (
            f"exactly once: a redelivery is matched by its dedup key, and every event ({again} too) gets its own run"
        )
        return [
            (True, f"{route.dedup_parameter} echoed", exact),
            (False, "parameters echoed without it, or nothing", cannot_tell),
        ]
    later = "an upload" if route.match.source == "object" else "an event"
    covering = (
        f"exactly once: a run with these parameters created since the event covers it; {later} after that run "
        "started gets a run of its own"
    )
    return [
        (True, "parameters echoed (object or name/value)", covering),
        (False, "only some parameters echoed, or nothing", cannot_tell),
    ]
