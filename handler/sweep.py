"""Sweeps: a route's bucket listed for objects no run covers, each sent on as its upload's event would be."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, assert_never

from handler.errors import RequestError
from handler.events import ObjectTrigger, SweepTrigger
from handler.outcomes import Failed, Outcome, Skipped, Submitted
from handler.records import Record
from handler.routes import DEFAULT_SWEEP, Miss, Route, Sweep

if TYPE_CHECKING:
    from handler.storage.client import StoredObject


class Span(Record):
    """The LastModified times a sweep takes: from `since`, to `until` (objects newer are still arriving)."""

    __slots__ = ("since", "until", "clamped")

    def __init__(self, since: datetime, until: datetime, clamped: bool) -> None:
        self.since: Final = since
        self.until: Final = until
        # The asked start lay before what the duplicate check reads: the span starts there instead.
        self.clamped: Final = clamped


class Listed(Record):
    """What one route's sweep found: objects to send on, and the count of each kind it left."""

    __slots__ = ("route", "bucket", "prefix", "span", "objects", "counts", "error")

    def __init__(
        self,
        route: Route,
        bucket: str,
        prefix: str,
        span: Span,
        *,
        objects: tuple[ObjectTrigger, ...] = (),
        counts: dict[str, int] | None = None,
        error: RequestError | None = None,
    ) -> None:
        self.route: Final = route
        self.bucket: Final = bucket
        self.prefix: Final = prefix
        self.span: Final = span
        self.objects: Final = objects
        # listed, unmatched, older, newer (held: still arriving), waiting (held: no completion marker)
        self.counts: Final = counts or {}
        self.error: Final = error

    def summary(self) -> dict[str, Any]:
        """The sweep's part of its log record and result: what it listed and what it sends on."""
        said: dict[str, Any] = {
            "route": self.route.name,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "since": self.span.since.isoformat(),
            "until": self.span.until.isoformat(),
            **self.counts,
            "sent": len(self.objects),
        }
        if self.span.clamped:
            said["clamped"] = "the span starts where the duplicate check's window does (DATAFLOW_DEDUP_WINDOW_HOURS)"
        if self.error is not None:
            said["error"] = str(self.error)
        return said


def unlisted(route: Route, trigger: SweepTrigger, window: timedelta, error: RequestError) -> Listed:
    """A route's sweep that could not list its bucket, and why."""
    bucket, prefix = route.match.bucket or "", route.match.prefix or ""
    return Listed(route, bucket, prefix, span_of(trigger, route.sweep or DEFAULT_SWEEP, window), error=error)


def swept_summary(listed: Listed, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """What one route's sweep listed, and what became of what it sent on: covered, unproven, started, failed."""
    tally = dict.fromkeys(("covered", "unproven", "skipped", "runs", "started", "failed"), 0)
    for outcome in outcomes:
        if outcome.source.get("sweep") != listed.route.name:
            continue
        match outcome:
            case Submitted():
                tally["runs"] += 1
                tally["started"] += len(outcome.objects) or 1
            case Skipped():  # covered by a run, not provably new, or skipped for another reason (own-output)
                tally[{"duplicate": "covered", "unproven": "unproven"}.get(outcome.reason, "skipped")] += 1
            case Failed():
                tally["failed"] += 1
            case _:
                assert_never(outcome)
    return {**listed.summary(), **tally}


def swept_routes(trigger: SweepTrigger, routes: Sequence[Route]) -> list[Route] | str:
    """The routes a sweep lists, or why it names none it can list."""
    if trigger.target == "*":
        chosen = [route for route in routes if route.sweep is not None]
        return chosen or "no route has a sweep option (a sweep of '*' lists the routes that have one)"
    route = next((route for route in routes if route.name == trigger.target), None)
    if route is None:
        return f"no route named {trigger.target!r} (routes: {', '.join(r.name for r in routes)})"
    creates = any(name.lower().startswith("objectcreated") for name in route.match.events)
    if route.match.bucket is None or route.match.source not in (None, "object") or not creates:
        return (
            f"route {route.name!r} cannot be swept: a sweep lists the created objects of an object route's match.bucket"
        )
    return [route]


def span_of(trigger: SweepTrigger, sweep: Sweep, window: timedelta) -> Span:
    """From the asked start (or the look-back), never before the duplicate check's window; to the asked end,
    never into the quiet period."""
    now = trigger.time
    start = trigger.since or now - sweep.look_back
    end = min(trigger.until or now, now - sweep.quiet)
    oldest = now - window
    return Span(max(start, oldest), end, start < oldest)


def select(
    route: Route, sweep: Sweep, stored: Sequence[StoredObject], span: Span
) -> tuple[list[ObjectTrigger], dict[str, int]]:
    """The listed objects to send on, as the route would have them from their notifications. A marker's
    folder is released when the marker lands: its files are in the span by the later of the two times."""
    counts = dict.fromkeys(("listed", "unmatched", "older", "newer", "waiting"), 0)
    counts["listed"] = len(stored)
    released = _released(stored, sweep.marker)
    chosen: list[ObjectTrigger] = []
    for trigger in _triggers(route, stored, sweep.marker):
        folder = trigger.key.rpartition("/")[0]
        if isinstance(route.match.test_object(trigger), Miss):
            counts["unmatched"] += 1
        elif released is not None and folder not in released:
            counts["waiting"] += 1
        else:
            at = trigger.time if released is None else max(trigger.time, released[folder])
            kind = "older" if at < span.since else "newer" if at >= span.until else None
            if kind is None:
                chosen.append(trigger)
            else:
                counts[kind] += 1
    return chosen, counts


def _triggers(route: Route, stored: Iterable[StoredObject], marker: str | None) -> Iterator[ObjectTrigger]:
    """Each listed object as its upload's event, timed by its LastModified; folders and markers are no files."""
    event_name = next(name for name in route.match.events if name.lower().startswith("objectcreated"))
    for item in stored:
        name = item.key.rpartition("/")[2]
        if not name or name == marker:
            continue
        yield ObjectTrigger(
            item.bucket,
            item.key,
            event_name,
            item.last_modified,
            size=item.size,
            etag=item.etag,
            swept_by=route.name,
        )


def _released(stored: Iterable[StoredObject], marker: str | None) -> dict[str, datetime] | None:
    """Each folder holding the completion marker, with when it landed; None where the route names no marker."""
    if marker is None:
        return None
    return {item.key.rpartition("/")[0]: item.last_modified for item in stored if item.key.rpartition("/")[2] == marker}
