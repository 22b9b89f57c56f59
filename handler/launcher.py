"""One invocation, platform-free: settings, normalise, plan, execute exactly once, report."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from handler.errors import ConfigError, RequestError
from handler.events import Batch, ObjectTrigger, SweepTrigger, normalise
from handler.exactly_once import Call, DedupMemory, ExactlyOnce, step_failed
from handler.outcomes import Failed, Outcome, Skipped, Submitted
from handler.planning import CoalescedPlan, PlannedExecution, Step, plan
from handler.results import Report, counts, logged, report
from handler.settings import Settings, load_settings
from handler.wiring import Wiring

if TYPE_CHECKING:
    from handler.events import Platform
    from handler.sweep import Listed

log = logging.getLogger(__name__)

# Time kept back from the platform's deadline to log the result and raise before being killed.
DEADLINE_MARGIN_S = 0.5


class Launcher:
    """What a warm container keeps between invocations: its wiring and its dedup memory."""

    def __init__(self, wiring: Wiring | None = None) -> None:
        self.wiring = wiring or Wiring()
        self.clocks = self.wiring.clocks
        self.memory = DedupMemory(wall=self.clocks.wall)
        self.exactly_once = ExactlyOnce(self.wiring, self.memory)

    def invoke(
        self,
        event: object,
        config: Mapping[str, str],
        *,
        platform: Platform,
        remaining_ms: float | None = None,
        activation_id: str = "",
        caller_headers: Mapping[str, str] | None = None,
    ) -> Report:
        """Runs one invocation and reports it; the adapter decides what a failure in it means."""
        started = self.clocks.monotonic()
        settings = self._settings(config)
        call = Call(
            settings,
            started,
            None if remaining_ms is None else started + remaining_ms / 1000 - DEADLINE_MARGIN_S,
            datetime.fromtimestamp(self.clocks.wall(), UTC),
            headers=caller_headers if settings.caller_header else None,
            platform=platform,
        )
        batch = normalise(event, platform=platform, now=call.now, activation_id=activation_id, zone=settings.zone)
        if any(isinstance(t, ObjectTrigger) and t.needs_state() for d in batch.deliveries for t in d.triggers):
            batch = self._with_state(batch, call, platform)
        sweeps: list[Listed] = []
        sweeper = partial(self._listed, call=call, platform=platform, kept=sweeps)
        steps = plan(batch, settings.routes, settings.zone, lambda: self._expired(call), sweeper)
        outcomes = self._execute(steps, call)
        self._finished(outcomes, started)
        done = report(outcomes, from_sqs=batch.from_sqs, dry_run=settings.dry_run)
        if sweeps:
            from handler.sweep import swept_summary

            done.result["sweeps"] = [swept_summary(listed, outcomes) for listed in sweeps]
            log.info("sweep finished", extra={"sweeps": done.result["sweeps"]})
        return done

    def _with_state(self, batch: Batch, call: Call, platform: Platform) -> Batch:
        """Events without an object's state given it from object storage; as they came where it cannot be read."""
        from handler.objects import with_state  # imported here: only such events (and sweeps) read object storage

        try:
            store = self.wiring.objects(call.settings, platform)
        except RequestError as exc:
            log.warning("object storage cannot be read: events identified by their arrival", extra={"error": str(exc)})
            return batch
        return with_state(batch, store, call.deadline)

    def _finished(self, outcomes: Sequence[Outcome], started: float) -> None:
        if len(outcomes) == 1 and isinstance(outcomes[0], Submitted):
            # A lone submission's record already says what and how long (elapsedMs since the invocation
            # started); a second record would double the logging cost of the commonest invocation.
            return
        tally = counts(outcomes)
        log.info(
            "invocation finished",
            extra={
                "submittedCount": tally["submitted"],
                "skippedCount": tally["skipped"],
                "failedCount": tally["failed"],
                "elapsedMs": round((self.clocks.monotonic() - started) * 1000, 1),
            },
        )

    def _listed(
        self, trigger: SweepTrigger, *, call: Call, platform: Platform, kept: list[Listed]
    ) -> list[Listed] | str:
        """Each route the sweep names, listed in its span (as far back as the duplicate check reads); what it
        found is `kept` for the sweep's account."""
        from handler.sweep import swept_routes, unlisted  # imported here: a cold start without a sweep needs none

        routes = swept_routes(trigger, call.settings.routes)
        if isinstance(routes, str):
            return routes
        window = call.settings.dedup_window
        try:
            store = self.wiring.objects(call.settings, platform)
        except RequestError as exc:  # no keys to sign with: each route's sweep fails, saying which
            found = [unlisted(route, trigger, window, exc) for route in routes]
        else:
            found = [store.swept(route, trigger, window, call.deadline) for route in routes]
        kept.extend(found)
        return found

    def _settings(self, config: Mapping[str, str]) -> Settings:
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            log.error("invalid configuration", extra={"problems": [str(problem) for problem in exc.problems]})
            raise
        if settings.dry_run and settings.credentials.placeholder:
            log.warning("dry run without credentials: requests are signed with a placeholder key")
        return settings

    def _expired(self, call: Call) -> bool:
        return call.deadline is not None and self.clocks.monotonic() >= call.deadline

    def _execute(self, steps: Sequence[Step], call: Call) -> list[Outcome]:
        """Every step's outcome in step order; planned executions run concurrently when there are several."""
        ready = self._expanded(steps, call)
        self.exactly_once.plan_reads(ready, call)
        outcomes: list[Outcome | None] = [
            None if isinstance(step, PlannedExecution) else logged(step) for step in ready
        ]
        groups: dict[str, list[int]] = {}
        for index, step in enumerate(ready):
            if isinstance(step, PlannedExecution):
                # Two deliveries of one event in one batch run one after the other: the second sees the first.
                groups.setdefault(step.dedup_key, []).append(index)

        def work(indexes: list[int]) -> None:
            for index in indexes:
                step = ready[index]
                if isinstance(step, PlannedExecution):
                    outcomes[index] = self._guarded(step, call)

        if len(groups) <= 1 or call.settings.max_concurrency == 1:
            for indexes in groups.values():
                work(indexes)
        else:
            pool = self.wiring.pool(call.settings.max_concurrency)
            for future in [pool.submit(work, indexes) for indexes in groups.values()]:
                future.result()
        return [outcome for outcome in outcomes if outcome is not None]

    def _expanded(self, steps: Sequence[Step], call: Call) -> list[PlannedExecution | Skipped | Failed]:
        """The steps with each coalescing route's objects grouped into runs (those already run skipped)."""
        ready: list[PlannedExecution | Skipped | Failed] = []
        for step in steps:
            if isinstance(step, CoalescedPlan):
                ready.extend(self.exactly_once.expand(step, call))
            else:
                ready.append(step)
        return ready

    def _guarded(self, step: PlannedExecution, call: Call) -> Outcome:
        """The step's outcome; a defect of ours fails this step alone, kept, instead of escaping mid-batch."""
        try:
            return self.exactly_once.execute(step, call)
        except Exception as exc:
            log.exception("internal error", extra={"dedupKey": step.dedup_key, "route": step.route})
            # Whether it got as far as sending is unknown: a redelivery must look first, so not retryable.
            message = f"{type(exc).__name__} inside the handler; the execution may exist"
            return logged(step_failed(step, "internal-error", message, False))
