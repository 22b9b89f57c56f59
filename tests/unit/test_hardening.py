"""Odd values end as clear errors naming the field, never as foreign exceptions or false duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.dataflow.client import retry_after_seconds, unsent_failure
from handler.dataflow.transport import AttemptWatch
from handler.errors import ConfigError, Problems
from handler.events import BadEvent, ObjectTrigger, normalise
from handler.jobs import JobSpec
from handler.outcomes import Failed
from handler.planning import Origin, PlannedExecution, fire
from handler.routes import Route, check_route, check_routes, route_warnings
from handler.settings import parse_settings
from handler.templates import parse_template
from tests.unit.test_events import only, s3_record

NOW = datetime(2026, 11, 28, tzinfo=UTC)
BASE = {"NCLOUD_ACCESS_KEY": "AK", "NCLOUD_SECRET_KEY": "SK", "DATAFLOW_JOB_ID": "J1"}


def bad_reason(event: Any, platform: str = "aws") -> str:
    trigger = only(event, platform)  # type: ignore[arg-type]
    assert isinstance(trigger, BadEvent), trigger
    return trigger.reason


@pytest.mark.parametrize("size", ["²", "9" * 5000, "-1", "1e3", " 12", "١٢"])
def test_sizes_that_are_not_whole_numbers_are_bad_events_naming_the_field(size: str) -> None:
    reason = bad_reason({"Records": [s3_record("a.csv", size=size)]})
    assert reason.startswith("Records[0].s3.object.size is ")


@pytest.mark.parametrize(
    ("raw_key", "where"),
    [
        ("k" * 1025, "Records[0].s3.object.key is longer than 1024 bytes"),
        (quote("é" * 513), "Records[0].s3.object.key is longer than 1024 bytes"),
        ("%" + "41" * 2000, "Records[0].s3.object.key is longer than 1024 bytes"),
        ("bad%C3%28.csv", "Records[0].s3.object.key has a %-sequence that is not UTF-8"),
        ("lone\ud800.csv", "Records[0].s3.object.key is not valid Unicode (it holds a lone surrogate)"),
    ],
    ids=["1025-bytes", "1026-bytes-decoded", "huge-encoded", "not-utf8", "surrogate"],
)
def test_keys_that_cannot_exist_are_bad_events(raw_key: str, where: str) -> None:
    assert bad_reason({"Records": [s3_record(raw_key)]}) == where


def test_flat_and_eventbridge_keys_are_bounded_too() -> None:
    assert bad_reason({"bucket": "b", "key": "k" * 1025, "eventType": "ObjectCreated:PUT"}, "ncp").startswith(
        "event.key is longer"
    )
    detail = {"bucket": {"name": "b"}, "object": {"key": "\ud800"}, "reason": "PutObject"}
    event = {"detail-type": "Object Created", "source": "aws.s3", "time": "2026-11-28T00:00:00Z", "detail": detail}
    assert "detail.object.key is not valid Unicode" in bad_reason(event)


def test_a_schedule_rule_holding_a_lone_surrogate_is_a_bad_event() -> None:
    # Found by test_mutated_samples: the rule's name reached the result, which could not encode it.
    event = {"detail-type": "Scheduled Event", "source": "aws.events", "resources": ["arn:aws:events:r:1:rule/\ud800"]}
    assert bad_reason(event) == "event.resources[0] is not valid Unicode (it holds a lone surrogate)"


@pytest.mark.parametrize(
    ("event_time", "template"),
    [
        ("1970-01-01T00:00:01Z", "{time-999999d:%Y}"),
        ("8999-12-31T23:59:59Z", "{time+999999d}"),
        ("1970-01-01T00:00:01-12:00", "{time-999999d}"),
    ],
)
def test_times_rendered_out_of_range_are_bad_events_naming_the_parameter(event_time: str, template: str) -> None:
    zone = parse_settings(BASE | {"DATAFLOW_TIMEZONE": "+09:00"}).zone
    trigger = only({"Records": [s3_record("a.csv") | {"eventTime": event_time}]})
    assert isinstance(trigger, ObjectTrigger)
    route = Route(
        "r",
        check_route({"name": "r", "jobId": "J"}, "r", Problems()).match,  # type: ignore[union-attr]
        JobSpec("J"),
        (("$t", parse_template(template)),),
    )
    [step] = fire(trigger, [route], zone, Origin())
    if isinstance(step, Failed):
        assert step.code == "bad-event"
        assert step.message.startswith("parameters.$t: the event time")
    else:  # within range after all in this zone: it rendered, which is fine too
        assert isinstance(step, PlannedExecution)


@pytest.mark.parametrize(
    "value", ["²", "-5", "inf", "nan", "1e9999", "٣", "9" * 5000, "Mon, 01 Jan 1990 00:00:00 GMT", "", "soon"]
)
def test_unusable_retry_after_is_ignored(value: str) -> None:
    assert retry_after_seconds(value, NOW.timestamp()) is None


def test_usable_retry_after() -> None:
    assert retry_after_seconds("3", NOW.timestamp()) == 3.0
    assert retry_after_seconds("Sat, 28 Nov 2026 00:00:10 GMT", NOW.timestamp()) == 10.0


@given(st.text(max_size=80))
def test_any_retry_after_text_is_a_number_or_nothing(value: str) -> None:
    seconds = retry_after_seconds(value, NOW.timestamp())
    assert seconds is None or seconds >= 0


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("https://dataflow.example.com:abc", "is not a URL with a valid host and port"),
        ("https://dataflow.example.com:99999", "is not a URL with a valid host and port"),
        ("https://data flow.example.com", "must be an ASCII URL without spaces or control characters"),
        ("https://dataflow\t.example.com", "must be an ASCII URL without spaces or control characters"),
        ("https://bücher.example", "must be an ASCII URL without spaces or control characters"),
        ("https://admin:hunter2@dataflow.example.com", "must not contain user info"),
        ("http://127.example.com", "must be an https:// URL (http:// only for a loopback host)"),
        ("http://10.0.0.1:8080", "must be an https:// URL (http:// only for a loopback host)"),
    ],
)
def test_endpoints_that_would_fail_at_run_time_are_refused(endpoint: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE | {"DATAFLOW_ENDPOINT": endpoint})
    [problem] = caught.value.problems
    assert problem.where == "DATAFLOW_ENDPOINT"
    assert problem.reason.startswith(reason)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.2:8080", "http://[::1]:9", "http://localhost:1", "https://h:443/base"]
)
def test_loopback_is_judged_on_the_parsed_host(endpoint: str) -> None:
    assert parse_settings(BASE | {"DATAFLOW_ENDPOINT": endpoint}).endpoint == endpoint


@pytest.mark.parametrize("name", ["NCLOUD_ACCESS_KEY", "NCLOUD_SECRET_KEY"])
@pytest.mark.parametrize("value", ["AK\nX", "ÄK", "A K", "AK\x00"])
def test_keys_that_cannot_go_into_a_header_or_hmac_are_refused_unechoed(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE | {name: value})
    assert [problem.where for problem in caught.value.problems] == [name]
    assert value.strip() not in str(caught.value)


def test_dedup_settings() -> None:
    settings = parse_settings(BASE | {"DATAFLOW_DEDUP_CHECK": "Ambiguous", "DATAFLOW_DEDUP_WINDOW_HOURS": "48"})
    assert settings.dedup_check == "ambiguous"
    assert settings.dedup_window.total_seconds() == 48 * 3600
    assert parse_settings(BASE).dedup_check == "always"
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE | {"DATAFLOW_DEDUP_CHECK": "sometimes", "DATAFLOW_DEDUP_PARAMETER": ""})
    assert str(caught.value.problems[0]) == (
        "DATAFLOW_DEDUP_CHECK: must be one of always, ambiguous, off, got string 'sometimes'"
    )


def test_a_dedup_parameter_must_not_collide_with_a_parameter() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE | {"DATAFLOW_PARAMETERS": '{"$k": "{key}"}', "DATAFLOW_DEDUP_PARAMETER": "$k"})
    assert caught.value.problems[0].where == "DATAFLOW_DEDUP_PARAMETER"


def keys_of(config: dict[str, str], event: Any, platform: str = "aws", now: datetime = NOW) -> list[str]:
    settings = parse_settings(config)
    [delivery] = normalise(event, platform=platform, now=now).deliveries  # type: ignore[arg-type]
    keys = []
    for trigger in delivery.triggers:
        for step in fire(trigger, settings.routes, settings.zone, Origin()):  # type: ignore[arg-type]
            assert isinstance(step, PlannedExecution)
            keys.append(step.dedup_key)
    return keys


def test_two_cron_triggers_in_one_minute_with_different_parameters_are_two_runs() -> None:
    first = keys_of(BASE | {"DATAFLOW_PARAMETERS": '{"$table": "a"}'}, {}, "ncp")
    second = keys_of(BASE | {"DATAFLOW_PARAMETERS": '{"$table": "b"}'}, {}, "ncp")
    assert first != second


def test_direct_calls_differing_only_in_job_condition_are_two_runs() -> None:
    call = {"jobId": "J1", "time": "2026-11-28T00:00:00Z", "parameters": {"$a": "1"}}
    first = keys_of(BASE, call | {"jobCondition": {"numWorker": 2}})
    second = keys_of(BASE, call | {"jobCondition": {"numWorker": 4}})
    assert first != second


def test_query_ids_are_part_of_the_key() -> None:
    assert keys_of(BASE, {"schedule": "s"}) != keys_of(BASE | {"DATAFLOW_WORKFLOW_ID": "wf"}, {"schedule": "s"})


def test_a_flat_ncp_event_without_a_time_keeps_its_key_on_redelivery() -> None:
    event = {"bucket": "b", "key": "in/a.csv", "eventType": "ObjectCreated:PUT", "etag": "e1", "size": 5}
    later = datetime(2026, 11, 28, 5, tzinfo=UTC)
    assert keys_of(BASE, event, "ncp") == keys_of(BASE, event, "ncp", now=later)
    changed = keys_of(BASE, event | {"etag": "e2"}, "ncp", now=later)
    assert changed != keys_of(BASE, event, "ncp")


def test_nested_quantifiers_are_warned_about() -> None:
    risky = check_route({"name": "r", "jobId": "J", "match": {"pattern": "^(a+)+$"}}, "r", Problems())
    plain = check_route({"name": "p", "jobId": "J", "match": {"pattern": "^in/(?P<t>[a-z_]+)/"}}, "p", Problems())
    assert risky is not None and plain is not None
    assert any("backtrack" in warning for warning in route_warnings(risky))
    assert not any("backtrack" in warning for warning in route_warnings(plain))


def test_a_coalescing_route_that_cannot_tell_buckets_apart_is_warned_about() -> None:
    def warned(route: dict[str, object]) -> bool:
        checked = check_route(
            {"name": "c", "jobId": "J", "coalesce": {"parameter": "$files"}, **route}, "c", Problems()
        )
        assert checked is not None
        return any("cannot tell one bucket's run" in warning for warning in route_warnings(checked))

    assert warned({"match": {"source": "object"}})
    assert not warned({"match": {"source": "object", "bucket": "raw"}})
    assert not warned({"match": {"source": "object"}, "parameters": {"$bucket": "{bucket}"}})


def test_duplicate_route_names_are_found_in_linear_time() -> None:
    problems = Problems()
    check_routes([{"name": f"r{index % 3000}", "jobId": "J"} for index in range(6000)], "DATAFLOW_ROUTES", problems)
    assert len(problems.items) == 3000


def test_a_name_that_does_not_resolve_is_a_connection_failure_that_says_so() -> None:
    from urllib3.exceptions import NameResolutionError

    error = NameResolutionError("nowhere.invalid", None, OSError("Name or service not known"))  # type: ignore[arg-type]
    assert unsent_failure(error, AttemptWatch(), True, 0.01) == ("connection", "the host name did not resolve (0.01s)")


@given(
    st.dictionaries(
        st.sampled_from(["bucket", "key", "eventType", "eventTime", "size", "etag", "versionId", "name", "object"]),
        st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.booleans()),
        min_size=1,
    )
)
def test_any_flat_ncp_payload_ends_as_a_trigger_that_encodes(event: dict[str, Any]) -> None:
    [delivery] = normalise(event, platform="ncp", now=NOW).deliveries
    for trigger in delivery.triggers:
        fields = {name: getattr(trigger, name) for name in trigger.__slots__}
        json.dumps(fields, default=str, ensure_ascii=False).encode("utf-8")


def test_reasons_that_quote_field_names_always_encode() -> None:
    reason = bad_reason({"jobId": "J1", "parameters": {"\ud800": "v"}, "\udfff": 1})
    reason.encode("utf-8")
    assert "\\ud800" in reason


def test_a_failure_on_a_connection_the_client_could_not_observe_may_have_run() -> None:
    import requests

    from handler.dataflow.client import DataflowClient
    from handler.dataflow.signing import Credentials

    client = DataflowClient("https://dataflow.example.com", Credentials("AK", "SK"))
    error = client._transport_error(requests.ReadTimeout("read timed out"), AttemptWatch(), 1.5)
    assert (error.code, error.ambiguous, error.retryable) == ("unknown-outcome", True, False)
    refused = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert client._transport_error(refused, AttemptWatch(), 0.01).retryable is True


def test_requests_through_a_proxy_are_watched_too() -> None:
    from handler.dataflow.transport import WatchedAdapter

    manager = WatchedAdapter().proxy_manager_for("http://127.0.0.1:3128")
    assert manager.pool_classes_by_scheme["https"].ConnectionCls.__name__ == "_WatchedHTTPSConnection"
