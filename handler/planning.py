"""All triggers of an invocation against the routes: planned executions, or each unfired event's outcome."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Final, assert_never

from handler.events import (
    BadEvent,
    Batch,
    JobInvocation,
    ObjectTrigger,
    RoutableTrigger,
    RouteInvocation,
    S3TestTrigger,
    ScheduleTrigger,
    SweepTrigger,
    Trigger,
)
from handler.jobs import JobSpec
from handler.outcomes import Failed, Skipped
from handler.records import Record
from handler.routes import MATCH_BUDGET_S, Miss, PatternTimeoutError, Route
from handler.templates import TemplateError

if TYPE_CHECKING:
    from handler.events import EventSource
    from handler.sweep import Listed

    # Lists what a sweep names (the launcher's, with object storage): each route's findings, or why none.
    Sweeper = Callable[[SweepTrigger], list[Listed] | str]

log = logging.getLogger(__name__)

# Routes whose missed filter a no-route skip's log record names.
MISSES_LOGGED = 20


class PlannedExecution(Record):
    """One execution to submit: where, what body, the key that identifies it across deliveries,
    and the deliveries (SQS messages) it stands for.

    `time` is the event's time: no execution of this event can have been created before it.
    """

    __slots__ = (
        "route",
        "job",
        "parameters",
        "dedup_key",
        "time",
        "dedup_parameter",
        "source",
        "messages",
        "max_running",
        "members",
        "closed",
        "rerun_of",
        "manifest",
    )

    def __init__(
        self,
        route: str | None,
        job: JobSpec,
        parameters: Mapping[str, str],
        dedup_key: str,
        *,
        time: datetime,
        dedup_parameter: str | None = None,
        source: EventSource | None = None,
        messages: tuple[str, ...] = (),
        max_running: int | None = None,
        members: tuple[Member, ...] = (),
        closed: str | None = None,
        rerun_of: str | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        self.route: Final = route
        self.job: Final = job
        self.parameters: Final = parameters
        self.dedup_key: Final = dedup_key
        self.time: Final = time
        self.dedup_parameter: Final = dedup_parameter
        self.source: Final[EventSource] = source or {}
        self.messages: Final = messages
        self.max_running: Final = max_running
        # A coalesced group: the objects it stands for (each remembered as run by it), and why it closed.
        self.members: Final = members
        self.closed: Final = closed
        # A forced re-run: the run it re-runs (same parameters: only a dedupParameter tells the two apart).
        self.rerun_of: Final = rerun_of
        # A coalesced group whose keys are written as one object before its run is created (the run reads it).
        self.manifest: Final = manifest


class Manifest(Record):
    """The object that lists a group's keys, one a line: named from the group's identity, so a retry of the
    group writes the same object with the same bytes."""

    __slots__ = ("bucket", "key", "keys")

    def __init__(self, bucket: str, key: str, keys: tuple[str, ...]) -> None:
        self.bucket: Final = bucket
        self.key: Final = key
        self.keys: Final = keys  # sorted: the bytes do not depend on the order the objects arrived in

    @property
    def path(self) -> str:
        return f"{self.bucket}/{self.key}"

    def body(self) -> bytes:
        return "".join(f"{key}\n" for key in self.keys).encode("utf-8")


class Member(Record):
    """One object that a coalescing route fired: what it joins into the group, and its own identity.

    `values` and `groups` are its placeholder values and pattern groups that the route's groupBy names:
    objects join one group only where all of them are equal, so the group's run may render them.
    """

    __slots__ = ("route", "bucket", "key", "time", "file_key", "source", "messages", "values", "groups")

    def __init__(
        self,
        route: Route,
        bucket: str,
        key: str,
        time: datetime,
        *,
        file_key: str,
        source: EventSource | None = None,
        messages: tuple[str, ...] = (),
        values: Mapping[str, str] | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self.route: Final = route
        self.bucket: Final = bucket
        self.key: Final = key
        self.time: Final = time
        self.file_key: Final = file_key
        self.source: Final[EventSource] = source or {}
        self.messages: Final = messages
        self.values: Final[Mapping[str, str]] = values or {}
        self.groups: Final[Mapping[str, str]] = groups or {}

    @property
    def place(self) -> Place:
        """What the objects of one coalesced plan share: route, bucket and the values groupBy names.

        The values themselves, not their rendering: "{match.a}{match.b}" renders "x"+"yz" and "xy"+"z" alike.
        """
        return self.route.name, self.bucket, tuple(sorted(self.values.items())), tuple(sorted(self.groups.items()))


def unique_keys(members: Sequence[Member]) -> tuple[str, ...]:
    """Each object's key once, in arrival order: a key uploaded twice in a batch is one file for the job."""
    return tuple(dict.fromkeys(member.key for member in members))


class CoalescedPlan(Record):
    """The objects of one invocation that one coalescing route fired in one bucket with the values its
    groupBy names alike (each member's `place`), still to be grouped."""

    __slots__ = ("route", "members")

    def __init__(self, route: Route, members: tuple[Member, ...]) -> None:
        self.route: Final = route
        self.members: Final = members


Fired = PlannedExecution | Member | Skipped | Failed
Place = tuple[str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
Step = PlannedExecution | CoalescedPlan | Skipped | Failed


def plan(
    batch: Batch,
    routes: Sequence[Route],
    zone: tzinfo,
    expired: Callable[[], bool],
    sweeper: Sweeper | None = None,
) -> list[Step]:
    """Every (event, route) pair of the batch in delivery order: planned, or already decided.

    The objects a coalescing route fires become one CoalescedPlan per route, bucket and the values
    its groupBy names, where its first object stood. `expired` says the invocation's time ran out:
    what is not yet routed then fails retryable.
    """
    placed: list[Step | Place] = []  # a member's place holds its coalesced plan's place in the order
    gathered: dict[Place, dict[str, Member]] = {}
    for delivery in batch.deliveries:
        messages = () if delivery.message_id is None else (delivery.message_id,)
        for trigger in delivery.triggers:
            source = trigger.source()
            if delivery.message_id is not None:
                source["messageId"] = delivery.message_id
            for fired in _steps(trigger, routes, zone, expired, Origin(source, messages), sweeper):
                if not isinstance(fired, Member):
                    placed.append(fired)
                    continue
                place = fired.place
                if place not in gathered:
                    placed.append(place)
                _gather(gathered.setdefault(place, {}), fired)
    return [
        CoalescedPlan(next(iter(gathered[step].values())).route, tuple(gathered[step].values()))
        if isinstance(step, tuple)
        else step
        for step in placed
    ]


class Origin(Record):
    """Where a trigger came from: its source description and the deliveries (SQS messages) it stands for."""

    __slots__ = ("source", "messages")

    def __init__(self, source: EventSource | None = None, messages: tuple[str, ...] = ()) -> None:
        self.source: Final[EventSource] = source or {}
        self.messages: Final = messages


def _gather(members: dict[str, Member], member: Member) -> None:
    """One member per object: a second delivery of the same event joins the first one's messages."""
    known = members.get(member.file_key)
    if known is None:
        members[member.file_key] = member
        return
    messages = tuple(dict.fromkeys(known.messages + member.messages))
    members[member.file_key] = Member(
        known.route,
        known.bucket,
        known.key,
        known.time,
        file_key=known.file_key,
        source=known.source,
        messages=messages,
        values=known.values,
        groups=known.groups,
    )


def _steps(
    trigger: Trigger,
    routes: Sequence[Route],
    zone: tzinfo,
    expired: Callable[[], bool],
    origin: Origin,
    sweeper: Sweeper | None = None,
) -> list[Fired]:
    source, messages = origin.source, origin.messages
    match trigger:
        case BadEvent():
            return [Failed(None, None, "bad-event", trigger.reason, retryable=False, source=source, messages=messages)]
        case S3TestTrigger():
            return [Skipped(None, "test-event", source, messages)]
        case ObjectTrigger() | ScheduleTrigger() | RouteInvocation() | JobInvocation() | SweepTrigger():
            if expired():
                why = "the invocation's time ran out before this event was routed"
                return [Failed(None, None, "timeout", why, retryable=True, source=source, messages=messages)]
            if isinstance(trigger, SweepTrigger):
                return _swept(trigger, zone, sweeper, origin)
            return fire(trigger, routes, zone, origin)
        case _:
            assert_never(trigger)


def _swept(trigger: SweepTrigger, zone: tzinfo, sweeper: Sweeper | None, origin: Origin) -> list[Fired]:
    """Each object a sweep listed, fired for the route whose sweep listed it (as its notification would be)."""
    found = "object storage cannot be listed here" if sweeper is None else sweeper(trigger)
    if isinstance(found, str):
        return [Failed(None, None, "unknown-route", found, retryable=False, source=origin.source)]
    fired: list[Fired] = []
    for listed in found:
        route, error = listed.route, listed.error
        if error is not None:
            message = f"the sweep could not list s3://{listed.bucket}/{listed.prefix}: {error.message}"
            retryable = error.kind != "permanent"
            fired.append(
                Failed(route.name, route.job.job_id, error.code, message, retryable=retryable, source=origin.source)
            )
            continue
        for obj in listed.objects:
            fired += fire(obj, [route], zone, Origin(obj.source(), origin.messages))
    return fired


def fire(trigger: RoutableTrigger, routes: Sequence[Route], zone: tzinfo, origin: Origin) -> list[Fired]:
    """Every route the trigger fires, or exactly one skip (or failure) saying why none fired."""
    source, messages = origin.source, origin.messages
    match trigger:
        case ObjectTrigger():
            return _fire_object(trigger, routes, zone, origin)
        case ScheduleTrigger():
            return _fire_schedule(trigger, routes, zone, origin)
        case RouteInvocation():
            for route in routes:
                if route.name == trigger.route:
                    return [planned(route, trigger, {}, zone, origin)]
            known = ", ".join(route.name for route in routes[:20])
            message = f"no route is named {trigger.route!r} (routes: {known})"
            return [
                Failed(trigger.route, None, "unknown-route", message, retryable=False, source=source, messages=messages)
            ]
        case JobInvocation():
            parameters = dict(trigger.parameters)
            key = dedup_key(None, trigger.job, parameters, trigger.identity())
            return [
                PlannedExecution(
                    None,
                    trigger.job,
                    parameters,
                    key,
                    time=trigger.time,
                    source=source,
                    messages=messages,
                )
            ]
        case _:
            assert_never(trigger)


def _fire_schedule(trigger: ScheduleTrigger, routes: Sequence[Route], zone: tzinfo, origin: Origin) -> list[Fired]:
    _log_fire(trigger, zone)
    fired: list[Fired] = [
        planned(route, trigger, {}, zone, origin) for route in routes if route.match.accepts_schedule(trigger)
    ]
    if not fired:
        _warn_unrouted_schedule(trigger, routes)
        misses = [_miss(route, miss) for route in routes if (miss := route.match.test_schedule(trigger))]
        return [Skipped(None, "no-route", origin.source, origin.messages, details={"misses": misses[:MISSES_LOGGED]})]
    return fired


def _fire_object(trigger: ObjectTrigger, routes: Sequence[Route], zone: tzinfo, origin: Origin) -> list[Fired]:
    source, messages = origin.source, origin.messages
    if trigger.key.endswith("/") and not trigger.size:
        return [Skipped(None, "folder-marker", source, messages)]
    fired: list[Fired] = []
    misses: list[dict[str, str]] = []  # which filter each route failed: the no-route record says why
    for route in routes:
        if route.writes(trigger.bucket, trigger.key):
            fired.append(Skipped(route.name, "own-output", source, messages))
            continue
        try:
            tested = route.test_object(trigger)
        except PatternTimeoutError:
            message = f"match.pattern ran past {MATCH_BUDGET_S:g} s of CPU on this key; rewrite it without nesting"
            fired.append(
                Failed(route.name, None, "pattern-timeout", message, retryable=False, source=source, messages=messages)
            )
            continue
        if isinstance(tested, Miss):
            if len(misses) < MISSES_LOGGED:
                misses.append(_miss(route, tested))
        elif route.coalesce is not None:
            fired.append(_member(route, trigger, tested, origin))
        else:
            fired.append(planned(route, trigger, tested, zone, origin))
    if fired:
        return fired
    if not trigger.event_name.lower().startswith("objectcreated"):
        return [Skipped(None, "event-type", source, messages, details={"misses": misses})]
    return [Skipped(None, "no-route", source, messages, details={"misses": misses})]


def _miss(route: Route, miss: Miss) -> dict[str, str]:
    return {"route": route.name, "filter": miss.filter, "wanted": miss.wanted, "seen": miss.seen}


def _member(route: Route, trigger: ObjectTrigger, groups: Mapping[str, str], origin: Origin) -> Member | Failed:
    """The object as a member of the route's groups; failed alone when a pattern group its groupBy names
    took no part in the match (it belongs to no group, and must not hold up the others)."""
    file_key = dedup_key(route.name, route.job, {}, trigger.identity())
    source, messages = origin.source, origin.messages
    spec = route.coalesce
    named = spec.shared_groups if spec is not None else frozenset()
    if missing := sorted(named - groups.keys()):
        message = (
            f"coalesce.groupBy: {', '.join(f'{{match.{group}}}' for group in missing)} has no value for this key "
            "(its group of match.pattern took no part in the match); make the group required, or match.pattern "
            "stricter"
        )
        return Failed(
            route.name,
            None,
            "bad-event",
            message,
            retryable=False,
            source=source,
            messages=messages,
            dedup_key=file_key,
        )
    values = {**trigger.values(), "route": route.name}
    return Member(
        route,
        trigger.bucket,
        trigger.key,
        trigger.time,
        file_key=file_key,
        source=source,
        messages=messages,
        values={field: values.get(field, "") for field in (spec.shared_fields if spec is not None else ())},
        groups={group: groups[group] for group in named},
    )


def planned(
    route: Route, trigger: RoutableTrigger, groups: Mapping[str, str], zone: tzinfo, origin: Origin | None = None
) -> PlannedExecution | Failed:
    origin = origin or Origin()
    values = {**trigger.values(), "route": route.name}
    source = origin.source
    if isinstance(trigger, RouteInvocation) and (empty := absent_placeholders(route, values, groups)):
        # A direct call carries no object or schedule fields: it still runs (the contract) and says what rendered empty.
        source = {**source, "emptyPlaceholders": empty}
    parameters: dict[str, str] = {}
    for name, template in route.parameters:
        try:
            parameters[name] = template.render(values, groups, trigger.time, zone)
        except TemplateError as exc:
            message = f"parameters.{name}: {exc}"
            return Failed(
                route.name, None, "bad-event", message, retryable=False, source=source, messages=origin.messages
            )
    key = dedup_key(route.name, route.job, parameters, trigger.identity())
    if route.dedup_parameter is not None:
        parameters[route.dedup_parameter] = key
    return PlannedExecution(
        route.name,
        route.job,
        parameters,
        key,
        time=trigger.time,
        dedup_parameter=route.dedup_parameter,
        source=source,
        messages=origin.messages,
        max_running=route.max_running,
        rerun_of=trigger.rerun_of if isinstance(trigger, RouteInvocation) else None,
    )


def absent_placeholders(route: Route, values: Mapping[str, str], groups: Mapping[str, str]) -> list[str]:
    """The placeholders of the route's parameters that the trigger has no value for (they render empty)."""
    absent: dict[str, None] = {}
    for _, template in route.parameters:
        absent.update(dict.fromkeys(f"{{{field}}}" for field in sorted(template.fields) if field not in values))
        absent.update(
            dict.fromkeys(f"{{match.{group}}}" for group in sorted(template.match_groups) if group not in groups)
        )
    return list(absent)


def dedup_key(route: str | None, job: JobSpec, parameters: Mapping[str, str], identity: Sequence[object]) -> str:
    """Equal for every delivery of one event to one route; different whenever the run would differ."""
    target = [job.job_id, job.workflow_id, job.trigger_id, job.job_condition]
    material = json.dumps([route, target, parameters, *identity], sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(material.encode("ascii")).hexdigest()[:32]


def _log_fire(trigger: ScheduleTrigger, zone: tzinfo) -> None:
    # Cloud Functions' cron console states no zone: this record shows what the crontab's minute was in UTC and
    # in DATAFLOW_TIMEZONE, the zone {time...} renders in, so a first run shows which date the job gets.
    log.info(
        "schedule fired",
        extra={
            "schedule": trigger.schedule,
            "fireTimeUtc": trigger.time.astimezone(UTC).isoformat(),
            "fireTimeLocal": trigger.time.astimezone(zone).isoformat(),
            "timezone": getattr(zone, "key", None) or str(zone),
        },
    )


def _warn_unrouted_schedule(trigger: ScheduleTrigger, routes: Sequence[Route]) -> None:
    known = sorted({route.match.schedule for route in routes if route.match.schedule})
    log.warning(
        "schedule started nothing",
        extra={
            "schedule": trigger.schedule,
            "knownSchedules": known,
            "hint": "match.schedule compares names exactly (case matters)",
        },
    )
