"""The normaliser: every envelope into triggers, malformed parts into BadEvent with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.errors import EventError
from handler.events import (
    BadEvent,
    JobInvocation,
    ObjectTrigger,
    RouteInvocation,
    S3TestTrigger,
    ScheduleTrigger,
    Trigger,
    load_json,
    normalise,
)
from tests.conftest import load_event

if TYPE_CHECKING:
    from handler.events import Platform

NOW = datetime(2026, 11, 28, 0, 0, 42, tzinfo=UTC)


def triggers(event: Any, platform: Platform = "aws") -> list[Trigger]:
    batch = normalise(event, platform=platform, now=NOW, activation_id="inv-1")
    return [trigger for delivery in batch.deliveries for trigger in delivery.triggers]


def only(event: Any, platform: Platform = "aws") -> Trigger:
    [trigger] = triggers(event, platform)
    return trigger


def s3_record(key: str, **object_fields: Any) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-27T23:10:05Z",
        "s3": {"bucket": {"name": "b"}, "object": {"key": key, **object_fields}},
    }


def test_s3_put_key_is_url_decoded() -> None:
    trigger = only(load_event("s3-put.json"))
    assert isinstance(trigger, ObjectTrigger)
    assert trigger.key == "incoming/orders/2026-11-27 batch+1.csv"
    assert trigger.bucket == "raw-data"
    assert trigger.size == 1048576
    assert trigger.event_id == "C3D13FE58DE4C810"
    assert trigger.time == datetime(2026, 11, 27, 23, 10, 5, 123000, tzinfo=UTC)


@given(st.text(min_size=1, max_size=60))
def test_any_key_survives_s3_encoding(key: str) -> None:
    trigger = only({"Records": [s3_record(quote_plus(key, safe="/"))]})
    assert isinstance(trigger, ObjectTrigger)
    assert trigger.key == key


@given(st.text(min_size=1, max_size=60))
def test_eventbridge_keys_are_taken_as_given(key: str) -> None:
    event = load_event("eventbridge-s3-object-created.json")
    event["detail"]["object"]["key"] = key
    trigger = only(event)
    assert isinstance(trigger, ObjectTrigger)
    assert trigger.key == key


@given(st.text(min_size=1, max_size=60))
def test_flat_ncp_keys_are_taken_as_given(key: str) -> None:
    trigger = only({"bucket": "b", "key": key, "eventType": "ObjectCreated:PUT"}, "ncp")
    assert isinstance(trigger, ObjectTrigger)
    assert trigger.key == key


def test_multi_record_event_yields_every_record() -> None:
    keys = [t.key for t in triggers(load_event("s3-multi-record.json")) if isinstance(t, ObjectTrigger)]
    assert keys == ["incoming/customers/part-0001.csv", "incoming/customers/", "exports/report.tar.gz"]


def test_sqs_records_keep_their_message_ids() -> None:
    batch = normalise(load_event("sqs-s3.json"), platform="aws", now=NOW)
    assert batch.from_sqs
    first, second = batch.deliveries
    assert first.message_id == "059f36b4-87a3-44ab-83d2-661975830a7d"
    assert isinstance(first.triggers[0], ObjectTrigger)
    assert isinstance(second.triggers[0], BadEvent)
    assert second.triggers[0].reason.startswith("SQS record body is not JSON")


@pytest.mark.parametrize("name", ["sns-s3.json", "sns-sqs-s3.json"])
def test_sns_wrapped_notifications_unwrap(name: str) -> None:
    trigger = only(load_event(name))
    assert isinstance(trigger, ObjectTrigger)
    assert trigger.key.startswith("incoming/")


def test_s3_test_event_is_recognised() -> None:
    assert only(load_event("sqs-s3-test-event.json")) == S3TestTrigger("raw-data")


@pytest.mark.parametrize(
    ("reason", "event_name"),
    [
        ("PutObject", "ObjectCreated:Put"),
        ("POST Object", "ObjectCreated:Post"),
        ("CopyObject", "ObjectCreated:Copy"),
        ("CompleteMultipartUpload", "ObjectCreated:CompleteMultipartUpload"),
    ],
)
def test_eventbridge_reason_names_the_event(reason: str, event_name: str) -> None:
    event = load_event("eventbridge-s3-object-created.json")
    event["detail"]["reason"] = reason
    trigger = only(event)
    assert isinstance(trigger, ObjectTrigger)
    assert trigger.event_name == event_name
    assert trigger.version_id == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"


def test_eventbridge_object_deleted_is_a_removal() -> None:
    event = load_event("eventbridge-s3-object-created.json")
    event["detail-type"] = "Object Deleted"
    event["detail"]["deletion-type"] = "Permanently Deleted"
    trigger = only(event)
    assert isinstance(trigger, ObjectTrigger)
    assert trigger.event_name == "ObjectRemoved:Delete"


def test_classic_schedule_is_named_after_its_rule() -> None:
    assert only(load_event("schedule-classic.json")) == ScheduleTrigger(
        "nightly", datetime(2026, 11, 27, 15, tzinfo=UTC), "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"
    )
    event = load_event("schedule-classic.json")
    event["resources"] = ["arn:aws:events:ap-northeast-2:123456789012:rule/custom-bus/hourly"]
    trigger = only(event)
    assert isinstance(trigger, ScheduleTrigger)
    assert trigger.schedule == "hourly"


def test_scheduler_input_and_ncp_cron() -> None:
    assert only(load_event("scheduler-input.json")) == ScheduleTrigger(
        "nightly", datetime(2026, 11, 26, 15, tzinfo=UTC), "inv-1"
    )
    # An NCP cron run without a time uses the invocation time truncated to the minute.
    assert only({"schedule": "nightly"}, "ncp") == ScheduleTrigger(
        "nightly", datetime(2026, 11, 28, tzinfo=UTC), "inv-1"
    )
    assert only({}, "ncp") == ScheduleTrigger("", datetime(2026, 11, 28, tzinfo=UTC), "inv-1")


def test_direct_invocations() -> None:
    assert only(load_event("direct-backfill.json")) == RouteInvocation(
        "backfill", datetime.fromisoformat("2026-11-01T00:00:00+09:00"), "inv-1"
    )
    job = only(load_event("direct-job.json"))
    assert isinstance(job, JobInvocation)
    assert job.job.job_id == "AbCdEf123456"
    assert job.parameters == {"$date": "2026-10-31", "$mode": "rerun"}
    assert only({"route": "nightly"}) == RouteInvocation("nightly", NOW, "inv-1")


def test_ncp_object_storage_shapes() -> None:
    s3_style = only(load_event("ncp-object-storage.json"), "ncp")
    assert isinstance(s3_style, ObjectTrigger)
    assert s3_style.key == "incoming/orders/2026-11-28 night.csv"
    flat = only(load_event("ncp-object-storage-flat.json"), "ncp")
    assert isinstance(flat, ObjectTrigger)
    assert (flat.bucket, flat.key, flat.event_name) == (
        "raw-data",
        "incoming/orders/flat payload+1.csv",
        "ObjectCreated:PUT",
    )
    for bucket_field, key_field, type_field in [("container", "object", "event_type"), ("bucket", "name", "eventName")]:
        trigger = only({bucket_field: "b", key_field: "k.csv", type_field: "ObjectCreated:PUT"}, "ncp")
        assert isinstance(trigger, ObjectTrigger)
        assert (trigger.bucket, trigger.key) == ("b", "k.csv")


@pytest.mark.parametrize(
    ("event", "platform", "reason"),
    [
        ({}, "aws", "unrecognised event: no known envelope fits its keys (none)"),
        ([], "aws", "event is array of 0 items, not a JSON object"),
        ("text", "aws", "event is string 'text', not a JSON object"),
        ({"Records": []}, "aws", "Records is array of 0 items, expected a non-empty array"),
        ({"Records": [1]}, "aws", "Records[0] is number 1, not an object"),
        ({"Records": [{"foo": 1}]}, "aws", "Records[0]: unrecognised record (no s3 or Sns field)"),
        ({"Records": [{"s3": {}}]}, "aws", "Records[0].s3.bucket is missing"),
        (
            {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": 7}}}]},
            "aws",
            "Records[0].s3.object.key is number 7, expected str",
        ),
        (
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": True}},
                    }
                ]
            },
            "aws",
            "Records[0].s3.object.size is boolean true, expected int",
        ),
        (
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "eventTime": "yesterday",
                        "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}},
                    }
                ]
            },
            "aws",
            "Records[0].eventTime is not an ISO 8601 time (string 'yesterday')",
        ),
        (
            {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": "[1"}]},
            "aws",
            "SQS record body is not JSON (Expecting ',' delimiter at position 2)",
        ),
        ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, "aws", "SQS record has no messageId"),
        (
            {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": 5}}]},
            "aws",
            "Records[0].Sns.Message is number 5, not a string",
        ),
        ({"detail-type": "Scheduled Event", "resources": []}, "aws", "Scheduled Event has no rule ARN in resources[0]"),
        (
            {"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {"name": "b"}}},
            "aws",
            "detail.object is missing",
        ),
        (
            {"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"},
            "aws",
            "EventBridge event string 'EC2 Instance State-change Notification' from string 'aws.ec2' is not accepted",
        ),
        ({"route": ""}, "aws", "event.route is empty"),
        ({"route": 5}, "aws", "event.route is number 5, expected str"),
        ({"jobId": "bad id!"}, "aws", "event.jobId: must be 1-64 letters, digits, '-' or '_', got string 'bad id!'"),
        (
            {"jobId": "ok", "jobCondition": {"numWorker": 1}},
            "aws",
            "event.jobCondition.numWorker: must be an integer 2-10, got number 1",
        ),
        ({"jobId": "ok", "parameters": {"$a": 1}}, "aws", "event.parameters.$a: must be a string, got number 1"),
        ({"schedule": 3}, "aws", "event.schedule is number 3, expected str"),
        (
            {"bucket": "b", "eventType": "ObjectCreated:PUT"},
            "ncp",
            "NCP object event has no object key (key/object/objectName/name)",
        ),
        ({"bucket": "b", "key": "k"}, "ncp", "NCP object event has no event type (eventName/eventType/event_type)"),
        ({"bucket": "b"}, "aws", "unrecognised event: no known envelope fits its keys (bucket)"),
    ],
)
def test_malformed_input_names_the_problem(event: Any, platform: Platform, reason: str) -> None:
    bad = only(event, platform)
    assert isinstance(bad, BadEvent) and bad.reason == reason


def test_one_bad_record_does_not_hide_the_good_ones() -> None:
    event = {"Records": [s3_record("a.csv"), {"s3": {}}, s3_record("b.csv")]}
    kinds = [type(trigger).__name__ for trigger in triggers(event)]
    assert kinds == ["ObjectTrigger", "BadEvent", "ObjectTrigger"]


def test_hostile_nesting_is_a_bad_event() -> None:
    body = "[" * 100_000 + "]" * 100_000
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": body}]}
    assert only(event) == BadEvent("SQS record body is nested too deeply")


def test_envelopes_nest_at_most_three_deep() -> None:
    event: dict[str, Any] = {"Records": [s3_record("k")]}
    for _ in range(5):
        event = {"Type": "Notification", "Message": json.dumps(event)}
    assert only(event) == BadEvent("SNS notification.Message: envelopes nested more than three deep")


def test_only_sqs_batches_are_marked_for_partial_failure_reporting() -> None:
    assert not normalise(load_event("sns-s3.json"), platform="aws", now=NOW).from_sqs
    assert normalise(load_event("sns-sqs-s3.json"), platform="aws", now=NOW).from_sqs


@pytest.mark.parametrize(
    ("text", "said"),
    [('{"Records": [{"body": "cut', "Unterminated string starting at position 22"), ("{", "at position 1")],
)
def test_a_json_error_names_its_position_once(text: str, said: str) -> None:
    # Issue 23, item 16: a truncated SQS body read "Unterminated string starting at at position 356".
    with pytest.raises(EventError) as raised:
        load_json(text, "body")
    assert said in str(raised.value) and "at at" not in str(raised.value)


def _s3(key: str, **record: Any) -> dict[str, Any]:
    return {
        "Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "lake"}, "object": {"key": key}}} | record
        ]
    }


@pytest.mark.parametrize(
    ("event", "named"),
    [
        (_s3("in/a+b%2B.csv", eventTime="yesterday"), ("lake", "in/a b+.csv")),
        (
            {
                "detail-type": "Object Created",
                "source": "aws.s3",
                "time": "soon",
                "detail": {"bucket": {"name": "lake"}, "object": {"key": "in/a+b.csv"}},
            },
            ("lake", "in/a+b.csv"),
        ),
    ],
)
def test_an_object_event_that_fails_to_parse_still_names_its_object(event: dict[str, Any], named: Any) -> None:
    # Issue 23, item 16: a failed record's source was {"kind": "unknown"} though its bucket and key were readable.
    [trigger] = normalise(event, platform="aws", now=NOW).deliveries[0].triggers
    assert isinstance(trigger, BadEvent)
    assert trigger.source() == {"kind": "unknown", "bucket": named[0], "key": named[1]}


def test_a_reason_from_inside_an_sns_message_in_sqs_says_it_comes_from_the_message() -> None:
    # Issue 23, item 16: "Records[0].eventTime is not..." did not say it was the SNS Message's Records[0].
    notification = {"Type": "Notification", "Message": json.dumps(_s3("in/a.csv", eventTime="yesterday"))}
    sqs = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": json.dumps(notification)}]}
    [trigger] = normalise(sqs, platform="aws", now=NOW).deliveries[0].triggers
    assert isinstance(trigger, BadEvent)
    assert trigger.reason.startswith("SNS notification.Message: Records[0].eventTime is not an ISO 8601 time")
    assert trigger.source()["key"] == "in/a.csv"
