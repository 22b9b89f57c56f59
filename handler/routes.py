"""Route configuration: the routes a user writes, validated into Match and Route values."""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final, Literal

from handler.errors import HandlerError, Problems
from handler.events import MAX_KEY_BYTES, ObjectTrigger, ScheduleTrigger
from handler.jobs import JobSpec, check_job_spec, check_object, check_parameter_name, describe, utf8_encodable
from handler.records import Record
from handler.runs.execution import fingerprint_capacity, fingerprint_length
from handler.templates import (
    COMMON_FIELDS,
    GROUP_FIELDS,
    MANIFEST_FIELD,
    OBJECT_FIELDS,
    SCHEDULE_FIELDS,
    Template,
    TemplateError,
    parse_template,
)

if TYPE_CHECKING:  # a type for the checker only: a Literal costs tens of microseconds at every cold start
    MatchSource = Literal["object", "schedule", "direct"]
SOURCES: tuple[MatchSource, ...] = ("object", "schedule", "direct")
DEFAULT_EVENTS = ("ObjectCreated:*",)
MATCH_FIELDS = frozenset({"source", "bucket", "prefix", "suffix", "pattern", "events", "schedule"})
ROUTE_FIELDS = frozenset(
    {
        "name",
        "match",
        "jobId",
        "workflowId",
        "triggerId",
        "jobCondition",
        "parameters",
        "dedupParameter",
        "coalesce",
        "maxRunning",
        "output",
        "allowRecursion",
        "sweep",
    }
)
SWEEP_FIELDS = frozenset({"lookBackHours", "quietSeconds", "marker", "only"})
# A sweep's defaults: a day back (as far as the default duplicate check reads), two quiet minutes.
SWEEP_LOOK_BACK_HOURS = 24
SWEEP_QUIET_SECONDS = 120
COALESCE_FIELDS = frozenset({"parameter", "separator", "maxObjects", "maxBytes", "groupBy", "manifest"})
# Placeholders with a value of each object's own: grouped by, every object would run alone.
PER_OBJECT_FIELDS = frozenset({"key", "size", "etag", "version_id", "event_id"})
MAX_OBJECTS = 100
# A parameter value beyond this many UTF-8 bytes would crowd the 1 MB request limits of both platforms.
MAX_BYTES_LIMIT = 262_144
# A manifest's name ends in this: a route whose suffix it cannot end in never picks its own manifests up.
MANIFEST_SUFFIX = ".txt"
# With a manifest a group's parameter is its fingerprint: the most keys whose fingerprint fits MAX_BYTES_LIMIT.
MANIFEST_MAX_OBJECTS = fingerprint_capacity(MAX_BYTES_LIMIT)
# The duplicate check reads at most 14 days back (DATAFLOW_DEDUP_WINDOW_HOURS' largest value): a sweep no further.
MAX_LOOK_BACK_HOURS = 24 * 14
OBJECT_FILTERS = ("bucket", "prefix", "suffix", "pattern", "events")
# Checks of DATAFLOW_ROUTES only: kept as text, compiled on first use (re caches them), so a function
# configured without routes compiles none at its cold start.
# A pattern with a quantified group that is itself quantified can backtrack exponentially.
_NESTED_QUANTIFIER = r"\((?:[^()\\]|\\.)*[+*}|](?:[^()\\]|\\.)*\)[+*{]"

# A cron, rate or at expression where a schedule's name is expected.
_EXPRESSION = r"(?i)\s*(cron|rate|at)\s*\("
# CPU seconds a pattern may take on one key; a sane one takes microseconds on the longest (1024 bytes).
MATCH_BUDGET_S = 0.05

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
# A URL's scheme before '://'; of them, an output may name only the object storage itself, as Spark writes it.
_SCHEME = r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
_STORAGE_SCHEMES = frozenset({"s3", "s3a", "s3n"})
# AWS and NCP bucket names (older AWS buckets may hold capitals and '_').
_BUCKET = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"


class Match(Record):
    """Filters ANDed together; None means "any". A None source serves objects and schedules."""

    __slots__ = ("source", "bucket", "prefix", "suffix", "pattern", "events", "schedule")

    def __init__(
        self,
        source: MatchSource | None = None,
        *,
        bucket: str | None = None,
        prefix: str | None = None,
        suffix: str | None = None,
        pattern: re.Pattern[str] | None = None,
        events: tuple[str, ...] = DEFAULT_EVENTS,
        schedule: str | None = None,
    ) -> None:
        self.source: Final = source
        self.bucket: Final = bucket
        self.prefix: Final = prefix
        self.suffix: Final = suffix
        self.pattern: Final = pattern
        self.events: Final = events
        self.schedule: Final = schedule

    def test_object(self, trigger: ObjectTrigger) -> dict[str, str] | Miss:
        """The pattern's named groups when the object matches, else the first filter that failed."""
        if self.source not in (None, "object"):
            return Miss("source", self.source or "", "object")
        if not self.accepts_event(trigger.event_name):
            return Miss("events", ", ".join(self.events), trigger.event_name)
        for name, wanted, holds in (
            ("bucket", self.bucket, lambda value: trigger.bucket == value),
            ("prefix", self.prefix, trigger.key.startswith),
            ("suffix", self.suffix, trigger.key.endswith),
        ):
            if wanted is not None and not holds(wanted):
                return Miss(name, wanted, trigger.bucket if name == "bucket" else trigger.key)
        if self.pattern is None:
            return {}
        found = search_bounded(self.pattern, trigger.key)
        if found is None:
            return Miss("pattern", self.pattern.pattern, trigger.key)
        return {name: value for name, value in found.groupdict().items() if value is not None}

    def accepts_event(self, event_name: str) -> bool:
        # NCP sends ObjectCreated:PUT and AWS ObjectCreated:Put: names compare case-insensitively.
        name = event_name.lower()
        return any(fnmatch.fnmatchcase(name, wanted.lower()) for wanted in self.events)

    def accepts_schedule(self, trigger: ScheduleTrigger) -> bool:
        return self.test_schedule(trigger) is None

    def test_schedule(self, trigger: ScheduleTrigger) -> Miss | None:
        """None when the schedule fires this route, else the filter that failed."""
        if self.source not in (None, "schedule"):
            return Miss("source", self.source or "", "schedule")
        if self.schedule is not None and self.schedule != trigger.schedule:
            return Miss("schedule", self.schedule, trigger.schedule)
        return None


class Miss(Record):
    """The first filter of a route that an event failed: which, what it wanted, what it saw."""

    __slots__ = ("filter", "wanted", "seen")

    def __init__(self, filter: str, wanted: str, seen: str) -> None:  # noqa: A002 - the filter's own name
        self.filter: Final = filter
        self.wanted: Final = wanted
        self.seen: Final = seen


class PatternTimeoutError(HandlerError):
    """A route's pattern ran past its budget on one key (catastrophic backtracking)."""


def search_bounded(pattern: re.Pattern[str], text: str, budget: float = MATCH_BUDGET_S) -> re.Match[str] | None:
    """pattern.search(text), stopped after `budget` CPU seconds: no pattern can hold an invocation.

    The regular expression engine checks for signals while it backtracks, so a virtual-time timer
    (CPU time, SIGVTALRM: no platform runtime or test tool uses it) interrupts it. Signals reach only
    the main thread, where both platforms run the handler; elsewhere the search runs unbounded.
    """
    # Imported here: the signal module builds its enums at import, a cost routes without a pattern skip.
    import signal

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return pattern.search(text)
    previous = signal.signal(signal.SIGVTALRM, _stop_search)
    signal.setitimer(signal.ITIMER_VIRTUAL, budget)
    try:
        return pattern.search(text)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def _stop_search(signum: int, frame: object) -> None:
    raise PatternTimeoutError("match.pattern ran past its budget")


class Coalesce(Record):
    """The objects of one invocation that match a route become one run per group, their keys joined.

    `group_by` names the placeholders whose values keep groups apart (a partition such as {match.dt}):
    objects that differ in one of them never share a run, so the run's parameters may use them.
    `manifest` (bucket, prefix): each group's keys are written there as one object, its path the run's
    {manifest}, and `parameter` carries the keys' fingerprint instead of the keys.
    """

    __slots__ = ("parameter", "separator", "max_objects", "max_bytes", "group_by", "manifest")

    def __init__(
        self,
        parameter: str,
        separator: str = ",",
        max_objects: int = MAX_OBJECTS,
        max_bytes: int | None = None,
        *,
        group_by: Template | None = None,
        manifest: tuple[str, str] | None = None,
    ) -> None:
        self.parameter: Final = parameter
        self.separator: Final = separator
        self.max_objects: Final = max_objects
        self.max_bytes: Final = max_bytes
        self.group_by: Final = group_by
        self.manifest: Final = manifest

    @property
    def shared_fields(self) -> frozenset[str]:
        """The object placeholders every object of a group has alike: those groupBy names."""
        return self.group_by.fields if self.group_by is not None else frozenset()

    @property
    def shared_groups(self) -> frozenset[str]:
        """The pattern's groups every object of a group has alike: those groupBy names."""
        return self.group_by.match_groups if self.group_by is not None else frozenset()


class Sweep(Record):
    """How a sweep lists a route's bucket: how far back, which objects are too new, what completes a folder."""

    __slots__ = ("look_back", "quiet", "marker", "only")

    def __init__(self, look_back: timedelta, quiet: timedelta, marker: str | None = None, only: bool = False) -> None:
        self.look_back: Final = look_back
        # Objects modified this recently may still be arriving: the next sweep takes them.
        self.quiet: Final = quiet
        # A file name (`_SUCCESS`) whose presence in a folder releases that folder's objects.
        self.marker: Final = marker
        # Served by its sweep alone: a notification (an NCP bucket trigger set for another route) fires it not.
        self.only: Final = only


DEFAULT_SWEEP = Sweep(timedelta(hours=SWEEP_LOOK_BACK_HOURS), timedelta(seconds=SWEEP_QUIET_SECONDS))


class Route(Record):
    __slots__ = (
        "name",
        "match",
        "job",
        "parameters",
        "dedup_parameter",
        "coalesce",
        "max_running",
        "output",
        "sweep",
    )

    def __init__(
        self,
        name: str,
        match: Match,
        job: JobSpec,
        parameters: tuple[tuple[str, Template], ...] = (),
        *,
        dedup_parameter: str | None = None,
        coalesce: Coalesce | None = None,
        max_running: int | None = None,
        output: tuple[str, str] | None = None,
        sweep: Sweep | None = None,
    ) -> None:
        self.name: Final = name
        self.match: Final = match
        self.job: Final = job
        self.parameters: Final = parameters
        self.dedup_parameter: Final = dedup_parameter
        self.coalesce: Final = coalesce
        # At this many executions READY or RUNNING, a new one is deferred (failed retryable, kept).
        self.max_running: Final = max_running
        # (bucket, prefix) the job writes its output under: an object there is the job's own, not an upload.
        self.output: Final = output
        # Set when a `{"sweep": "*"}` event lists this route's bucket (a sweep naming the route uses the defaults).
        self.sweep: Final = sweep

    def test_object(self, trigger: ObjectTrigger) -> dict[str, str] | Miss:
        """As its match tests the object; a route served by its sweep alone takes no notification."""
        if self.sweep is not None and self.sweep.only and trigger.swept_by is None:
            return Miss("sweep", "a sweep (sweep.only)", "a notification")
        return self.match.test_object(trigger)

    def writes(self, bucket: str, key: str) -> bool:
        """Whether the object is under the route's declared output or its manifests: its own, skipped as own-output."""
        manifest = self.coalesce.manifest if self.coalesce is not None else None
        return any(
            written is not None and bucket == written[0] and key.startswith(folder(written[1]))
            for written in (self.output, manifest)
        )


def folder(prefix: str) -> str:
    """A written prefix as the folder it names: output "lake/out" holds out/part-0, not outbound/x."""
    return prefix if not prefix or prefix.endswith("/") else f"{prefix}/"


def available_fields(source: MatchSource | None) -> frozenset[str]:
    if source == "object":
        return COMMON_FIELDS | OBJECT_FIELDS
    if source == "schedule":
        return COMMON_FIELDS | SCHEDULE_FIELDS
    if source == "direct":
        return COMMON_FIELDS
    return COMMON_FIELDS | OBJECT_FIELDS | SCHEDULE_FIELDS


def check_templates(
    raw: object,
    where: str,
    source: MatchSource | None,
    fields: tuple[frozenset[str], frozenset[str]],
    problems: Problems,
) -> tuple[tuple[str, Template], ...]:
    """Parses parameter templates; every placeholder must be one the route provides.

    `fields` are the placeholder names and the pattern's group names the route's events provide.
    """
    if not isinstance(raw, dict):
        problems.add(where, f"must be a JSON object of strings, got {describe(raw)}")
        return ()
    out: list[tuple[str, Template]] = []
    available, groups = fields
    for name, text in raw.items():
        at = f"{where}.{name}"
        if not name:
            problems.add(where, "parameter names must not be empty")
            continue
        if not isinstance(text, str):
            problems.add(at, f"must be a string, got {describe(text)}")
            continue
        try:
            template = parse_template(text)
        except TemplateError as exc:
            problems.add(at, str(exc))
            continue
        _check_placeholders(template, at, source, available, groups, problems)
        out.append((name, template))
    return tuple(out)


def _check_placeholders(
    template: Template,
    at: str,
    source: MatchSource | None,
    available: frozenset[str],
    groups: frozenset[str],
    problems: Problems,
) -> None:
    for field in sorted(template.fields - available):
        problems.add(at, f"{{{field}}} is not available for match.source {source or 'object/schedule'}")
    for group in sorted(template.match_groups - groups):
        problems.add(at, f"{{match.{group}}} is not a named group of match.pattern")


def _check_shared(
    parameters: Sequence[tuple[str, Template]], coalesce: Coalesce, where: str, problems: Problems
) -> None:
    """A coalescing route's parameters use only what every object of a group shares; the fix names the
    groupBy that would make a placeholder shared (all of them at once, so one edit suffices)."""
    shared = GROUP_FIELDS | {MANIFEST_FIELD} | coalesce.shared_fields
    differing = {
        name: [f"{{{field}}}" for field in sorted(template.fields - shared)]
        + [f"{{match.{group}}}" for group in sorted(template.match_groups - coalesce.shared_groups)]
        for name, template in parameters
    }
    groupable = [
        placeholder
        for found in differing.values()
        for placeholder in found
        if placeholder.strip("{}") not in PER_OBJECT_FIELDS
    ]
    suggested = _suggested_group_by(coalesce, list(dict.fromkeys(groupable)))
    for name, found in differing.items():
        for placeholder in found:
            problems.add(f"{where}.{name}", _differs(placeholder, coalesce, suggested))


def _differs(placeholder: str, coalesce: Coalesce, suggested: str) -> str:
    said = (
        f"{placeholder} differs between the objects of a group; a coalesced run may use only {{bucket}}, "
        "{route}, {count}, {time...} and the placeholders its coalesce.groupBy names"
    )
    if placeholder.strip("{}") in PER_OBJECT_FIELDS:
        return (
            f"{said}; each object has its own {placeholder} (the group's keys are in {coalesce.parameter}): "
            "drop coalesce for one run per object"
        )
    return f'{said}; for one group (and run) per value, set "groupBy": {json.dumps(suggested)} in coalesce'


def _suggested_group_by(coalesce: Coalesce, missing: Sequence[str]) -> str:
    """The groupBy that names what it names now and the missing placeholders too."""
    written = [coalesce.group_by.text] if coalesce.group_by is not None else []
    return "/".join([*written, *missing])


def _optional_text(raw: Mapping[str, Any], name: str, where: str, problems: Problems) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(f"{where}.{name}", f"must be a string, got {describe(value)}")
        return None
    return value


def _check_match(value: object, where: str, problems: Problems) -> Match | None:
    before = len(problems.items)
    raw = check_object(value, where, MATCH_FIELDS, problems, "match ")
    if raw is None:
        return None
    source = raw.get("source")
    if source is not None and source not in SOURCES:
        problems.add(f"{where}.source", f"must be one of object, schedule, direct, got {describe(source)}")
    texts = {name: _optional_text(raw, name, where, problems) for name in ("bucket", "prefix", "suffix", "schedule")}
    _check_never_matches(texts, where, problems)
    pattern = _check_pattern(raw, where, problems)
    events = DEFAULT_EVENTS
    if "events" in raw:
        value = raw["events"]
        if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
            problems.add(f"{where}.events", f"must be a non-empty array of event names, got {describe(value)}")
        else:
            events = tuple(value)
    object_only = [name for name in OBJECT_FILTERS if name in raw]
    if source in ("schedule", "direct") and object_only:
        problems.add(where, f"{', '.join(object_only)}: only for match.source object")
    if source is None and object_only and "schedule" in raw:
        problems.add(where, f"{', '.join(object_only)} and schedule cannot both hold; set match.source")
    elif source is None and object_only:
        source = "object"  # object filters can never hold for a schedule, so the route serves objects only
    if source in ("object", "direct") and "schedule" in raw:
        problems.add(where, "schedule: only for match.source schedule")
    if len(problems.items) != before:
        return None
    return Match(
        source,
        bucket=texts["bucket"],
        prefix=texts["prefix"],
        suffix=texts["suffix"],
        pattern=pattern,
        events=events,
        schedule=texts["schedule"],
    )


def _check_pattern(raw: Mapping[str, Any], where: str, problems: Problems) -> re.Pattern[str] | None:
    text = _optional_text(raw, "pattern", where, problems)
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        problems.add(f"{where}.pattern", f"invalid regular expression: {exc}")
        return None


def _check_never_matches(texts: Mapping[str, str | None], where: str, problems: Problems) -> None:
    """Filters no event can ever pass: errors, because the pipeline would go quiet in silence."""
    bucket, schedule = texts["bucket"], texts["schedule"]
    if bucket is not None and ("://" in bucket or "/" in bucket):
        name = bucket.split("://", 1)[-1].split("/", 1)[0]
        problems.add(f"{where}.bucket", f"is a bucket's name, not a URL or a path (did you mean {name!r}?)")
    if schedule is not None and (re.match(_EXPRESSION, schedule) or " " in schedule.strip()):
        problems.add(
            f"{where}.schedule",
            f"{schedule!r} looks like a schedule expression; match.schedule is the schedule's name (the EventBridge "
            "rule or Scheduler name, the Input's schedule field, or the NCP trigger's schedule parameter)",
        )


def check_route(value: object, where: str, problems: Problems) -> Route | None:
    before = len(problems.items)
    raw = check_object(value, where, ROUTE_FIELDS, problems, "route ")
    if raw is None:
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(_NAME, name):
        problems.add(f"{where}.name", f"must be 1-64 letters, digits, '.', '-' or '_', got {describe(name)}")
    match = _check_match(raw.get("match", {}), f"{where}.match", problems)
    job = check_job_spec(raw, where, problems)
    groups = frozenset(match.pattern.groupindex) if match and match.pattern else frozenset()
    source = match.source if match else None
    coalesce = _check_coalesce(raw, where, (source, groups), problems)
    parameters = _check_parameters(raw, where, (source, groups), coalesce, problems)
    dedup_parameter = check_dedup_parameter(raw.get("dedupParameter"), f"{where}.dedupParameter", parameters, problems)
    if coalesce is not None and dedup_parameter is not None:
        problems.add(
            f"{where}.dedupParameter",
            "cannot go with coalesce: a group's key changes with the batch; its runs are recognised by the files "
            "they name",
        )
    max_running = _check_count(raw, "maxRunning", where, problems)
    output = _check_output(raw.get("output"), f"{where}.output", problems)
    sweep = _check_sweep(raw, where, match, problems) if "sweep" in raw else None
    if match is not None and job is not None:
        _check_recursion(raw, where, match, job, _written(output, coalesce, match), problems)
    if len(problems.items) != before or match is None or job is None or not isinstance(name, str):
        return None
    return Route(
        name,
        match,
        job,
        parameters,
        dedup_parameter=dedup_parameter,
        coalesce=coalesce,
        max_running=max_running,
        output=output,
        sweep=sweep,
    )


def _check_parameters(
    raw: Mapping[str, Any],
    where: str,
    provides: tuple[MatchSource | None, frozenset[str]],
    coalesce: Coalesce | None,
    problems: Problems,
) -> tuple[tuple[str, Template], ...]:
    """The route's parameter templates; a coalescing route's may use only what every object of a group shares."""
    source, groups = provides
    # A coalescing route serves objects, and its {count} is a group's size; what a group shares is checked after.
    served = "object" if coalesce is not None else source
    # {manifest} passes here and is refused below, with its fix, where the route writes no manifest.
    fields = (available_fields(served) | {MANIFEST_FIELD} | (GROUP_FIELDS if coalesce else frozenset()), groups)
    if coalesce is None or coalesce.manifest is None:
        _check_no_manifest(raw.get("parameters"), f"{where}.parameters", problems)
    parameters = check_templates(raw.get("parameters", {}), f"{where}.parameters", served, fields, problems)
    if coalesce is not None:
        _check_shared(parameters, coalesce, f"{where}.parameters", problems)
        if any(existing == coalesce.parameter for existing, _ in parameters):
            problems.add(f"{where}.coalesce.parameter", f"{coalesce.parameter} is also one of the route's parameters")
    return parameters


def _check_no_manifest(raw: object, where: str, problems: Problems) -> None:
    """{manifest} without coalesce.manifest, refused with its fix."""
    for name, text in raw.items() if isinstance(raw, dict) else ():
        try:
            used = isinstance(text, str) and MANIFEST_FIELD in parse_template(text).fields
        except TemplateError:
            continue  # the template check says what is wrong with it
        if used:
            problems.add(
                f"{where}.{name}",
                "{manifest} is the path of a coalesced group's file list: set coalesce.manifest ('bucket/prefix/') "
                "on a coalescing route to write one",
            )


def _check_sweep(raw: Mapping[str, Any], where: str, match: Match | None, problems: Problems) -> Sweep | None:
    """A sweep lists one bucket under the route's prefix: the route must name its bucket and serve objects."""
    at = f"{where}.sweep"
    spec = check_object(raw["sweep"], at, SWEEP_FIELDS, problems, "sweep ")
    if spec is None or match is None:
        return None
    if match.source not in (None, "object"):
        problems.add(at, f"only for object routes (match.source is {match.source})")
    if match.bucket is None:
        problems.add(at, "a sweep lists one bucket: set match.bucket")
    if not any(name.lower().startswith("objectcreated") for name in match.events):
        problems.add(at, "a sweep finds created objects: match.events must hold an ObjectCreated event")
    hours = _check_count(spec, "lookBackHours", at, problems) or SWEEP_LOOK_BACK_HOURS
    if hours > MAX_LOOK_BACK_HOURS:
        problems.add(f"{at}.lookBackHours", f"must be at most {MAX_LOOK_BACK_HOURS} (14 days), got {hours}")
    quiet = spec.get("quietSeconds", SWEEP_QUIET_SECONDS)
    if isinstance(quiet, bool) or not isinstance(quiet, int) or not 0 <= quiet <= 86_400:
        problems.add(f"{at}.quietSeconds", f"must be an integer from 0 to 86400, got {describe(quiet)}")
        quiet = SWEEP_QUIET_SECONDS
    marker = spec.get("marker")
    if marker is not None and (not isinstance(marker, str) or not marker or "/" in marker):
        problems.add(f"{at}.marker", f"must be a file name without '/' (such as '_SUCCESS'), got {describe(marker)}")
        marker = None
    only = spec.get("only", False)
    if not isinstance(only, bool):
        problems.add(f"{at}.only", f"must be true or false, got {describe(only)}")
        only = False
    return Sweep(timedelta(hours=hours), timedelta(seconds=quiet), marker, only)


def _check_output(value: object, where: str, problems: Problems) -> tuple[str, str] | None:
    """`bucket/prefix/`: where the job writes its results."""
    if value is None:
        return None
    return _check_folder(value, where, "where the job writes", problems)


def _check_folder(value: object, where: str, what: str, problems: Problems) -> tuple[str, str] | None:
    """`bucket/prefix/` (`what` it is) as (bucket, prefix); s3://, s3a:// and s3n:// (any case) name the same."""
    if not isinstance(value, str) or not value.strip("/"):
        problems.add(where, f"must be 'bucket/prefix/' {what}, got {describe(value)}")
        return None
    scheme = re.match(_SCHEME, value)
    if scheme is not None and scheme["scheme"].lower() not in _STORAGE_SCHEMES:
        name = where.rsplit(".", 1)[-1]
        problems.add(
            where,
            f"{value!r} names {scheme['scheme']}:// storage; {name} is 'bucket/prefix/' in the object storage the "
            "route watches (s3://, s3a:// and s3n:// are read as that)",
        )
        return None
    path = _storage_path(value)
    if path.startswith("/"):
        # Read as it stands, the bucket would be empty and the guard would hold for no object.
        problems.add(where, f"starts with '/': its first part is the bucket (did you mean {path.lstrip('/')!r}?)")
        return None
    bucket, _, prefix = path.partition("/")
    if "" in folder(prefix).split("/")[:-1]:
        # Spark writes part-0 under results/, never under results//: such a guard would hold for no object.
        fixed = "".join(f"{part}/" for part in prefix.split("/") if part)
        problems.add(
            where,
            f"{value!r} has an empty folder name ('//'), so no key the job writes is under it and its output "
            f"would not be told from uploads; write {f'{bucket}/{fixed}'!r}",
        )
        return None
    if not re.fullmatch(_BUCKET, bucket):
        problems.add(
            where, f"{bucket!r} is not a bucket's name (letters, digits, '.', '-', '_'); write 'bucket/prefix/'"
        )
        return None
    return bucket, prefix


def _storage_path(value: str) -> str:
    """`bucket/prefix` without an s3://, s3a:// or s3n:// scheme (Spark's names for the same bucket)."""
    scheme = re.match(_SCHEME, value)
    if scheme is None or scheme["scheme"].lower() not in _STORAGE_SCHEMES:
        return value
    return value[scheme.end() :]


def _written(
    output: tuple[str, str] | None, coalesce: Coalesce | None, match: Match
) -> list[tuple[str, tuple[str, str]]]:
    """Where the route's run or the route itself writes: its output, and its manifests unless its suffix
    rules their name out."""
    writes = [("output", output)] if output is not None else []
    manifest = coalesce.manifest if coalesce is not None else None
    if manifest is not None and (match.suffix is None or MANIFEST_SUFFIX.endswith(match.suffix)):
        writes.append(("coalesce.manifest, where each group's file list is written", manifest))
    return writes


def _check_recursion(
    raw: Mapping[str, Any],
    where: str,
    match: Match,
    job: JobSpec,
    writes: list[tuple[str, tuple[str, str]]],
    problems: Problems,
) -> None:
    """A job that writes where its own route watches would start itself, run after run: refused unless allowed."""
    allowed = raw.get("allowRecursion", False)
    if not isinstance(allowed, bool):
        problems.add(f"{where}.allowRecursion", f"must be true or false, got {describe(allowed)}")
        return
    if allowed or match.source not in (None, "object"):
        return
    log_path = (job.job_condition or {}).get("logPath")
    if isinstance(log_path, str) and match.suffix is None:  # Spark's logs end in no data suffix
        bucket, _, prefix = _storage_path(log_path).lstrip("/").partition("/")
        writes.append(("jobCondition.logPath", (bucket, prefix)))
    for what, (bucket, written) in writes:
        watched, prefix = match.prefix or "", folder(written)
        if (match.bucket in (None, bucket)) and (prefix.startswith(watched) or watched.startswith(prefix)):
            problems.add(
                where,
                f"its job writes under {bucket}/{prefix} ({what}), which this route watches: each run would start "
                "the next; narrow match.prefix or match.suffix, or set allowRecursion: true (objects under output "
                "and coalesce.manifest are then skipped as own-output)",
            )


def _check_count(raw: Mapping[str, Any], name: str, where: str, problems: Problems, low: int = 1) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        problems.add(f"{where}.{name}", f"must be an integer of at least {low}, got {describe(value)}")
        return None
    return value


def _check_coalesce(
    raw: Mapping[str, Any], where: str, provides: tuple[MatchSource | None, frozenset[str]], problems: Problems
) -> Coalesce | None:
    """`provides`: the route's match.source and its pattern's named groups (what groupBy may name)."""
    source, groups = provides
    at = f"{where}.coalesce"
    spec = check_object(raw["coalesce"], at, COALESCE_FIELDS, problems, "coalesce ") if "coalesce" in raw else None
    if spec is None:
        return None
    if source not in (None, "object"):
        problems.add(at, f"only for object routes (match.source is {source})")
    parameter = check_parameter_name(spec.get("parameter"), f"{at}.parameter", problems)
    separator = _check_separator(spec.get("separator", ","), f"{at}.separator", problems)
    max_objects = _check_count(spec, "maxObjects", at, problems) or MAX_OBJECTS
    max_bytes = _check_count(spec, "maxBytes", at, problems, low=MAX_KEY_BYTES)
    if max_bytes is not None and max_bytes > MAX_BYTES_LIMIT:
        problems.add(f"{at}.maxBytes", f"must be at most {MAX_BYTES_LIMIT} (request size limits), got {max_bytes}")
    manifest = _check_manifest(spec, at, problems) if "manifest" in spec else None
    if manifest is not None:
        _check_fingerprint_budget(max_objects, at, problems)
    elif max_bytes is None and separator is not None:
        _check_request_budget(max_objects, separator, at, problems)
    group_by = _check_group_by(spec.get("groupBy"), f"{at}.groupBy", groups, problems)
    if parameter is None or separator is None:
        return None
    return Coalesce(parameter, separator, max_objects, max_bytes, group_by=group_by, manifest=manifest)


def _check_manifest(spec: Mapping[str, Any], at: str, problems: Problems) -> tuple[str, str] | None:
    """Where each group's file list is written; the parameter then carries a fingerprint, not joined keys."""
    for option in ("separator", "maxBytes"):
        if option in spec:
            problems.add(
                f"{at}.{option}",
                f"does not go with manifest: the manifest lists one key a line and {spec.get('parameter')} carries "
                "their fingerprint (8 bytes a key); drop it and bound groups with maxObjects",
            )
    return _check_folder(spec["manifest"], f"{at}.manifest", "where each group's file list is written", problems)


def _check_fingerprint_budget(max_objects: int, at: str, problems: Problems) -> None:
    """With a manifest the parameter takes 8 bytes a key, base64url: the count must fit the request budget."""
    if fingerprint_length(max_objects) <= MAX_BYTES_LIMIT:
        return
    problems.add(
        f"{at}.maxObjects",
        f"the fingerprint of {max_objects} keys takes {fingerprint_length(max_objects)} bytes, past the "
        f"{MAX_BYTES_LIMIT}-byte budget of one parameter; with a manifest maxObjects may be at most "
        f"{MANIFEST_MAX_OBJECTS}",
    )


def _check_group_by(value: object, at: str, groups: frozenset[str], problems: Problems) -> Template | None:
    """A template naming the placeholders that keep groups apart: object ones and the pattern's groups."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.add(at, f'must be a template naming placeholders, such as "{{match.dt}}", got {describe(value)}')
        return None
    try:
        template = parse_template(value)
    except TemplateError as exc:
        problems.add(at, str(exc))
        return None
    before = len(problems.items)
    if template.renders_time:
        problems.add(
            at,
            "{time...} cannot group: a group's time is its newest object's; take the partition from the key "
            '(a named group of match.pattern, such as "{match.dt}")',
        )
    if not template.fields and not template.match_groups and not template.renders_time:
        problems.add(at, f'{value!r} names no placeholder; name what keeps groups apart, such as "{{match.dt}}"')
    for field in sorted(template.fields & PER_OBJECT_FIELDS):
        problems.add(at, f"{{{field}}} is each object's own: every object would run alone; drop coalesce instead")
    for field in sorted(template.fields - available_fields("object") - PER_OBJECT_FIELDS):
        problems.add(at, f"{{{field}}} is not a placeholder of an object")
    for group in sorted(template.match_groups - groups):
        problems.add(at, f"{{match.{group}}} is not a named group of match.pattern")
    return template if len(problems.items) == before else None


def _check_separator(separator: object, where: str, problems: Problems) -> str | None:
    """A separator that joins keys so that they split back, and that a request can carry."""
    if not isinstance(separator, str) or not separator:
        problems.add(where, f"must be a non-empty string, got {describe(separator)}")
        return None
    if not utf8_encodable(separator):
        # JSON may carry a lone surrogate ("\ud800"); no request can, so the joined keys could never be sent.
        problems.add(
            where,
            f"{separator!a} holds a lone surrogate, which is not "
            "text and cannot be sent; write a real character such as ',' or a newline",
        )
        return None
    if (border := _border(separator)) is not None:
        ending, starting = separator[: len(separator) - len(border)], separator[len(border) :]
        problems.add(
            where,
            f"{separator!r} cannot be split back reliably: a key ending in {ending!r} before it, or starting with "
            f"{starting!r} after it, moves the split (so the job reads names that do not exist and a redelivery's "
            "lookup misses the run); choose a separator whose start does not recur at its end, such as ',' or a "
            "newline",
        )
    return separator


def _border(separator: str) -> str | None:
    """The longest start of the separator that also ends it ('|' of '||'), None when none does.

    Joined keys split back exactly when no key holds the separator and it has no such border: an
    occurrence that straddles a key's end, or a separator's end, needs a start that recurs at the end.
    """
    starts = (separator[:size] for size in range(len(separator) - 1, 0, -1))
    return next((start for start in starts if separator.endswith(start)), None)


def _check_request_budget(max_objects: int, separator: str, at: str, problems: Problems) -> None:
    """Without maxBytes only the count bounds the parameter: at the longest keys it must fit the request budget."""
    gap = len(separator.encode("utf-8"))
    longest = max_objects * MAX_KEY_BYTES + (max_objects - 1) * gap
    if longest <= MAX_BYTES_LIMIT:
        return
    fits = (MAX_BYTES_LIMIT + gap) // (MAX_KEY_BYTES + gap)
    problems.add(
        f"{at}.maxObjects",
        f"{max_objects} keys of up to {MAX_KEY_BYTES} bytes make the parameter up to {longest} bytes, past the "
        f"{MAX_BYTES_LIMIT}-byte budget of one parameter (the gateway refuses a request over 1 MB, for good, "
        f"with 413); set maxBytes (at most {MAX_BYTES_LIMIT}) so groups also close by size, or maxObjects at most "
        f"{fits}",
    )


def check_dedup_parameter(
    value: object, where: str, parameters: Sequence[tuple[str, Template]], problems: Problems
) -> str | None:
    if value is None or value == "":
        return None
    name = check_parameter_name(value, where, problems)
    if name is not None and any(name == existing for existing, _ in parameters):
        problems.add(where, f"{name} is also one of the route's parameters; the dedup key needs a name of its own")
    return name


def route_warnings(route: Route, zone: tzinfo = UTC) -> list[str]:
    """What `validate` points out about a valid route: risks the configuration cannot rule out."""
    warnings = []
    if route.match.prefix is not None and route.match.prefix.startswith("/"):
        warnings.append(
            "match.prefix starts with '/': object keys seldom do (s3://bucket/a/b.csv has the key a/b.csv), "
            "so this route may never match"
        )
    names_bucket = any("bucket" in template.fields for _, template in route.parameters)
    if route.coalesce is not None and route.match.bucket is None and not names_bucket:
        warnings.append(
            "a coalescing route that matches any bucket and names none in a parameter cannot tell one bucket's run "
            "from another's: a run for one bucket's key would cover the same key in another; add {bucket} to a "
            "parameter or set match.bucket"
        )
    if route.output is not None and folder(route.output[1]) != route.output[1]:
        bucket, prefix = route.output
        warnings.append(
            f"output {bucket}/{prefix} has no trailing '/': it is read as the folder {bucket}/{prefix}/ (keys "
            f"under {prefix}/ are the job's own, {prefix}_v2/x is not); write '{bucket}/{prefix}/' to say so"
        )
    renders_time = any(template.renders_time for _, template in route.parameters)
    if route.match.source == "schedule" and renders_time and zone is UTC:
        warnings.append(
            "a schedule route renders {time...} in UTC (DATAFLOW_TIMEZONE), whatever zone its cron fires in: a "
            "nightly at 02:00 Seoul (17:00 UTC) renders the day before the Seoul date; set DATAFLOW_TIMEZONE to the "
            "zone whose dates the job wants (e.g. Asia/Seoul), and keep the cron in the zone it fires in"
        )
    if route.match.pattern is not None and re.search(_NESTED_QUANTIFIER, route.match.pattern.pattern):
        warnings.append(
            "match.pattern has a quantified group inside a quantifier or an alternation under one; on keys of "
            f"up to 1024 bytes it may backtrack catastrophically: a match is stopped after {MATCH_BUDGET_S:g} s "
            "of CPU and the event fails for this route (pattern-timeout)"
        )
    return warnings + _sweep_warnings(route)


def _sweep_warnings(route: Route) -> list[str]:
    """A swept route's parameters that a listing renders otherwise than the upload's notification: the sweep's
    run and the notification's would not be recognised as one."""
    if route.sweep is None:
        return []
    notified_only = sorted({"event_name", "event_id", "version_id"} & _fields_of(route))
    # A listing's time is LastModified (a multipart upload's start), a notification's its end: even a day
    # differs for an upload across midnight.
    renders_time = route.coalesce is None and any(template.renders_time for _, template in route.parameters)
    said = [f"{{{name}}}" for name in notified_only] + (["{time...}"] if renders_time else [])
    if not said:
        return []
    return [
        f"a swept route renders {', '.join(said)}: a listing gives other values than the upload's notification "
        "(no event id or version; LastModified, when an upload started, for the time), so a file that ran from "
        "its notification may run again from a sweep; render what the key itself carries ({key}, {match.dt})"
    ]


def _fields_of(route: Route) -> set[str]:
    return {name for _, template in route.parameters for name in template.fields}


def check_routes(raw: object, where: str, problems: Problems) -> tuple[Route, ...]:
    if not isinstance(raw, list) or not raw:
        problems.add(where, f"must be a non-empty JSON array of routes, got {describe(raw)}")
        return ()
    routes = []
    for index, item in enumerate(raw):
        label = item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else index
        route = check_route(item, f"{where}[{label}]", problems)
        if route is not None:
            routes.append(route)
    counts = Counter(route.name for route in routes)
    for name in sorted(name for name, count in counts.items() if count > 1):
        problems.add(f"{where}[{name}]", "route names must be unique")
    return tuple(routes)
