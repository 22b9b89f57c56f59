"""`explain`: for each record of an event file and each route, whether it fires and why not, without sending."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any, assert_never

from handler.cli.common import emit, read_json, settings
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
from handler.outcomes import Failed
from handler.planning import PlannedExecution, dedup_key, planned
from handler.routes import Miss, PatternTimeoutError, Route
from handler.settings import Settings
from handler.wiring import Wiring


def explain(args: argparse.Namespace) -> int:
    event = read_json(args.event)
    config = settings()
    now = datetime.now(UTC)
    batch = normalise(event, platform=args.platform, now=now, activation_id="explain", zone=config.zone)
    checker = None if config.dry_run or args.offline else _Checker(config, now)
    records = []
    for delivery in batch.deliveries:
        for trigger in delivery.triggers:
            source: dict[str, Any] = dict(trigger.source())
            if delivery.message_id is not None:
                source["messageId"] = delivery.message_id
            records.append({"source": source, "routes": _verdicts(trigger, config, checker)})
    emit({"timezone": str(config.zone), "lookups": checker is not None, "records": records})
    return 0


def _verdicts(trigger: Trigger, config: Settings, checker: _Checker | None) -> list[dict[str, Any]]:
    match trigger:
        case BadEvent():
            return [{"route": None, "fires": False, "why": f"bad-event: {trigger.reason}"}]
        case S3TestTrigger():
            return [{"route": None, "fires": False, "why": "test-event: S3's test message starts nothing"}]
        case ObjectTrigger() if trigger.key.endswith("/") and not trigger.size:
            return [{"route": None, "fires": False, "why": "folder-marker: an empty key ending in '/'"}]
        case JobInvocation():
            parameters = dict(trigger.parameters)
            key = dedup_key(None, trigger.job, parameters, trigger.identity())
            step = PlannedExecution(None, trigger.job, parameters, key, time=trigger.time)
            return [_fires(step, checker)]
        case ObjectTrigger() | ScheduleTrigger() | RouteInvocation():
            return [_verdict(route, trigger, config, checker) for route in config.routes]
        case _:
            assert_never(trigger)


def _verdict(
    route: Route,
    trigger: ObjectTrigger | ScheduleTrigger | RouteInvocation,
    config: Settings,
    checker: _Checker | None,
) -> dict[str, Any]:
    """One route against one trigger: the first filter that failed, with what it saw, or what would be sent."""
    groups: dict[str, str] = {}
    match trigger:
        case ObjectTrigger() if route.writes(trigger.bucket, trigger.key):
            return {"route": route.name, "fires": False, "why": "own-output: the route's job writes here"}
        case ObjectTrigger():
            try:
                tested = route.match.test_object(trigger)
            except PatternTimeoutError:
                return {"route": route.name, "fires": False, "why": "match.pattern ran past its budget on this key"}
            if isinstance(tested, Miss):
                return _missed(route, tested)
            groups = tested
        case ScheduleTrigger():
            missed = route.match.test_schedule(trigger)
            if missed is not None:
                return _missed(route, missed)
        case RouteInvocation():
            if route.name != trigger.route:
                return {"route": route.name, "fires": False, "why": f"the direct call names route {trigger.route!r}"}
        case _:
            assert_never(trigger)
    if route.coalesce is not None and isinstance(trigger, ObjectTrigger):
        return {
            "route": route.name,
            "fires": True,
            "coalesce": f"joins a group of up to {route.coalesce.max_objects} objects of its batch, its key in "
            f"{route.coalesce.parameter}",
        }
    step = planned(route, trigger, groups, config.zone)
    if isinstance(step, Failed):
        return {"route": route.name, "fires": False, "why": step.error}
    return _fires(step, checker)


def _missed(route: Route, miss: Miss) -> dict[str, Any]:
    return {"route": route.name, "fires": False, "failed": miss.filter, "wanted": miss.wanted, "seen": miss.seen}


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
