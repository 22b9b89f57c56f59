"""Which backfill steps run again: each step's newest run, read through the one reader, against the behaviour asked."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Final, Literal

from handler.cli.common import CommandError
from handler.events import RouteInvocation
from handler.exactly_once import CLOCK_TOLERANCE
from handler.planning import PlannedExecution, planned
from handler.records import Record
from handler.routes import Route
from handler.runs.reader import Asked, Runs, Source, source
from handler.runs.view import Found, Identity, Unknown

# Airflow's words (`backfill create --reprocess-behavior`): none runs only the steps without a run; failed also
# runs again the steps whose run FAILED or was CANCELED; completed runs every step again, whatever ran.
Behaviour = Literal["none", "failed", "completed"]
BEHAVIOURS: tuple[Behaviour, ...] = ("none", "failed", "completed")
FAILED = ("FAILED", "CANCELED")
GOING = ("READY", "RUNNING")
# Re-runs of re-runs followed from a step's first run (each re-run carries the key of the run it re-runs).
CHAIN_MOST = 50


class Launch(Record):
    """A step to run: plain (its event's own identity) or as a re-run of `rerun_of`."""

    __slots__ = ("when", "rerun_of")

    def __init__(self, when: datetime, rerun_of: str | None = None) -> None:
        self.when: Final = when
        self.rerun_of: Final = rerun_of


class Decided(Record):
    """A step the command settles without running it: why, and the run it is about."""

    __slots__ = ("when", "outcome", "execution_id", "detail")

    def __init__(self, when: datetime, outcome: str, execution_id: str, detail: str) -> None:
        self.when: Final = when
        self.outcome: Final = outcome
        self.execution_id: Final = execution_id
        self.detail: Final = detail


class Newest(Record):
    """A step's newest run (a re-run where there is one), its status, and how many runs the step has."""

    __slots__ = ("execution_id", "status", "count")

    def __init__(self, execution_id: str, status: str, count: int) -> None:
        self.execution_id: Final = execution_id
        self.status: Final = status
        self.count: Final = count


def reprocess(
    route: Route, times: Sequence[datetime], zone: tzinfo, behaviour: Behaviour, *, only_failed: bool
) -> list[Launch | Decided]:
    """Each step as the behaviour asks (`only_failed`: --rerun-failed, nothing but the failed steps). The job's
    runs are read back to the first step, once, through the one reader; a step it cannot tell is an error."""
    if behaviour == "none" and not only_failed:
        return [Launch(when) for when in times]
    from handler.cli.runs import reader

    _, client = reader(route.job.job_id)
    runs, job_source = Runs(time.monotonic), source(client, route.job.job_id)
    reads = Reads(runs, job_source, runs.asked(route.job.job_id), times[0] - CLOCK_TOLERANCE)
    chosen: list[Launch | Decided] = []
    unsure: list[str] = []
    for when in times:
        newest = reads.newest(route, when, zone)
        if isinstance(newest, str):
            unsure.append(f"{when.isoformat()}: {newest}")
        elif (step := _decide(when, newest, behaviour, only_failed)) is not None:
            chosen.append(step)
    if unsure:
        raise CommandError("cannot tell the newest run of every step: " + "; ".join(unsure[:3]))
    return chosen


def _decide(when: datetime, newest: Newest | None, behaviour: Behaviour, only_failed: bool) -> Launch | Decided | None:
    if newest is None:
        return None if only_failed else Launch(when)
    run = newest.execution_id
    if newest.status in GOING:
        why = f"its run {run} is {newest.status}: a step is not run again while its run may still be going"
        return None if only_failed else Decided(when, "refused", run, why)
    if newest.status in FAILED:
        return Launch(when, rerun_of=run)
    if only_failed:
        return None
    if behaviour == "completed" and newest.count == 1:
        return Launch(when, rerun_of=run)
    # The step ran (and was re-run) already: a repeated or resumed command does not start it again.
    detail = "duplicate" if behaviour == "failed" else f"re-run before ({newest.count} runs): re-run once"
    return Decided(when, "skipped", run, detail)


class Reads(Record):
    """The questions of one command: the reader, the job's source, when they were asked, how far back."""

    __slots__ = ("runs", "job_source", "asked", "since")

    def __init__(self, runs: Runs, job_source: Source, asked: Asked, since: datetime) -> None:
        self.runs: Final = runs
        self.job_source: Final = job_source
        self.asked: Final = asked
        self.since: Final = since

    def newest(self, route: Route, when: datetime, zone: tzinfo) -> Newest | str | None:
        """The step's newest run, following its re-runs; None: it has none; a string: why it cannot tell."""
        lookup = self._find(route, RouteInvocation(route.name, when), zone)
        if not isinstance(lookup, Found):
            return lookup.reason if isinstance(lookup, Unknown) else None
        execution_id, status = lookup.candidates[0]
        count = len(lookup.candidates)
        # With a dedupParameter each re-run carries a key of its own: follow them from the step's first run.
        # Without one, every run of the step echoes the same parameters and the lookup found them all.
        while route.dedup_parameter is not None and execution_id is not None and count < CHAIN_MOST:
            rerun = self._find(route, RouteInvocation(route.name, when, rerun_of=execution_id), zone)
            if isinstance(rerun, Unknown):
                return rerun.reason
            if not isinstance(rerun, Found):
                break
            (execution_id, status), count = rerun.candidates[0], count + len(rerun.candidates)
        if execution_id is None:
            return "the service lists a run of this step without its id"
        return Newest(execution_id, status or "", count)

    def _find(self, route: Route, trigger: RouteInvocation, zone: tzinfo) -> Found | Unknown | None:
        step = planned(route, trigger, {}, zone)
        if not isinstance(step, PlannedExecution):
            return None  # it fails as it runs, with the reason
        identity = Identity(step.parameters, step.job.job_condition, step.dedup_parameter, self.since)
        lookup = self.runs.find(self.job_source, identity, self.asked, self.since)
        return lookup if isinstance(lookup, Found | Unknown) else None
