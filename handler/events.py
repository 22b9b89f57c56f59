"""Every accepted platform envelope, normalised into a flat list of triggers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict
from urllib.parse import unquote_plus

from handler.errors import EventError, Problems
from handler.jobs import JobSpec, check_job_spec, check_parameters, describe, is_id, utf8_encodable
from handler.records import Record

# Types for the checker only: at run time a source is a plain dict, and a TypedDict class or a
# Literal costs tens of microseconds at every cold start.
if TYPE_CHECKING:
    Platform = Literal["aws", "ncp"]

    class EventSource(TypedDict, total=False):
        """What a result entry says of the event it stands for (the contract's `source`)."""

        kind: str
        bucket: str
        key: str
        eventName: str
        schedule: str
        time: str
        route: str
        jobId: str
        messageId: str
        sweep: str
        rerunOf: str
        emptyPlaceholders: list[str]


# S3 and NCP Object Storage keys are at most 1024 bytes of UTF-8; URL-encoded, at most three times that.
MAX_KEY_BYTES = 1024
# An event's own time lies between these: before is an unset clock (Go's zero time 0001-01-01, the Unix
# epoch), after is no real time, and near the calendar's end (9999) a zone or an offset cannot render it.
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(9000, 1, 1, tzinfo=UTC)

# EventBridge names the S3 API call in detail.reason; the contract names events S3-style.
_EVENTBRIDGE_REASONS = {
    "PutObject": "ObjectCreated:Put",
    "POST Object": "ObjectCreated:Post",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
}
_EVENTBRIDGE_DELETIONS = {
    "Delete Marker Created": "ObjectRemoved:DeleteMarkerCreated",
    "Permanently Deleted": "ObjectRemoved:Delete",
}
_NCP_BUCKET_KEYS = ("bucket", "bucketName", "container")
_NCP_OBJECT_KEYS = ("key", "object", "objectName", "name")
_NCP_EVENT_KEYS = ("eventName", "eventType", "event_type")
# Keys whose presence means "this is an event" rather than an NCP cron run's bare parameters.
_EVENT_MARKERS = frozenset(
    {
        "Records",
        "Event",
        "detail-type",
        "route",
        "jobId",
        "requestPayload",
        *_NCP_BUCKET_KEYS,
        *_NCP_OBJECT_KEYS,
        *_NCP_EVENT_KEYS,
    }
)


class ObjectTrigger(Record):
    __slots__ = (
        "bucket",
        "key",
        "event_name",
        "time",
        "size",
        "etag",
        "version_id",
        "sequencer",
        "event_id",
        "own_time",
        "swept_by",
    )

    def __init__(
        self,
        bucket: str,
        key: str,
        event_name: str,
        time: datetime,
        *,
        size: int | None = None,
        etag: str = "",
        version_id: str = "",
        sequencer: str = "",
        event_id: str = "",
        own_time: bool = True,
        swept_by: str | None = None,
    ) -> None:
        self.bucket: Final = bucket
        self.key: Final = key
        self.event_name: Final = event_name
        self.time: Final = time
        self.size: Final = size
        self.etag: Final = etag
        self.version_id: Final = version_id
        self.sequencer: Final = sequencer
        self.event_id: Final = event_id
        # False when the event carried no time and `time` is the arrival time
        self.own_time: Final = own_time
        # The route whose sweep listed the object (its time is then the object's LastModified).
        self.swept_by: Final = swept_by

    def needs_state(self) -> bool:
        """An upload's event that carries nothing to tell a replay from a new upload of the key (NCP's flat
        payload without ETag or time): the object's own state identifies it."""
        return self.event_name.lower().startswith("objectcreated") and not self.etag and not self.own_time

    def identity(self) -> list[object]:
        """What tells this event from another of its kind, stable across its redeliveries.

        With an ETag it is the object's state, which a notification and a listing of the object both
        show, so a sweep and a notification of one upload share a dedup key; a later upload of the same
        bytes shares it too, and is told apart by its time (a run must be created since the event).
        """
        if self.etag:
            # The kind in one spelling: NCP sends ObjectCreated:PUT, a route may name objectcreated:*.
            return ["object", self.bucket, self.key, self.event_name.partition(":")[0].lower(), self.etag]
        # An event without a time of its own is identified by the object's state alone, so a
        # redelivery (which would otherwise take a new "now") keeps its key.
        when = self.time.isoformat() if self.own_time else None
        what = [self.bucket, self.key, self.event_name, self.version_id, self.sequencer]
        return ["object", *what, self.etag, self.size, when]

    def values(self) -> dict[str, str]:
        """The event's placeholder values."""
        directory, _, name = self.key.rpartition("/")
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "key_dir": directory,
            "key_name": name,
            "key_stem": stem,
            "key_ext": ext,
            "size": "" if self.size is None else str(self.size),
            "etag": self.etag,
            "version_id": self.version_id,
            "event_name": self.event_name,
            "event_id": self.event_id,
        }

    def source(self) -> EventSource:
        source: EventSource = {"kind": "object", "bucket": self.bucket, "key": self.key, "eventName": self.event_name}
        if self.swept_by is not None:
            source["sweep"] = self.swept_by
        return source


class ScheduleTrigger(Record):
    __slots__ = ("schedule", "time", "event_id")

    def __init__(self, schedule: str, time: datetime, event_id: str = "") -> None:
        self.schedule: Final = schedule
        self.time: Final = time
        self.event_id: Final = event_id

    def identity(self) -> list[object]:
        return ["schedule", self.schedule, self.time.isoformat()]

    def values(self) -> dict[str, str]:
        return {"schedule": self.schedule, "event_id": self.event_id}

    def source(self) -> EventSource:
        return {"kind": "schedule", "schedule": self.schedule, "time": self.time.isoformat()}


class RouteInvocation(Record):
    """A direct call of a route; `rerun_of` names the run it re-runs (a forced re-run: an identity of its own)."""

    __slots__ = ("route", "time", "event_id", "rerun_of")

    def __init__(self, route: str, time: datetime, event_id: str = "", *, rerun_of: str | None = None) -> None:
        self.route: Final = route
        self.time: Final = time
        self.event_id: Final = event_id
        self.rerun_of: Final = rerun_of

    def identity(self) -> list[object]:
        plain: list[object] = ["direct", self.time.isoformat()]
        return plain if self.rerun_of is None else [*plain, "rerun-of", self.rerun_of]

    def values(self) -> dict[str, str]:
        return {"event_id": self.event_id}

    def source(self) -> EventSource:
        source: EventSource = {"kind": "direct", "route": self.route, "time": self.time.isoformat()}
        if self.rerun_of is not None:
            source["rerunOf"] = self.rerun_of
        return source


class JobInvocation(Record):
    __slots__ = ("job", "parameters", "time", "event_id")

    def __init__(self, job: JobSpec, parameters: Mapping[str, str], time: datetime, event_id: str = "") -> None:
        self.job: Final = job
        self.parameters: Final = parameters
        self.time: Final = time
        self.event_id: Final = event_id

    def identity(self) -> list[object]:
        return ["direct", self.time.isoformat()]

    def values(self) -> dict[str, str]:
        return {"event_id": self.event_id}

    def source(self) -> EventSource:
        return {"kind": "direct", "jobId": self.job.job_id, "time": self.time.isoformat()}


class SweepTrigger(Record):
    """A request to list object storage for what no run covers: `target` names a route, or '*' every route
    with a sweep option; `since`/`until` bound the objects' LastModified (default: the route's look-back)."""

    __slots__ = ("target", "since", "until", "time")

    def __init__(self, target: str, since: datetime | None, until: datetime | None, time: datetime) -> None:
        self.target: Final = target
        self.since: Final = since
        self.until: Final = until
        self.time: Final = time

    def source(self) -> EventSource:
        return {"kind": "direct", "sweep": self.target, "time": self.time.isoformat()}


class S3TestTrigger(Record):
    __slots__ = ("bucket",)

    def __init__(self, bucket: str = "") -> None:
        self.bucket: Final = bucket

    def source(self) -> EventSource:
        return {"kind": "test"}


class BadEvent(Record):
    __slots__ = ("reason", "named")

    def __init__(self, reason: str, named: tuple[str, str] | None = None) -> None:
        self.reason: Final = reason
        # (bucket, key) of an object event that failed past them: the result says which object it was.
        self.named: Final = named

    def source(self) -> EventSource:
        if self.named is None:
            return {"kind": "unknown"}
        return {"kind": "unknown", "bucket": self.named[0], "key": self.named[1]}


RoutableTrigger = ObjectTrigger | ScheduleTrigger | RouteInvocation | JobInvocation
Trigger = RoutableTrigger | SweepTrigger | S3TestTrigger | BadEvent


class Delivery(Record):
    """What one delivered message held; `message_id` is set for SQS records."""

    __slots__ = ("triggers", "message_id")

    def __init__(self, triggers: tuple[Trigger, ...], message_id: str | None = None) -> None:
        self.triggers: Final = triggers
        self.message_id: Final = message_id


class Batch(Record):
    __slots__ = ("deliveries", "from_sqs")

    def __init__(self, deliveries: tuple[Delivery, ...], from_sqs: bool = False) -> None:
        self.deliveries: Final = deliveries
        self.from_sqs: Final = from_sqs


class _Context(Record):
    __slots__ = ("platform", "now", "activation_id", "depth", "zone")

    def __init__(
        self, platform: Platform, now: datetime, activation_id: str = "", *, depth: int = 0, zone: tzinfo = UTC
    ) -> None:
        self.platform: Final = platform
        self.now: Final = now
        self.activation_id: Final = activation_id
        self.depth: Final = depth
        # DATAFLOW_TIMEZONE: a direct call's time without an offset is a wall time there.
        self.zone: Final = zone


def normalise(
    event: object, *, platform: Platform, now: datetime, activation_id: str = "", zone: tzinfo = UTC
) -> Batch:
    """Turns any accepted envelope into triggers; malformed parts become BadEvent, never raise.

    `activation_id` is the NCP activation: the `{event_id}` of events that carry no id of their own.
    """
    context = _Context(platform, now, activation_id, zone=zone)
    if isinstance(event, dict) and isinstance(event.get("Records"), list) and event["Records"]:
        first = event["Records"][0]
        if isinstance(first, dict) and first.get("eventSource") == "aws:sqs":
            return Batch(tuple(_sqs_record(record, context) for record in event["Records"]), from_sqs=True)
    return Batch((Delivery(tuple(_triggers(event, context))),))


def _sqs_record(record: object, context: _Context) -> Delivery:
    if not isinstance(record, dict):
        return Delivery((BadEvent(f"SQS record is {describe(record)}, not an object"),))
    message_id = record.get("messageId")
    if not isinstance(message_id, str) or not message_id or not utf8_encodable(message_id):
        # Without a message id Lambda cannot retry just this record; the whole batch must fail.
        return Delivery((BadEvent("SQS record has no messageId"),), None)
    body = record.get("body")
    if not isinstance(body, str):
        return Delivery((BadEvent(f"SQS record body is {describe(body)}, not a string"),), message_id)
    try:
        payload = load_json(body, "SQS record body")
    except EventError as exc:
        return Delivery((BadEvent(exc.reason),), message_id)
    return Delivery(tuple(_triggers(payload, _nested(context))), message_id)


def load_json(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" ("Unterminated string starting at"): they take the position as is.
        at = "" if exc.msg.endswith(" at") else " at"
        raise EventError(f"{where} is not JSON ({exc.msg}{at} position {exc.pos})") from exc
    except RecursionError as exc:  # hostile nesting depth; json raises this, not a ValueError
        raise EventError(f"{where} is nested too deeply") from exc


def _nested(context: _Context) -> _Context:
    return _Context(context.platform, context.now, context.activation_id, depth=context.depth + 1, zone=context.zone)


def _triggers(event: object, context: _Context) -> list[Trigger]:
    if context.depth > 3:
        return [BadEvent("envelopes nested more than three deep")]
    if not isinstance(event, dict):
        return [BadEvent(f"event is {describe(event)}, not a JSON object")]
    try:
        return _dispatch(event, context)
    except EventError as exc:
        return [BadEvent(exc.reason, _named_object(event))]


def _dispatch(event: dict[str, Any], context: _Context) -> list[Trigger]:
    if "Records" in event:
        records = event["Records"]
        if not isinstance(records, list) or not records:
            raise EventError(f"Records is {describe(records)}, expected a non-empty array")
        out: list[Trigger] = []
        for index, record in enumerate(records):
            out.extend(_record(record, index, context))
        return out
    if "requestPayload" in event and isinstance(event.get("requestContext"), dict):
        # A Lambda on-failure destination record: replay the original event, keys unchanged.
        return _triggers(event["requestPayload"], _nested(context))
    if event.get("Event") == "s3:TestEvent":
        bucket = event.get("Bucket")
        return [S3TestTrigger(bucket if isinstance(bucket, str) else "")]
    if event.get("Type") == "Notification" and "Message" in event:
        return _sns_message(event.get("Message"), "SNS notification", context)
    if "detail-type" in event:
        return [_eventbridge(event, context)]
    if "sweep" in event:
        return [_sweep(event, context)]
    if "route" in event or "jobId" in event:
        return [_direct(event, context)]
    if "schedule" in event:
        return [_schedule_input(event, context)]
    if context.platform == "ncp":
        if any(name in event for name in _EVENT_MARKERS):
            return [_ncp_flat(event, context)]
        # A cron run's time is its minute; a replay passes the failed run's `time` and so keeps its key.
        return [
            ScheduleTrigger("", _optional_time(event, "time", "event", _minute(context.now)), context.activation_id)
        ]
    names = sorted(str(key).encode("utf-8", "backslashreplace").decode("utf-8") for key in event)
    keys = ", ".join(names[:10]) or "none"
    raise EventError(f"unrecognised event: no known envelope fits its keys ({keys})")


def _record(record: object, index: int, context: _Context) -> list[Trigger]:
    where = f"Records[{index}]"
    if not isinstance(record, dict):
        return [BadEvent(f"{where} is {describe(record)}, not an object")]
    try:
        if "s3" in record:
            return [_s3_record(record, where, context)]
        if record.get("EventSource") == "aws:sns" or "Sns" in record:
            sns = _get(record, "Sns", dict, where)
            return _sns_message(sns.get("Message"), f"{where}.Sns", context)
        if record.get("eventSource") == "aws:sqs":
            raise EventError(f"{where}: SQS record inside another envelope")
        raise EventError(f"{where}: unrecognised record (no s3 or Sns field)")
    except EventError as exc:
        return [BadEvent(exc.reason, _named_object(record))]


def _named_object(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """The bucket and key of an object event that failed to parse, where both can still be read."""
    s3, detail = event.get("s3"), event.get("detail")
    if isinstance(s3, dict):
        return _readable(_field(s3, "bucket", "name"), _field(s3, "object", "key"), url_encoded=True)
    if isinstance(detail, dict):
        return _readable(_field(detail, "bucket", "name"), _field(detail, "object", "key"), url_encoded=False)
    bucket = next((event[name] for name in _NCP_BUCKET_KEYS if event.get(name)), None)
    key = next((event[name] for name in _NCP_OBJECT_KEYS if event.get(name)), None)
    return _readable(bucket, key, url_encoded=False)


def _field(holder: Mapping[str, Any], part: str, name: str) -> object:
    inner = holder.get(part)
    return inner.get(name) if isinstance(inner, dict) else None


def _readable(bucket: object, key: object, *, url_encoded: bool) -> tuple[str, str] | None:
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        return None
    if not utf8_encodable(bucket) or not utf8_encodable(key):
        return None
    try:
        return bucket, object_key(key, "key", url_encoded=url_encoded)
    except EventError:  # a key that does not decode is shown as it came
        return bucket, key


def _sns_message(message: object, where: str, context: _Context) -> list[Trigger]:
    if not isinstance(message, str):
        raise EventError(f"{where}.Message is {describe(message)}, not a string")
    triggers = _triggers(load_json(message, f"{where}.Message"), _nested(context))
    # What failed inside the notification says so: its paths are the Message's own, not the envelope's.
    said = f"{where}.Message"
    return [
        BadEvent(f"{said}: {trigger.reason}", trigger.named)
        if isinstance(trigger, BadEvent) and not trigger.reason.startswith(said)
        else trigger
        for trigger in triggers
    ]


def _get(obj: Mapping[str, Any], name: str, kind: type, where: str, *, required: bool = True) -> Any:
    """One typed field, or an EventError naming the path and what was found instead."""
    if name not in obj or obj[name] is None:
        if required:
            raise EventError(f"{where}.{name} is missing")
        return None
    value = obj[name]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise EventError(f"{where}.{name} is {describe(value)}, expected {kind.__name__}")
    if isinstance(value, str) and not utf8_encodable(value):
        raise EventError(f"{where}.{name} is not valid Unicode (it holds a lone surrogate)")
    return value


def object_key(raw: str, where: str, *, url_encoded: bool) -> str:
    """A key as stored: decoded when the envelope URL-encodes it, and checked against the S3 limits."""
    # Checked before decoding, so a huge key never costs more than its own size.
    if len(raw) > MAX_KEY_BYTES * (3 if url_encoded else 1):
        raise EventError(f"{where} is longer than {MAX_KEY_BYTES} bytes")
    if url_encoded:
        try:
            raw = unquote_plus(raw, errors="strict")
        except UnicodeDecodeError as exc:
            raise EventError(f"{where} has a %-sequence that is not UTF-8") from exc
    if len(raw.encode("utf-8")) > MAX_KEY_BYTES:
        raise EventError(f"{where} is longer than {MAX_KEY_BYTES} bytes")
    return raw


def _text(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = _get(obj, name, str, where, required=False)
    return value or ""


def _size(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 20):
            raise EventError(f"{where}.{name} is {describe(value)}, expected a whole number of bytes")
        return int(value)
    size: int | None = _get(obj, name, int, where, required=False)
    if size is not None and size < 0:
        raise EventError(f"{where}.{name} is negative")
    return size


def parse_time(value: object, where: str, zone: tzinfo = UTC) -> datetime:
    """An ISO 8601 time; one without an offset is a wall time in `zone`."""
    if not isinstance(value, str):
        raise EventError(f"{where} is {describe(value)}, expected an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise EventError(f"{where} is not an ISO 8601 time ({describe(value)})") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def _optional_time(obj: Mapping[str, Any], name: str, where: str, default: datetime, zone: tzinfo = UTC) -> datetime:
    """The event's own time, else `default`; a time no sender means fails its own event, not its batch."""
    if obj.get(name) in (None, ""):
        return default
    time = parse_time(obj[name], f"{where}.{name}", zone)
    if not EARLIEST_EVENT_TIME < time < LATEST_EVENT_TIME:
        unset = " (an unset clock: Go's zero time 0001-01-01T00:00:00Z, the Unix epoch)" if time.year < 1971 else ""
        raise EventError(
            f"{where}.{name} is {time.isoformat()}, out of range: an event's time lies after "
            f"{EARLIEST_EVENT_TIME.date()} and before {LATEST_EVENT_TIME.year}{unset}"
        )
    return time


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def _s3_record(record: Mapping[str, Any], where: str, context: _Context) -> ObjectTrigger:
    s3 = _get(record, "s3", dict, where)
    bucket = _get(_get(s3, "bucket", dict, f"{where}.s3"), "name", str, f"{where}.s3.bucket")
    obj = _get(s3, "object", dict, f"{where}.s3")
    object_where = f"{where}.s3.object"
    raw_key = _get(obj, "key", str, object_where)
    event_name = _get(record, "eventName", str, where)
    response = record.get("responseElements")
    request_id = response.get("x-amz-request-id") if isinstance(response, dict) else None
    if not bucket or not raw_key:
        raise EventError(f"{where}: empty bucket name or object key")
    return ObjectTrigger(
        bucket=bucket,
        # S3 notifications URL-encode keys with '+' for spaces; NCP's S3-style payload follows suit.
        key=object_key(raw_key, f"{object_where}.key", url_encoded=True),
        event_name=event_name,
        time=_optional_time(record, "eventTime", where, context.now),
        own_time=record.get("eventTime") not in (None, ""),
        size=_size(obj, "size", object_where),
        etag=_text(obj, "eTag", object_where),
        version_id=_text(obj, "versionId", object_where),
        sequencer=_text(obj, "sequencer", object_where),
        event_id=request_id if isinstance(request_id, str) else context.activation_id,
    )


def _eventbridge(event: Mapping[str, Any], context: _Context) -> Trigger:
    detail_type = event.get("detail-type")
    event_id = event.get("id") if isinstance(event.get("id"), str) else ""
    time = _optional_time(event, "time", "event", context.now)
    if detail_type == "Scheduled Event":
        resources = event.get("resources")
        if not isinstance(resources, list) or not resources or not isinstance(resources[0], str):
            raise EventError("Scheduled Event has no rule ARN in resources[0]")
        if not utf8_encodable(resources[0]):  # the rule's name is the result's source: it must encode
            raise EventError("event.resources[0] is not valid Unicode (it holds a lone surrogate)")
        # arn:aws:events:REGION:ACCOUNT:rule/[BUS/]NAME: the rule name is the last part.
        return ScheduleTrigger(resources[0].rsplit("/", 1)[-1], time, str(event_id))
    if event.get("source") != "aws.s3":
        raise EventError(
            f"EventBridge event {describe(detail_type)} from {describe(event.get('source'))} is not accepted"
        )
    detail = _get(event, "detail", dict, "event")
    bucket = _get(_get(detail, "bucket", dict, "detail"), "name", str, "detail.bucket")
    obj = _get(detail, "object", dict, "detail")
    key = _get(obj, "key", str, "detail.object")
    if not bucket or not key:
        raise EventError("detail: empty bucket name or object key")
    event_name = _eventbridge_name(detail_type, detail)
    return ObjectTrigger(
        bucket=bucket,
        # EventBridge keys arrive decoded: decoding again would corrupt '+' and '%'.
        key=object_key(key, "detail.object.key", url_encoded=False),
        event_name=event_name,
        time=time,
        size=_size(obj, "size", "detail.object"),
        etag=_text(obj, "etag", "detail.object"),
        version_id=_text(obj, "version-id", "detail.object"),
        sequencer=_text(obj, "sequencer", "detail.object"),
        event_id=str(event_id),
    )


def _eventbridge_name(detail_type: object, detail: Mapping[str, Any]) -> str:
    """The S3-style event name of an EventBridge S3 event (its API call or deletion type)."""
    if detail_type == "Object Created":
        reason = detail.get("reason")
        return _EVENTBRIDGE_REASONS.get(reason, "ObjectCreated:*") if isinstance(reason, str) else "ObjectCreated:*"
    if detail_type == "Object Deleted":
        deletion = detail.get("deletion-type")
        default = "ObjectRemoved:Delete"
        return _EVENTBRIDGE_DELETIONS.get(deletion, default) if isinstance(deletion, str) else default
    return f"EventBridge:{detail_type}"


def _schedule_input(event: Mapping[str, Any], context: _Context) -> ScheduleTrigger:
    name = _get(event, "schedule", str, "event")
    time = _optional_time(event, "time", "event", _minute(context.now))
    return ScheduleTrigger(name, time, context.activation_id)


def _direct(event: Mapping[str, Any], context: _Context) -> Trigger:
    time = _optional_time(event, "time", "event", context.now, context.zone)
    if "route" in event:
        route = _get(event, "route", str, "event")
        if not route:
            raise EventError("event.route is empty")
        rerun_of = _get(event, "rerunOf", str, "event", required=False)
        if rerun_of is not None and not is_id(rerun_of):
            raise EventError(
                f"event.rerunOf must be a jobExecutionId (1-64 letters, digits, '-' or '_'), got {rerun_of!r}"
            )
        return RouteInvocation(route, time, context.activation_id, rerun_of=rerun_of)
    problems = Problems()
    job = check_job_spec(event, "event", problems)
    parameters = check_parameters(event.get("parameters", {}), "event.parameters", problems)
    if problems or job is None or parameters is None:
        raise EventError("; ".join(str(problem) for problem in problems.items))
    return JobInvocation(job, parameters, time, context.activation_id)


def _sweep(event: Mapping[str, Any], context: _Context) -> SweepTrigger:
    target = _get(event, "sweep", str, "event")
    if not target:
        raise EventError("event.sweep is empty: name a route, or '*' for every route with a sweep option")
    since = _optional_time(event, "since", "event", context.now, context.zone) if event.get("since") else None
    until = _optional_time(event, "until", "event", context.now, context.zone) if event.get("until") else None
    if since is not None and until is not None and since >= until:
        raise EventError(f"event.since ({since.isoformat()}) is not before event.until ({until.isoformat()})")
    return SweepTrigger(target, since, until, context.now)


def _ncp_flat(event: Mapping[str, Any], context: _Context) -> ObjectTrigger:
    def first(names: tuple[str, ...], what: str) -> str:
        for name in names:
            if name in event:
                value: str = _get(event, name, str, "event")
                if value:
                    return value
        raise EventError(f"NCP object event has no {what} ({'/'.join(names)})")

    bucket = first(_NCP_BUCKET_KEYS, "bucket")
    key = first(_NCP_OBJECT_KEYS, "object key")
    event_name = first(_NCP_EVENT_KEYS, "event type")
    return ObjectTrigger(
        bucket=bucket,
        key=object_key(key, "event.key", url_encoded=False),  # flat NCP payloads carry the key as stored
        event_name=event_name,
        time=_optional_time(event, "eventTime", "event", context.now),
        own_time=event.get("eventTime") not in (None, ""),
        size=_size(event, "size", "event"),
        etag=_text(event, "etag", "event"),
        version_id=_text(event, "versionId", "event"),
        event_id=context.activation_id,
    )
