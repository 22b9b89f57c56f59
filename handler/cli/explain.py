"""`explain`: for each record of an event file and each route, whether it fires and why not, without sending."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any, assert_never
from urllib.parse import quote_plus

from handler.cli.common import (
    MAX_REACH_HOURS,
    CommandError,
    add_parameters_option,
    as_json,
    emit,
    iso_time,
    out,
    reach,
    read_json,
    say,
    settings,
    with_parameters,
)
from handler.errors import HandlerError, RequestError
from handler.events import (
    BadEvent,
    JobInvocation,
    ObjectTrigger,
    RouteInvocation,
    S3TestTrigger,
    ScheduleTrigger,
    SweepTrigger,
    Trigger,
    normalise,
)
from handler.exactly_once import Call, ExactlyOnce, ahead, describe
from handler.outcomes import Failed, Skipped
from handler.planning import Fired, Member, Origin, PlannedExecution, fire
from handler.settings import SETTING_NAMES, Settings, config_from
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
    now = datetime.now(UTC)
    event, given = _event(args, now)
    config = settings(given)
    batch = normalise(event, platform=args.platform, now=now, activation_id="explain", zone=config.zone)
    timed = ObjectTrigger | ScheduleTrigger | RouteInvocation | JobInvocation
    times = [
        trigger.time for delivery in batch.deliveries for trigger in delivery.triggers if isinstance(trigger, timed)
    ]
    if times:  # the lookups read back as far as the oldest event, not only the dedup window
        config = settings(reach(given, min(*times, now), config.dedup_window))
    checker = None if config.dry_run or args.offline else _Checker(config, now)
    records = []
    for delivery in batch.deliveries:
        for trigger in delivery.triggers:
            source: dict[str, Any] = dict(trigger.source())
            if delivery.message_id is not None:
                source["messageId"] = delivery.message_id
            records.append({"source": source, "routes": _verdicts(trigger, config, checker)})
    read_since = (now - config.dedup_window).isoformat(timespec="seconds")
    data = {"timezone": str(config.zone), "lookups": checker is not None, "readSince": read_since, "records": records}
    if as_json(args):
        emit(data)
    else:
        out(_table(data))
    return 0


def _event(args: argparse.Namespace, now: datetime) -> tuple[object, dict[str, str]]:
    """The event to explain and the configuration it runs with, as the platform would give them."""
    config = with_parameters(args)
    if args.bucket is not None or args.key is not None:
        if args.event is not None or not (args.bucket and args.key):
            raise CommandError("explain takes an event file, or --bucket and --key (both), not both ways")
        return _one_upload(args, config, now), config
    if args.event is None:
        raise CommandError("explain needs an event file, or --bucket B --key K for one upload")
    event = read_json(args.event)
    if isinstance(event, dict) and isinstance(event.get("Messages"), list):
        say("note: read as `aws sqs receive-message` output: each message's Body is explained as an SQS record")
        event = from_receive_message(event["Messages"])
    if args.platform == "ncp" and isinstance(event, dict):
        # As Cloud Functions (and `invoke --platform ncp`) do: settings in the payload override the environment.
        config = {**config, **config_from(event)}
        event = {name: value for name, value in event.items() if name not in SETTING_NAMES}
    return event, config


def _one_upload(args: argparse.Namespace, config: dict[str, str], now: datetime) -> dict[str, Any]:
    """The notification the object's upload sent: its state read from object storage where it can be (so its
    identity is the notification's own), else timed `--time` or as far back as a command reads."""
    if args.time is None:
        stored = ObjectTrigger(args.bucket, args.key, "ObjectCreated:Put", now, own_time=False)
        try:
            read = Wiring().objects(settings(config), args.platform).identified(stored, None)
        except HandlerError as exc:
            say(f"note: {exc}")
            read = stored
        if read.own_time:
            return upload(read, read.time)
        say(
            f"note: the object's own state was not read: any run of the last {MAX_REACH_HOURS // 24} days with these "
            "parameters counts (give --time for the upload's own)"
        )
        # An hour short of the furthest a command reads, so the read reaches all of it.
        return upload(stored, now - timedelta(hours=MAX_REACH_HOURS - 1))
    return upload(ObjectTrigger(args.bucket, args.key, "ObjectCreated:Put", args.time), args.time)


def upload(stored: ObjectTrigger, time: datetime) -> dict[str, Any]:
    """The S3 notification of one upload (its key URL-encoded, as S3 sends it) at `time`."""
    obj: dict[str, Any] = {"key": quote_plus(stored.key, safe="/")}
    if stored.etag:
        obj |= {"eTag": stored.etag, "size": stored.size}
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": time.isoformat(),
        "s3": {"bucket": {"name": stored.bucket}, "object": obj},
    }
    return {"Records": [record]}


def from_receive_message(messages: list[Any]) -> dict[str, Any]:
    """`aws sqs receive-message` output as the SQS event Lambda would get for the same messages."""
    records = [
        {"eventSource": "aws:sqs", "messageId": message.get("MessageId"), "body": message.get("Body")}
        if isinstance(message, dict)
        else message
        for message in messages
    ]
    return {"Records": records}


def _table(data: dict[str, Any]) -> str:
    """What a person reads: each record's source, then a line per route (why not, or what it would send)."""
    lookups = f"runs read since {data['readSince']}" if data["lookups"] else "no lookups"
    lines = [f"explain: {len(data['records'])} record(s); placeholders in {data['timezone']}; {lookups}"]
    for record in data["records"]:
        lines.append(_source_line(record["source"]))
        for verdict in record["routes"]:
            lines += _verdict_lines(verdict)
    return "\n".join(lines)


def _source_line(source: dict[str, Any]) -> str:
    kind = source.get("kind")
    if "bucket" in source:
        said = f"{kind} {source['bucket']}/{source['key']} {source.get('eventName', '')}".rstrip()
    else:
        said = " ".join(str(value) for value in source.values())
    return said + (f" (SQS message {source['messageId']})" if "messageId" in source else "")


def _verdict_lines(verdict: dict[str, Any]) -> list[str]:
    route = verdict["route"] or "-"
    if not verdict["fires"]:
        why = verdict.get("why") or f"{verdict['failed']} wanted {verdict['wanted']!r}, saw {verdict['seen']!r}"
        return [f"  no    {route}: {why}"]
    if "dedupKey" not in verdict:  # a member of a coalesced group
        return [f"  fires {route}: {verdict['coalesce']}"]
    parameters = ", ".join(f"{name}={value}" for name, value in verdict["parameters"].items()) or "no parameters"
    lines = [f"  fires {route}: job {verdict['jobId']}, {parameters}", f"        dedup key {verdict['dedupKey']}"]
    if "service" in verdict:
        lines.append(f"        service: {verdict['service']}")
    if "note" in verdict:
        lines.append(f"        note: {verdict['note']}")
    return lines


def _verdicts(trigger: Trigger, config: Settings, checker: _Checker | None) -> list[dict[str, Any]]:
    """Each route's verdict, as planning decides it for this trigger alone (no second set of rules here)."""
    match trigger:
        case BadEvent():
            return [{"route": None, "fires": False, "why": f"bad-event: {trigger.reason}"}]
        case S3TestTrigger():
            return [{"route": None, "fires": False, "why": "test-event: S3's test message starts nothing"}]
        case SweepTrigger():
            why = "a sweep lists object storage: `invoke --dry-run` lists it and says what each object would start"
            return [{"route": None, "fires": False, "why": why}]
        case JobInvocation():
            return [_rendered(None, item, checker) for item in fire(trigger, [], config.zone, Origin(trigger.source()))]
        case ObjectTrigger() | ScheduleTrigger() | RouteInvocation():
            verdicts = []
            for route in config.routes:
                if isinstance(trigger, RouteInvocation) and route.name != trigger.route:
                    why = f"the direct call names route {trigger.route!r}"
                    verdicts.append({"route": route.name, "fires": False, "why": why})
                    continue
                verdicts += [
                    _rendered(route.name, item, checker)
                    for item in fire(trigger, [route], config.zone, Origin(trigger.source()))
                ]
            return verdicts
        case _:
            assert_never(trigger)


def _joins(member: Member) -> str:
    """Which group a coalescing route's object joins: of how many, which partition's (what its run renders)."""
    spec = member.route.coalesce
    if spec is None:
        return ""
    joins = f"joins a group of up to {spec.max_objects} objects of its batch"
    if spec.group_by is not None:
        partition = spec.group_by.render(member.values, member.groups, member.time, UTC)
        joins += f" with groupBy {spec.group_by.text} = {partition}"
    return f"{joins}, its key in {spec.parameter}"


def _rendered(route: str | None, fired: Fired, checker: _Checker | None) -> dict[str, Any]:
    """What planning decided for one route, as explain shows it."""
    match fired:
        case PlannedExecution():
            return _fires(fired, checker)
        case Member():
            return {"route": route, "fires": True, "coalesce": _joins(fired)}
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
    if ahead(step, datetime.now(UTC)):
        verdict["note"] = "its time is ahead of this clock: invoke refuses it (bad-event) until that time has come"
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
    command.add_argument(
        "event", nargs="?", help="a JSON event file (events/s3-put.json, or `aws sqs receive-message` output)"
    )
    command.add_argument("--bucket", help="instead of an event file: one upload's bucket (with --key)")
    command.add_argument("--key", help="instead of an event file: one upload's key, as stored (with --bucket)")
    command.add_argument(
        "--time",
        type=iso_time,
        help="with --bucket/--key: when it was uploaded (ISO 8601); default: the object's own LastModified and"
        " ETag where object storage can be read, else 14 days back (any run since with these parameters counts)",
    )
    command.add_argument("--platform", choices=("aws", "ncp"), default="aws", help="which platform's event rules apply")
    command.add_argument("--offline", action="store_true", help="do not ask the service whether the run exists")
    command.add_argument("--json", action="store_true", help="JSON (the default where stdout is not a terminal)")
    add_parameters_option(command)
    command.set_defaults(func=explain)
