"""One invocation, platform-free: normalise, route, reconcile with the service, submit, and build the result."""

import logging
import threading
from collections import OrderedDict
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NotRequired, Protocol, TypedDict, assert_never, final

from handler.dataflow import Clocks, DataflowClient, ExecutionRequest, Submitted, describe_prepared
from handler.errors import ConfigError, InvocationFailedError, SubmitError
from handler.events import (
    BadEvent,
    Delivery,
    JobInvocation,
    ObjectTrigger,
    Platform,
    RouteInvocation,
    S3TestTrigger,
    ScheduleTrigger,
    Trigger,
    normalise,
)
from handler.reconcile import CLOCK_TOLERANCE, Absent, Found, Identity, Lookup, Unknown, find
from handler.records import Record
from handler.routing import PlannedExecution, Reject, Skip, plan
from handler.settings import DedupCheck, Settings, load_settings
from handler.signing import NcpSignatureV2

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

# Time kept back from the platform's deadline to log the result and raise before being killed.
DEADLINE_MARGIN_S = 0.5
RECENT_KEYS = 4096
# A lookup reads at most this many pages of this size: a few requests, whatever the job's history.
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 3
# Resends after a lookup proved the run absent; each one follows an unknown outcome of its own.
MAX_RESENDS = 2
# Entries kept per list in the result; the log has every one, and batchItemFailures is never cut.
MAX_RESULT_ENTRIES = 100


class Source(TypedDict, total=False):
    kind: str
    bucket: str
    key: str
    eventName: str
    schedule: str
    time: str
    route: str
    jobId: str
    messageId: str


@final
class SubmittedEntry(TypedDict):
    route: str | None
    jobId: str
    jobExecutionId: str | None
    status: str | None
    dedupKey: str
    source: Source


@final
class SkippedEntry(TypedDict):
    route: str | None
    reason: str
    source: Source
    dedupKey: NotRequired[str]
    jobExecutionId: NotRequired[str | None]


@final
class FailedEntry(TypedDict):
    route: str | None
    jobId: str | None
    error: str
    retryable: bool
    source: Source
    dedupKey: NotRequired[str]


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class Result(TypedDict):
    submitted: list[SubmittedEntry]
    skipped: list[SkippedEntry]
    failed: list[FailedEntry]
    dryRun: bool
    batchItemFailures: NotRequired[list[BatchItemFailure]]
    omitted: NotRequired[dict[str, int]]


Entry = SubmittedEntry | SkippedEntry | FailedEntry


class Submitter(Protocol):
    def create_execution(
        self, request: ExecutionRequest, *, deadline: float | None = None, headers: Mapping[str, str] | None = None
    ) -> Submitted: ...

    def list_executions(
        self,
        job_id: str,
        *,
        page: int,
        limit: int,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...


class DryRunSubmitter:
    """Builds and signs each request exactly as it would be sent, logs it masked, sends nothing."""

    def __init__(self, client: DataflowClient, placeholder_credentials: bool) -> None:
        self.client = client
        self.placeholder_credentials = placeholder_credentials

    def create_execution(
        self, request: ExecutionRequest, *, deadline: float | None = None, headers: Mapping[str, str] | None = None
    ) -> Submitted:
        prepared = self.client.prepare_create(request, headers)
        log.info(
            "dry-run request",
            extra={"request": describe_prepared(prepared), "placeholderCredentials": self.placeholder_credentials},
        )
        return Submitted({}, 0, dry_run=True)

    def list_executions(self, job_id: str, **options: Any) -> dict[str, Any]:
        # Reading changes nothing; a dry run turns the dedup check off, so nothing calls this yet.
        return self.client.list_executions(job_id, **options)


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


def source_of(trigger: Trigger, message_id: str | None) -> Source:
    source: Source
    match trigger:
        case ObjectTrigger():
            source = {"kind": "object", "bucket": trigger.bucket, "key": trigger.key, "eventName": trigger.event_name}
        case ScheduleTrigger():
            source = {"kind": "schedule", "schedule": trigger.schedule, "time": trigger.time.isoformat()}
        case RouteInvocation():
            source = {"kind": "direct", "route": trigger.route, "time": trigger.time.isoformat()}
        case JobInvocation():
            source = {"kind": "direct", "jobId": trigger.job.job_id, "time": trigger.time.isoformat()}
        case S3TestTrigger():
            source = {"kind": "test"}
        case BadEvent():
            source = {"kind": "unknown"}
        case _:
            assert_never(trigger)
    if message_id is not None:
        source["messageId"] = message_id
    return source


class _Call(Record):
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


class _Slot:
    """One (event, route) outcome in result order: an entry, or a planned execution still to run."""

    __slots__ = ("delivery", "entry", "source", "step")

    def __init__(self, delivery: int, entry: Entry | None, step: PlannedExecution | None, source: Source) -> None:
        self.delivery = delivery
        self.entry = entry
        self.step = step
        self.source = source


class Launcher:
    """Holds what a warm container reuses: validated settings, the HTTP client, the dedup memory."""

    def __init__(
        self,
        clocks: Clocks | None = None,
        fixed_submitter: Submitter | None = None,
    ) -> None:
        self.clocks = clocks or Clocks()
        self.memory = DedupMemory()
        # Functional tests pass an in-memory submitter; production builds the real client from settings.
        self.fixed_submitter = fixed_submitter
        self._threads = threading.local()
        self._lock = threading.Lock()
        self._auth: tuple[Settings, NcpSignatureV2] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def submitter_for(self, settings: Settings) -> Submitter:
        """This thread's submitter: a requests.Session is not thread-safe, so each worker has its own."""
        if self.fixed_submitter is not None:
            return self.fixed_submitter
        held: tuple[Settings, Submitter] | None = getattr(self._threads, "submitter", None)
        if held is not None and held[0] is settings:
            return held[1]
        with self._lock:
            if self._auth is None or self._auth[0] is not settings:
                self._auth = (settings, NcpSignatureV2(settings.credentials, self.clocks.wall))
            auth = self._auth[1]
        client = DataflowClient(
            settings.endpoint,
            settings.credentials,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_attempts=settings.max_attempts,
            clocks=self.clocks,
            auth=auth,
        )
        submitter = DryRunSubmitter(client, settings.credentials.placeholder) if settings.dry_run else client
        self._threads.submitter = (settings, submitter)
        return submitter

    def _pool_for(self, size: int) -> "ThreadPoolExecutor":
        """Created once per warm container, used only when an invocation has several submissions."""
        # Imported here: a cold start with one submission never needs it.
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pool is None or self._pool_size != size:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="submit")
                self._pool_size = size
            return self._pool

    def invoke(
        self,
        event: object,
        config: Mapping[str, str],
        *,
        platform: Platform,
        remaining_ms: float | None = None,
        activation_id: str = "",
        caller_headers: Mapping[str, str] | None = None,
    ) -> Result:
        """Runs one invocation; raises InvocationFailedError (carrying the result) if anything failed."""
        started = self.clocks.monotonic()
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            log.error("invalid configuration", extra={"problems": [str(problem) for problem in exc.problems]})
            raise
        if settings.dry_run and settings.credentials.placeholder:
            log.warning("dry run without credentials: requests are signed with a placeholder key")
        call = _Call(
            settings,
            started,
            None if remaining_ms is None else started + remaining_ms / 1000 - DEADLINE_MARGIN_S,
            datetime.fromtimestamp(self.clocks.wall(), UTC),
            caller_headers if settings.caller_header else None,
        )
        batch = normalise(event, platform=platform, now=call.now, activation_id=activation_id)
        slots: list[_Slot] = []
        for index, delivery in enumerate(batch.deliveries):
            for trigger in delivery.triggers:
                source = source_of(trigger, delivery.message_id)
                for outcome in self._route(trigger, source, call):
                    if isinstance(outcome, PlannedExecution):
                        slots.append(_Slot(index, None, outcome, source))
                    else:
                        slots.append(_Slot(index, outcome, None, source))
        self._run(slots, call)
        result = _result(slots, batch.deliveries, batch.from_sqs, settings.dry_run)
        if len(slots) != 1 or _kind(slots[0].entry) != "submitted":
            # A lone submission's record already says what and how long (elapsedMs since the invocation
            # started); a second record would double the logging cost of the commonest invocation.
            log.info(
                "invocation finished",
                extra={
                    "submittedCount": sum(1 for slot in slots if _kind(slot.entry) == "submitted"),
                    "skippedCount": sum(1 for slot in slots if _kind(slot.entry) == "skipped"),
                    "failedCount": sum(1 for slot in slots if _kind(slot.entry) == "failed"),
                    "elapsedMs": self._since(started),
                },
            )
        reported = {failure["itemIdentifier"] for failure in result.get("batchItemFailures", [])}
        if any(_kind(slot.entry) == "failed" and slot.source.get("messageId") not in reported for slot in slots):
            raise InvocationFailedError(result)
        return result

    def _route(self, trigger: Trigger, source: Source, call: _Call) -> list[Entry | PlannedExecution]:
        match trigger:
            case BadEvent():
                return [_failed(None, None, f"bad-event: {trigger.reason}", False, source)]
            case S3TestTrigger():
                return [_skipped(None, "test-event", source)]
            case ObjectTrigger() | ScheduleTrigger() | RouteInvocation() | JobInvocation():
                if call.deadline is not None and self.clocks.monotonic() >= call.deadline:
                    failure = "timeout: the invocation's time ran out before this event was routed"
                    return [_failed(None, None, failure, True, source)]
                out: list[Entry | PlannedExecution] = []
                for step in plan(trigger, call.settings.routes, call.settings.zone):
                    match step:
                        case PlannedExecution():
                            out.append(step)
                        case Skip():
                            if isinstance(trigger, ScheduleTrigger) and step.reason == "no-route":
                                _warn_unrouted_schedule(trigger, call.settings)
                            out.append(_skipped(step.route, step.reason, source))
                        case Reject():
                            error = f"{step.code}: {step.message}"
                            out.append(_failed(step.route, None, error, False, source))
                        case _:
                            assert_never(step)
                return out
            case _:
                assert_never(trigger)

    def _run(self, slots: Sequence[_Slot], call: _Call) -> None:
        """Runs the planned executions, concurrently when there are several; entries keep their order."""
        groups: dict[str, list[_Slot]] = {}
        for slot in slots:
            if slot.step is not None:
                # Two deliveries of one event in one batch run one after the other: the second sees the first.
                groups.setdefault(slot.step.dedup_key, []).append(slot)

        def work(group: list[_Slot]) -> None:
            for slot in group:
                if slot.step is not None:
                    slot.entry = self._execute(slot.step, slot.source, call)

        if len(groups) <= 1 or call.settings.max_concurrency == 1:
            for group in groups.values():
                work(group)
            return
        pool = self._pool_for(call.settings.max_concurrency)
        for future in [pool.submit(work, group) for group in groups.values()]:
            future.result()

    def _execute(self, step: PlannedExecution, source: Source, call: _Call) -> Entry:
        """One planned execution, exactly once: remembered, looked up, or submitted."""
        seen, known_id = self.memory.submitted(step.dedup_key)
        if seen:
            return _skipped(step.route, "duplicate", source, dedupKey=step.dedup_key, jobExecutionId=known_id)
        mode = call.dedup_check
        after_unknown = mode != "off" and self.memory.was_ambiguous(step.dedup_key)
        # Only a dedupParameter tells which event a run belongs to; without one a check could not tell.
        if after_unknown or (mode == "always" and step.dedup_parameter is not None):
            try:
                lookup = self._lookup(step, call, by_parameters=after_unknown)
            except SubmitError as exc:  # the lookup met what the submission would meet: say that
                return _failed(step.route, step.job.job_id, str(exc), exc.retryable, source, step.dedup_key)
            match lookup:
                case Found():
                    self.memory.remember(step.dedup_key, lookup.execution_id)
                    return _skipped(
                        step.route, "duplicate", source, dedupKey=step.dedup_key, jobExecutionId=lookup.execution_id
                    )
                case Unknown():
                    error = f"unknown-outcome: cannot tell whether this event already started a run: {lookup.reason}"
                    return _failed(step.route, step.job.job_id, error, _replay_safe(step, mode), source, step.dedup_key)
                case Absent():
                    pass
                case _:
                    assert_never(lookup)
        return self._submit(step, source, call)

    def _submit(self, step: PlannedExecution, source: Source, call: _Call) -> Entry:
        request = ExecutionRequest(step.job, step.parameters)
        mode = call.dedup_check
        for resend in range(MAX_RESENDS + 1):
            try:
                submitter = self.submitter_for(call.settings)
                answer = submitter.create_execution(request, deadline=call.deadline, headers=call.headers)
            except SubmitError as exc:
                details = {"attempts": exc.attempts, "status": exc.status, "elapsedMs": self._since(call.started)}
                if not exc.ambiguous:
                    return _failed(
                        step.route, step.job.job_id, str(exc), exc.retryable, source, step.dedup_key, details
                    )
                self.memory.mark_ambiguous(step.dedup_key)
                lookup = Unknown("DATAFLOW_DEDUP_CHECK is off") if mode == "off" else self._settle(step, call)
                match lookup:
                    case Found():
                        answer = Submitted({"jobExecutionId": lookup.execution_id, "status": lookup.status}, 0)
                        reconciled = "found by lookup after " + exc.code
                        return self._submitted(step, source, answer, reconciled, self._since(call.started))
                    case Unknown():
                        error = _unresolved(exc, lookup.reason)
                        return _failed(
                            step.route,
                            step.job.job_id,
                            error,
                            _replay_safe(step, mode),
                            source,
                            step.dedup_key,
                            details,
                        )
                    case Absent():
                        log.warning(
                            "resending: the lookup shows the execution absent",
                            extra={"dedupKey": step.dedup_key, "error": str(exc), "resend": resend + 1},
                        )
                    case _:
                        assert_never(lookup)
                continue
            if answer.body_lost and mode != "off":
                found = self._settle(step, call)
                if isinstance(found, Found):
                    answer = Submitted({"jobExecutionId": found.execution_id, "status": found.status}, answer.attempts)
            return self._submitted(step, source, answer, None, self._since(call.started))
        error = f"unknown-outcome: the execution stayed absent after {MAX_RESENDS} resends that each lost their answer"
        return _failed(step.route, step.job.job_id, error, True, source, step.dedup_key)

    def _submitted(
        self,
        step: PlannedExecution,
        source: Source,
        answer: Submitted,
        reconciled: str | None,
        elapsed: float,
    ) -> SubmittedEntry:
        if not answer.dry_run:
            self.memory.remember(step.dedup_key, answer.execution_id)
        entry: SubmittedEntry = {
            "route": step.route,
            "jobId": step.job.job_id,
            "jobExecutionId": answer.execution_id,
            "status": answer.status,
            "dedupKey": step.dedup_key,
            "source": source,
        }
        details: dict[str, Any] = {"attempts": answer.attempts, "dryRun": answer.dry_run, "elapsedMs": elapsed}
        if reconciled:
            details["reconciled"] = reconciled
        if answer.body_lost:
            details["bodyLost"] = True
        log.info("submitted", extra={**_flat(entry), **details})
        return entry

    def _lookup(self, step: PlannedExecution, call: _Call, *, by_parameters: bool) -> Lookup:
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
            return self.submitter_for(call.settings).list_executions(
                step.job.job_id, page=page, limit=limit, deadline=call.deadline, headers=call.headers
            )

        try:
            lookup = find(list_page, identity, limit=LOOKUP_PAGE_SIZE, max_pages=LOOKUP_MAX_PAGES)
        except SubmitError as exc:
            if exc.status != 404:
                raise
            lookup = Absent(0)  # no such job: nothing can have run, and the submission will say so
        log.info("lookup", extra={"dedupKey": step.dedup_key, "route": step.route, "lookup": _describe(lookup)})
        return lookup

    def _settle(self, step: PlannedExecution, call: _Call) -> Lookup:
        """A lookup after an unknown outcome: any failure of its own leaves the outcome unknown."""
        try:
            return self._lookup(step, call, by_parameters=True)
        except SubmitError as exc:
            return Unknown(f"the lookup failed ({exc})")

    def _since(self, started: float) -> float:
        return round((self.clocks.monotonic() - started) * 1000, 1)


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


def _unresolved(exc: SubmitError, reason: str) -> str:
    """The failure of a request that may have run and that the lookup could not settle."""
    code = exc.code if exc.code in ("unknown-outcome", "bad-response") else "unknown-outcome"
    cause = exc.message if code == exc.code else f"{exc.code}: {exc.message}"
    return f"{code}: {cause}; not resent, because {reason}"


def _warn_unrouted_schedule(trigger: ScheduleTrigger, settings: Settings) -> None:
    known = sorted({route.match.schedule for route in settings.routes if route.match.schedule})
    log.warning(
        "schedule started nothing",
        extra={
            "schedule": trigger.schedule,
            "knownSchedules": known,
            "hint": "match.schedule compares names exactly (case matters)",
        },
    )


def _skipped(route: str | None, reason: str, source: Source, **details: Any) -> SkippedEntry:
    entry: SkippedEntry = {"route": route, "reason": reason, "source": source}
    if details.get("dedupKey"):
        entry["dedupKey"] = details["dedupKey"]
        entry["jobExecutionId"] = details.get("jobExecutionId")
    log.info("skipped", extra={**_flat(entry), **details})
    return entry


def _failed(
    route: str | None,
    job_id: str | None,
    error: str,
    retryable: bool,
    source: Source,
    dedup_key: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> FailedEntry:
    entry: FailedEntry = {"route": route, "jobId": job_id, "error": error, "retryable": retryable, "source": source}
    if dedup_key:
        entry["dedupKey"] = dedup_key
    log.error("failed", extra={**_flat(entry), **(details or {})})
    return entry


def _kind(entry: Entry | None) -> str:
    if entry is None:
        return "none"
    if "error" in entry:
        return "failed"
    if "reason" in entry:
        return "skipped"
    return "submitted"


def _result(slots: Sequence[_Slot], deliveries: Sequence[Delivery], from_sqs: bool, dry_run: bool) -> Result:
    submitted: list[SubmittedEntry] = []
    skipped: list[SkippedEntry] = []
    failed: list[FailedEntry] = []
    failed_deliveries: set[int] = set()
    for slot in slots:
        entry = slot.entry
        if entry is None:
            continue
        if "error" in entry:
            failed.append(entry)
            failed_deliveries.add(slot.delivery)
        elif "reason" in entry:
            skipped.append(entry)
        else:
            submitted.append(entry)
    omitted: dict[str, int] = {}
    for name, entries in (("submitted", submitted), ("skipped", skipped), ("failed", failed)):
        if len(entries) > MAX_RESULT_ENTRIES:
            # The platforms cap a result (6 MB on Lambda, 1 MB on Cloud Functions); the log has every entry.
            omitted[name] = len(entries) - MAX_RESULT_ENTRIES
            del entries[MAX_RESULT_ENTRIES:]
    result: Result = {"submitted": submitted, "skipped": skipped, "failed": failed, "dryRun": dry_run}
    if from_sqs:
        result["batchItemFailures"] = [
            {"itemIdentifier": message_id}
            for index in sorted(failed_deliveries)
            if (message_id := deliveries[index].message_id)
        ]
    if omitted:
        result["omitted"] = omitted
    return result


def _flat(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A result entry as log fields: the source's fields lifted to the top, kind renamed."""
    fields = {name: value for name, value in entry.items() if name != "source"}
    source = entry.get("source", {})
    fields.update({("sourceKind" if name == "kind" else name): value for name, value in source.items()})
    return fields
