"""`explain`: for each record of an event file and each route, whether it fires and why not, without sending."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any, assert_never

from handler.cli.common import configuration, emit, reach, read_json, settings
from handler.errors import RequestError
from handler.events import (
    BadEvent,
    JobInvocation,
    ObjectTrigger,
    RouteInvocation,
    S3TestTrigger,
    ScheduleTrigger,
    Trigger,
    normalise,
)
from handler.exactly_once import Call, ExactlyOnce, describe
from handler.outcomes import Failed, Skipped
from handler.planning import Fired, Member, Origin, PlannedExecution, fire
from handler.settings import Settings
from handler.wiring import Wiring

# What each skip planning can decide for one route means, as explain says it.
SKIP_REASONS = {
    "own-output": "the route's job writes here",
    "folder-marker": "an empty key ending in '/'",
    "event-type": "not an ObjectCreated event, and no route asks for it",
    "no-route": "the route does not match",
    "test-event": "S3's test message starts nothing",
}


def explain(args: argparse.Namespace) -> int:
    event = read_json(args.event)
    config = settings()
    now = datetime.now(UTC)
    batch = normalise(event, platform=args.platform, now=now, activation_id="explain", zone=config.zone)
    timed = ObjectTrigger | ScheduleTrigger | RouteInvocation | JobInvocation
    times = [
        trigger.time for delivery in batch.deliveries for trigger in delivery.triggers if isinstance(trigger, timed)
    ]
    if times:  # the lookups read back as far as the oldest event, not only the dedup window
        config = settings(reach(configuration(), min(*times, now), config.dedup_window))
    checker = None if config.dry_run or args.offline else _Checker(config, now)
    records = []
    for delivery in batch.deliveries:
        for trigger in delivery.triggers:
            source: dict[str, Any] = dict(trigger.source())
            if delivery.message_id is not None:
                source["messageId"] = delivery.message_id
            records.append({"source": source, "routes": _verdicts(trigger, config, checker)})
    read_since = (now - config.dedup_window).isoformat(timespec="seconds")
    emit({"timezone": str(config.zone), "lookups": checker is not None, "readSince": read_since, "records": records})
    return 0


def _verdicts(trigger: Trigger, config: Settings, checker: _Checker | None) -> list[dict[str, Any]]:
    """Each route's verdict, as planning decides it for this trigger alone (no second set of rules here)."""
    match trigger:
        case BadEvent():
            return [{"route": None, "fires": False, "why": f"bad-event: {trigger.reason}"}]
        case S3TestTrigger():
            return [{"route": None, "fires": False, "why": "test-event: S3's test message starts nothing"}]
        case JobInvocation():
            return [_rendered(None, item, checker) for item in fire(trigger, [], config.zone, Origin())]
        case ObjectTrigger() | ScheduleTrigger() | RouteInvocation():
            verdicts = []
            for route in config.routes:
                if isinstance(trigger, RouteInvocation) and route.name != trigger.route:
                    why = f"the direct call names route {trigger.route!r}"
                    verdicts.append({"route": route.name, "fires": False, "why": why})
                    continue
                verdicts += [
                    _rendered(route.name, item, checker) for item in fire(trigger, [route], config.zone, Origin())
                ]
            return verdicts
        case _:
            assert_never(trigger)


def _rendered(route: str | None, fired: Fired, checker: _Checker | None) -> dict[str, Any]:
    """What planning decided for one route, as explain shows it."""
    match fired:
        case PlannedExecution():
            return _fires(fired, checker)
        case Member():
            spec = fired.route.coalesce
            joins = "" if spec is None else f"joins a group of up to {spec.max_objects} objects of its batch"
            return {"route": route, "fires": True, "coalesce": f"{joins}, its key in {spec.parameter}" if spec else ""}
        case Skipped() if fired.details.get("misses"):
            miss = fired.details["misses"][0]
            return {
                "route": route,
                "fires": False,
                "failed": miss["filter"],
                "wanted": miss["wanted"],
                "seen": miss["seen"],
            }
        case Skipped():
            return {"route": route, "fires": False, "why": f"{fired.reason}: {SKIP_REASONS[fired.reason]}"}
        case Failed():
            return {"route": route, "fires": False, "why": fired.error}
        case _:
            assert_never(fired)


def _fires(step: PlannedExecution, checker: _Checker | None) -> dict[str, Any]:
    verdict: dict[str, Any] = {
        "route": step.route,
        "fires": True,
        "jobId": step.job.job_id,
        "query": step.job.query(),
        "parameters": dict(step.parameters),
        "jobCondition": step.job.job_condition,
        "dedupKey": step.dedup_key,
        "eventTime": step.time.isoformat(),
    }
    if checker is not None:
        verdict["service"] = checker.existing(step)
    return verdict


class _Checker:
    """Read-only lookups with the configured credentials: does the service already have the run?"""

    def __init__(self, config: Settings, now: datetime) -> None:
        self.exactly_once = ExactlyOnce(Wiring())
        self.call = Call(config, 0.0, None, now, headers=None)

    def existing(self, step: PlannedExecution) -> str:
        try:
            return describe(self.exactly_once.existing(step, self.call))
        except RequestError as exc:
            return f"lookup failed: {exc}"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "explain",
        help="why an event file does (or does not) start each route's job; with credentials, whether it already ran",
    )
    command.add_argument("event", help="a JSON event file, e.g. events/s3-put.json")
    command.add_argument("--platform", choices=("aws", "ncp"), default="aws", help="which platform's event rules apply")
    command.add_argument("--offline", action="store_true", help="do not ask the service whether the run exists")
    command.set_defaults(func=explain)
