"""Coalescing: a route's objects of one invocation into groups, each one run naming its files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING

from handler.outcomes import Failed, Skipped
from handler.planning import CoalescedPlan, Manifest, Member, PlannedExecution, dedup_key, unique_keys
from handler.routes import MANIFEST_SUFFIX, Coalesce, Route, folder
from handler.runs.execution import fingerprint
from handler.runs.view import Covering
from handler.templates import MANIFEST_FIELD, TemplateError

if TYPE_CHECKING:
    from handler.events import EventSource


def covering(plan: CoalescedPlan) -> Covering:
    """What the route's runs for this bucket look like, for the reader to tell which objects they cover."""
    route, spec = plan.route, _spec(plan)
    names = frozenset({spec.parameter, *(name for name, _ in route.parameters)})
    return Covering(spec.parameter, _fixed(plan), names, route.job.job_condition)


def _fixed(plan: CoalescedPlan) -> dict[str, str]:
    """The route's parameters every group renders alike (no {count}, no time), as sent for this bucket and
    the values its groupBy names: a run with another value in them (another partition's) covers none of
    the plan's files.

    A route that matches several buckets and names none of them in a parameter cannot tell one
    bucket's run from another's: `validate` warns about it.
    """
    route, first = plan.route, plan.members[0]
    values = _shared(plan.route, first, {})
    fields = {"bucket", "route", *first.values}
    return {
        name: template.render(values, first.groups, first.time, UTC)
        for name, template in route.parameters
        if template.fields <= fields and template.match_groups <= first.groups.keys() and not template.renders_time
    }


def _shared(route: Route, member: Member, more: Mapping[str, str]) -> dict[str, str]:
    """The placeholder values every member of the member's group has alike, with `more`."""
    return {**member.values, "bucket": member.bucket, "route": route.name, **more}


def groups(plan: CoalescedPlan, members: Sequence[Member], zone: tzinfo) -> list[PlannedExecution | Failed]:
    """The members in arrival order, cut into groups of at most maxObjects files and maxBytes in the parameter.

    A key uploaded again in the batch joins the group that lists it, even one closed already, without being
    listed twice: one run per file. A member that cannot be joined (its key holds the separator, its time
    cannot render) fails alone.
    """
    spec = _spec(plan)
    cut: list[tuple[list[Member], str] | Failed] = []
    listing: dict[str, list[Member]] = {}  # each key -> the group that lists it, open or closed
    current: list[Member] = []
    files = size = 0
    for member in members:
        refused = _refused(plan, member, zone)
        if refused is not None:
            cut.append(refused)
            continue
        if member.key in listing:
            listing[member.key].append(member)  # its messages go with the run that names the file
            continue
        added = len(member.key.encode("utf-8")) + (len(spec.separator.encode("utf-8")) if current else 0)
        if current and spec.max_bytes is not None and size + added > spec.max_bytes:
            cut.append((current, "bytes"))
            current, files, size, added = [], 0, 0, len(member.key.encode("utf-8"))
        current.append(member)
        listing[member.key] = current
        files, size = files + 1, size + added
        if files == spec.max_objects:
            cut.append((current, "size"))
            current, files, size = [], 0, 0
    if current:
        cut.append((current, "end of batch"))
    return [entry if isinstance(entry, Failed) else group(plan, entry[0], zone, entry[1]) for entry in cut]


def _refused(plan: CoalescedPlan, member: Member, zone: tzinfo) -> Failed | None:
    """The object failed alone (its own messages only) when it cannot join a group; None when it can."""
    message = _unjoinable(plan, member, zone)
    if message is None:
        return None
    return Failed(
        plan.route.name,
        plan.route.job.job_id,
        "bad-event",
        message,
        retryable=False,
        source=member.source,
        messages=member.messages,
        dedup_key=member.file_key,
    )


def _unjoinable(plan: CoalescedPlan, member: Member, zone: tzinfo) -> str | None:
    """Why the object cannot join a group: its key holds the separator, or its time cannot render.

    A group renders {time...} at its newest member's time, so a time no template can render (year
    9999 in a zone ahead of UTC, Go's zero time with a negative offset) would fail its neighbours.
    """
    spec = _spec(plan)
    if spec.manifest is not None and ("\n" in member.key or "\r" in member.key):
        return "the key contains a line break; a manifest lists one key a line, so it cannot list this key"
    if spec.manifest is None and spec.separator in member.key:
        return f"the key contains the coalesce separator {spec.separator!r}; choose another separator"
    for name, template in plan.route.parameters:
        if template.renders_time:
            try:
                template.render({}, {}, member.time, zone)
            except TemplateError as exc:
                return f"parameters.{name}: {exc}"
    return None


def group(plan: CoalescedPlan, members: Sequence[Member], zone: tzinfo, closed: str) -> PlannedExecution:
    """One group's planned execution: the keys joined (or their fingerprint, the keys in its manifest), the
    other parameters rendered from what it shares.

    Every member's time rendered when it joined, so the newest one's renders too.
    """
    route, spec = plan.route, _spec(plan)
    newest = max(member.time for member in members)
    files = unique_keys(members)
    listed = manifest(route, members[0].bucket, files)
    more = {"count": str(len(files))} | ({MANIFEST_FIELD: listed.path} if listed is not None else {})
    values = _shared(route, members[0], more)
    parameters = {name: template.render(values, members[0].groups, newest, zone) for name, template in route.parameters}
    parameters[spec.parameter] = fingerprint(files) if listed is not None else spec.separator.join(files)
    key = dedup_key(route.name, route.job, {}, sorted(member.file_key for member in members))
    return PlannedExecution(
        route.name,
        route.job,
        parameters,
        key,
        time=min(member.time for member in members),
        dedup_parameter=None,
        source=_source(members),
        messages=_messages(members),
        max_running=route.max_running,
        members=tuple(members),
        closed=closed,
        manifest=listed,
    )


def manifest(route: Route, bucket: str, files: Sequence[str]) -> Manifest | None:
    """Where the route lists a group's keys, named from the group's identity (route, bucket, keys): a retry of
    the group writes the same object; None where the route writes no manifest."""
    spec = _spec_of(route)
    if spec.manifest is None:
        return None
    keys = tuple(sorted(files))
    identity = json.dumps([route.name, bucket, keys], ensure_ascii=True).encode("ascii")
    name = hashlib.sha256(identity).hexdigest()[:32]
    written, prefix = spec.manifest
    return Manifest(written, f"{folder(prefix)}{route.name}/{name}{MANIFEST_SUFFIX}", keys)


def remembered(plan: CoalescedPlan, known: Mapping[str, str | None]) -> list[Skipped]:
    """Each object an earlier run already covers, skipped with that run's id."""
    return [
        Skipped(
            plan.route.name,
            "duplicate",
            member.source,
            member.messages,
            dedup_key=member.file_key,
            execution_id=known[member.file_key],
        )
        for member in plan.members
        if member.file_key in known
    ]


def unproven(plan: CoalescedPlan, why: str) -> list[Skipped]:
    """Each swept object the answers cannot prove new: left for a sweep that can (never started twice)."""
    details = {"dedupUnverifiable": True, "why": why}
    return [
        Skipped(plan.route.name, "unproven", m.source, m.messages, dedup_key=m.file_key, details=details)
        for m in plan.members
    ]


def failed(plan: CoalescedPlan, code: str, message: str, retryable: bool) -> list[Failed]:
    """Each of the plan's objects failed alike (its own messages kept)."""
    job_id = plan.route.job.job_id
    return [
        Failed(
            plan.route.name,
            job_id,
            code,
            message,
            retryable=retryable,
            source=member.source,
            messages=member.messages,
            dedup_key=member.file_key,
        )
        for member in plan.members
    ]


def _source(members: Sequence[Member]) -> EventSource:
    first = members[0].source
    source: EventSource = {"kind": "object", "bucket": members[0].bucket, "key": members[0].key}
    if "eventName" in first:
        source["eventName"] = first["eventName"]
    if "sweep" in first:
        source["sweep"] = first["sweep"]
    return source


def _messages(members: Sequence[Member]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(message for member in members for message in member.messages))


def _spec(plan: CoalescedPlan) -> Coalesce:
    return _spec_of(plan.route)


def _spec_of(route: Route) -> Coalesce:
    spec = route.coalesce
    if spec is None:  # a CoalescedPlan is made only for a coalescing route
        raise TypeError(f"route {route.name} does not coalesce")
    return spec
