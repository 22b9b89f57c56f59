"""One invocation, platform-free: normalise, route, dedupe, submit, and build the result."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from handler.dataflow import Clocks, DataflowClient, ExecutionRequest, Submitted, describe_prepared
from handler.errors import ConfigError, InvocationFailedError, SubmitError
from handler.events import (
    BadEvent,
    JobInvocation,
    ObjectTrigger,
    Platform,
    RouteInvocation,
    S3TestTrigger,
    ScheduleTrigger,
    Trigger,
    normalise,
)
from handler.routing import PlannedExecution, plan
from handler.settings import Settings, load_settings

log = logging.getLogger(__name__)

# Time kept back from the platform's deadline to log the result and raise before being killed.
DEADLINE_MARGIN_S = 0.5
RECENT_KEYS = 4096


class Submitter(Protocol):
    def create_execution(self, request: ExecutionRequest, *, deadline: float | None = None) -> Submitted: ...


class DryRunSubmitter:
    """Builds and signs each request exactly as it would be sent, logs it masked, sends nothing."""

    def __init__(self, client: DataflowClient, placeholder_credentials: bool) -> None:
        self.client = client
        self.placeholder_credentials = placeholder_credentials

    def create_execution(self, request: ExecutionRequest, *, deadline: float | None = None) -> Submitted:
        prepared = self.client.prepare(request)
        log.info(
            "dry-run request",
            extra={"request": describe_prepared(prepared), "placeholderCredentials": self.placeholder_credentials},
        )
        return Submitted({}, 0, dry_run=True)


class RecentKeys:
    """Dedup keys submitted by this warm container, oldest forgotten first."""

    def __init__(self, capacity: int = RECENT_KEYS) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, str | None] = OrderedDict()

    def get(self, key: str) -> str | None:
        return self._keys.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str, execution_id: str | None) -> None:
        self._keys[key] = execution_id
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


def source_of(trigger: Trigger, message_id: str | None) -> dict[str, Any]:
    source: dict[str, Any]
    if isinstance(trigger, ObjectTrigger):
        source = {"kind": "object", "bucket": trigger.bucket, "key": trigger.key, "eventName": trigger.event_name}
    elif isinstance(trigger, ScheduleTrigger):
        source = {"kind": "schedule", "schedule": trigger.schedule, "time": trigger.time.isoformat()}
    elif isinstance(trigger, RouteInvocation):
        source = {"kind": "direct", "route": trigger.route, "time": trigger.time.isoformat()}
    elif isinstance(trigger, JobInvocation):
        source = {"kind": "direct", "jobId": trigger.job.job_id, "time": trigger.time.isoformat()}
    elif isinstance(trigger, S3TestTrigger):
        source = {"kind": "test"}
    else:
        source = {"kind": "unknown"}
    if message_id is not None:
        source["messageId"] = message_id
    return source


@dataclass
class _Outcome:
    submitted: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    failed_messages: list[str] = field(default_factory=list)


@dataclass
class Launcher:
    """Holds what a warm container reuses: validated settings, the HTTP client, recent dedup keys."""

    clocks: Clocks = field(default_factory=Clocks)
    recent: RecentKeys = field(default_factory=RecentKeys)
    # Functional tests pass an in-memory submitter; production builds the real client from settings.
    fixed_submitter: Submitter | None = None
    _settings: Settings | None = None
    _submitter: Submitter | None = None

    def submitter_for(self, settings: Settings) -> Submitter:
        if self.fixed_submitter is not None:
            return self.fixed_submitter
        if self._submitter is None or self._settings is not settings:
            client = DataflowClient(
                settings.endpoint,
                settings.credentials,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                max_attempts=settings.max_attempts,
                clocks=self.clocks,
            )
            self._submitter = DryRunSubmitter(client, settings.credentials.placeholder) if settings.dry_run else client
            self._settings = settings
        return self._submitter

    def invoke(
        self,
        event: object,
        config: Mapping[str, str],
        *,
        platform: Platform,
        remaining_ms: float | None = None,
        activation_id: str = "",
    ) -> dict[str, Any]:
        """Runs one invocation; raises InvocationFailedError (carrying the result) if anything failed."""
        started = self.clocks.monotonic()
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            log.error("invalid configuration", extra={"problems": [str(problem) for problem in exc.problems]})
            raise
        submitter = self.submitter_for(settings)
        if settings.dry_run and settings.credentials.placeholder:
            log.warning("dry run without credentials: requests are signed with a placeholder key")
        deadline = None if remaining_ms is None else started + remaining_ms / 1000 - DEADLINE_MARGIN_S
        now = datetime.fromtimestamp(self.clocks.wall(), UTC)
        batch = normalise(event, platform=platform, now=now, activation_id=activation_id)
        outcome = _Outcome()
        for delivery in batch.deliveries:
            failures_before = len(outcome.failed)
            for trigger in delivery.triggers:
                self._handle(trigger, delivery.message_id, settings, submitter, deadline, outcome)
            if batch.from_sqs and len(outcome.failed) > failures_before and delivery.message_id:
                outcome.failed_messages.append(delivery.message_id)
        result: dict[str, Any] = {
            "submitted": outcome.submitted,
            "skipped": outcome.skipped,
            "failed": outcome.failed,
            "dryRun": settings.dry_run,
        }
        if batch.from_sqs:
            result["batchItemFailures"] = [{"itemIdentifier": message} for message in outcome.failed_messages]
        reported = set(outcome.failed_messages)
        unreported = [entry for entry in outcome.failed if entry["source"].get("messageId") not in reported]
        log.info(
            "invocation finished",
            extra={
                "submittedCount": len(outcome.submitted),
                "skippedCount": len(outcome.skipped),
                "failedCount": len(outcome.failed),
                "elapsedMs": round((self.clocks.monotonic() - started) * 1000, 1),
            },
        )
        if unreported:
            raise InvocationFailedError(result)
        return result

    def _handle(
        self,
        trigger: Trigger,
        message_id: str | None,
        settings: Settings,
        submitter: Submitter,
        deadline: float | None,
        outcome: _Outcome,
    ) -> None:
        source = source_of(trigger, message_id)
        if isinstance(trigger, BadEvent):
            self._fail(outcome, None, None, f"bad-event: {trigger.reason}", False, source)
            return
        if isinstance(trigger, S3TestTrigger):
            self._skip(outcome, None, "test-event", source)
            return
        for step in plan(trigger, settings.routes, settings.zone):
            if isinstance(step, PlannedExecution):
                self._submit(step, source, submitter, deadline, outcome)
            else:
                self._skip(outcome, step.route, step.reason, source)

    def _submit(
        self,
        step: PlannedExecution,
        source: dict[str, Any],
        submitter: Submitter,
        deadline: float | None,
        outcome: _Outcome,
    ) -> None:
        if step.dedup_key in self.recent:
            self._skip(
                outcome,
                step.route,
                "duplicate",
                source,
                dedupKey=step.dedup_key,
                jobExecutionId=self.recent.get(step.dedup_key),
            )
            return
        started = self.clocks.monotonic()
        try:
            answer = submitter.create_execution(ExecutionRequest(step.job, step.parameters), deadline=deadline)
        except SubmitError as exc:
            elapsed = round((self.clocks.monotonic() - started) * 1000, 1)
            self._fail(
                outcome,
                step.route,
                step.job.job_id,
                str(exc),
                exc.retryable,
                source,
                dedupKey=step.dedup_key,
                attempts=exc.attempts,
                elapsedMs=elapsed,
                status=exc.status,
            )
            return
        elapsed = round((self.clocks.monotonic() - started) * 1000, 1)
        if not answer.dry_run:
            self.recent.add(step.dedup_key, answer.execution_id)
        entry = {
            "route": step.route,
            "jobId": step.job.job_id,
            "jobExecutionId": answer.execution_id,
            "status": answer.status,
            "dedupKey": step.dedup_key,
            "source": source,
        }
        outcome.submitted.append(entry)
        log.info(
            "submitted",
            extra={**_flat(entry), "attempts": answer.attempts, "elapsedMs": elapsed, "dryRun": answer.dry_run},
        )

    @staticmethod
    def _skip(outcome: _Outcome, route: str | None, reason: str, source: dict[str, Any], **details: Any) -> None:
        entry = {"route": route, "reason": reason, "source": source}
        if details.get("dedupKey"):
            entry["dedupKey"] = details["dedupKey"]
        outcome.skipped.append(entry)
        log.info("skipped", extra={**_flat(entry), **details})

    @staticmethod
    def _fail(
        outcome: _Outcome,
        route: str | None,
        job_id: str | None,
        error: str,
        retryable: bool,
        source: dict[str, Any],
        **details: Any,
    ) -> None:
        entry: dict[str, Any] = {
            "route": route,
            "jobId": job_id,
            "error": error,
            "retryable": retryable,
            "source": source,
        }
        if details.get("dedupKey"):
            entry["dedupKey"] = details["dedupKey"]
        outcome.failed.append(entry)
        log.error("failed", extra={**_flat(entry), **details})


def _flat(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A result entry as log fields: the source's fields lifted to the top, kind renamed."""
    fields = {name: value for name, value in entry.items() if name != "source"}
    source = entry.get("source", {})
    fields.update({("sourceKind" if name == "kind" else name): value for name, value in source.items()})
    return fields
