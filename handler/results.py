"""Typed outcomes into the contract's JSON entries and result, with one log record per decision."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict, assert_never, final

from handler.errors import InvocationFailedError
from handler.outcomes import Failed, Outcome, Skipped, Submitted
from handler.records import Record

log = logging.getLogger(__name__)

# Entries kept per list in the result; the log has every one, and batchItemFailures is never cut.
MAX_RESULT_ENTRIES = 100
# A coalesced run's entry names its files up to this many; past it, it counts them (the log names all).
KEYS_IN_RESULT = 20


# The contract's JSON as the checker sees it. At run time entries are plain dicts: the TypedDict
# classes cost about 0.6 ms at every cold start and check nothing there.
if TYPE_CHECKING:
    from handler.events import EventSource

    @final
    class SubmittedEntry(TypedDict):
        route: str | None
        jobId: str
        jobExecutionId: str | None
        status: str | None
        dedupKey: str
        source: EventSource
        objects: NotRequired[int]
        closed: NotRequired[str | None]
        keys: NotRequired[list[str]]
        request: NotRequired[dict[str, Any]]

    @final
    class SkippedEntry(TypedDict):
        route: str | None
        reason: str
        source: EventSource
        dedupKey: NotRequired[str]
        jobExecutionId: NotRequired[str | None]

    @final
    class FailedEntry(TypedDict):
        route: str | None
        jobId: str | None
        error: str
        code: str
        retryable: bool
        source: EventSource
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
        # A sweep's own account: per route, what it listed and what became of it (handler.sweep.swept_summary).
        sweeps: NotRequired[list[dict[str, Any]]]


class Report(Record):
    """An invocation's result, and whether a failure in it must make the platform keep the event.

    `keep` is true when something failed outside `batchItemFailures`: each adapter raises then, so
    that the platform's retry, on-failure destination or dead-letter queue keeps the event.
    """

    __slots__ = ("result", "outcomes", "keep")

    def __init__(self, result: Result, outcomes: Sequence[Outcome], keep: bool) -> None:
        self.result: Final = result
        self.outcomes: Final = outcomes
        self.keep: Final = keep

    def returned(self) -> Result:
        """The result an adapter returns, or InvocationFailedError (carrying it) when the event must be kept.

        The adapters' one keep-or-raise policy: raising is what makes Lambda retry an async event and
        then send it to its on-failure destination, and what marks a Cloud Functions activation failed so
        a trigger's retry or a replay keeps it; the command line exits non-zero where either would keep.
        """
        if self.keep:
            raise InvocationFailedError(self.result)
        return self.result


def submitted_entry(outcome: Submitted) -> SubmittedEntry:
    entry: SubmittedEntry = {
        "route": outcome.route,
        "jobId": outcome.job_id,
        "jobExecutionId": outcome.execution_id,
        "status": outcome.status,
        "dedupKey": outcome.dedup_key,
        "source": outcome.source,
    }
    if outcome.objects:
        entry["objects"] = len(outcome.objects)
        entry["closed"] = outcome.closed
        if len(outcome.objects) <= KEYS_IN_RESULT:
            entry["keys"] = list(outcome.objects)
    if outcome.request is not None:
        entry["request"] = dict(outcome.request)
    return entry


def skipped_entry(outcome: Skipped) -> SkippedEntry:
    entry: SkippedEntry = {"route": outcome.route, "reason": outcome.reason, "source": outcome.source}
    if outcome.dedup_key:
        entry["dedupKey"] = outcome.dedup_key
        entry["jobExecutionId"] = outcome.execution_id
    return entry


def failed_entry(outcome: Failed) -> FailedEntry:
    entry: FailedEntry = {
        "route": outcome.route,
        "jobId": outcome.job_id,
        "error": outcome.error,
        "code": outcome.machine_code,
        "retryable": outcome.retryable,
        "source": outcome.source,
    }
    if outcome.dedup_key:
        entry["dedupKey"] = outcome.dedup_key
    return entry


def logged(outcome: Outcome, extra: Mapping[str, Any] | None = None) -> Outcome:
    """Writes the decision's one log record: entry fields flat, the log-only details, and `extra`."""
    match outcome:
        case Submitted():
            fields, write = _flat(submitted_entry(outcome)), log.info
            said = "dry run: not sent" if outcome.request is not None else "submitted"
            if outcome.objects and "manifest" not in outcome.details:  # a manifest's keys are in the manifest
                fields["keys"] = list(outcome.objects)
        case Skipped():
            # A sweep meets every file that ran again each time: the sweep's own record counts those.
            again = outcome.reason == "duplicate" and "sweep" in outcome.source
            fields, write, said = _flat(skipped_entry(outcome)), log.debug if again else log.info, "skipped"
        case Failed():
            fields, write, said = _flat(failed_entry(outcome)), log.error, "failed"
        case _:
            assert_never(outcome)
    fields.update(outcome.details)
    if extra:
        fields.update(extra)
    write(said, extra=fields)
    return outcome


def report(outcomes: Sequence[Outcome], *, from_sqs: bool, dry_run: bool) -> Report:
    """The contract's result: entries in outcome order, lists capped, every failed message named."""
    submitted: list[SubmittedEntry] = []
    skipped: list[SkippedEntry] = []
    failed: list[FailedEntry] = []
    failed_messages: dict[str, None] = {}
    keep = False
    for outcome in outcomes:
        match outcome:
            case Submitted():
                submitted.append(submitted_entry(outcome))
            case Skipped():
                skipped.append(skipped_entry(outcome))
            case Failed():
                failed.append(failed_entry(outcome))
                failed_messages.update(dict.fromkeys(outcome.messages))
                keep = keep or not (from_sqs and outcome.messages)
            case _:
                assert_never(outcome)
    result: Result = {"submitted": submitted, "skipped": skipped, "failed": failed, "dryRun": dry_run}
    if from_sqs:
        result["batchItemFailures"] = [{"itemIdentifier": message} for message in failed_messages]
    if len(outcomes) > MAX_RESULT_ENTRIES:
        lists: tuple[tuple[str, list[Any]], ...] = (("submitted", submitted), ("skipped", skipped), ("failed", failed))
        omitted = {name: _cap(entries) for name, entries in lists}
        if any(omitted.values()):
            result["omitted"] = {name: count for name, count in omitted.items() if count}
    return Report(result, outcomes, keep)


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Every outcome counted, whatever the result's lists kept (metrics and the summary record).

    `unverifiable` counts the decisions whose duplicate check could not identify the job's runs.
    """
    tally = {"submitted": 0, "skipped": 0, "failed": 0, "unverifiable": 0}
    for outcome in outcomes:
        tally["unverifiable"] += bool(outcome.details.get("dedupUnverifiable"))
        match outcome:
            case Submitted():
                tally["submitted"] += 1
            case Skipped():
                tally["skipped"] += 1
            case Failed():
                tally["failed"] += 1
            case _:
                assert_never(outcome)
    return tally


def _cap(entries: list[Any]) -> int:
    # The platforms cap a result (6 MB on Lambda, 1 MB on Cloud Functions); the log has every entry.
    over = max(0, len(entries) - MAX_RESULT_ENTRIES)
    del entries[MAX_RESULT_ENTRIES:]
    return over


def _flat(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A result entry as log fields: the source's fields lifted to the top, kind renamed."""
    fields = dict(entry)
    for name, value in fields.pop("source", {}).items():
        fields["sourceKind" if name == "kind" else name] = value
    return fields
