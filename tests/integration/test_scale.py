"""At scale: coalescing many objects into few runs, the gateway's rate limits, a busy job's guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from emulator.server import Emulator, Fault
from handler.errors import ConfigError
from handler.settings import parse_settings
from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeClock,
    JsonLines,
    connected,
    container,
    lambda_result,
    result_of,
    sqs_batch,
    upload,
)

JOB = "CoalesceJob1"


def coalescing(api: Emulator, **spec: Any) -> dict[str, str]:
    route = {
        "name": "batch",
        "match": {"source": "object", "prefix": "in/"},
        "jobId": JOB,
        "coalesce": {"parameter": "$files", **spec},
        "parameters": {"$count": "{count}", "$bucket": "{bucket}"},
    }
    return connected(api.url, DATAFLOW_ROUTES=json.dumps([route]))


@pytest.fixture
def api(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as emulator:
        yield emulator


def files(count: int, clock: FakeClock, start: int = 0) -> list[dict[str, Any]]:
    return [upload(f"in/part-{index:04d}.csv", at=clock.wall() - 60) for index in range(start, start + count)]


def runs(api: Emulator) -> list[list[str]]:
    return [execution["parsedParameters"]["$files"].split(",") for execution in api.all_executions()]


def test_the_objects_of_one_batch_become_runs_of_at_most_max_objects(clock: FakeClock, api: Emulator) -> None:
    result = result_of(container(clock), coalescing(api, maxObjects=4), sqs_batch(files(10, clock)))
    assert sorted(len(group) for group in runs(api)) == [2, 4, 4]  # submitted concurrently, in any order
    assert [(entry["objects"], entry["closed"]) for entry in result["submitted"]] == [
        (4, "size"),
        (4, "size"),
        (2, "end of batch"),
    ]
    assert result["submitted"][0]["keys"] == [f"in/part-{index:04d}.csv" for index in range(4)]
    assert sorted(execution["parsedParameters"]["$count"] for execution in api.all_executions()) == ["2", "4", "4"]
    assert result["batchItemFailures"] == []


def test_a_group_closes_before_its_parameter_passes_max_bytes(clock: FakeClock, api: Emulator) -> None:
    # Each key is 17 bytes; with the separator, three take 53 bytes.
    result = result_of(container(clock), coalescing(api, maxBytes=1024, maxObjects=100), sqs_batch(files(3, clock)))
    assert [len(group) for group in runs(api)] == [3]
    api.executions.clear()
    long_keys = [upload(f"in/{'x' * 500}-{index}.csv", at=clock.wall()) for index in range(3)]
    result = result_of(container(clock), coalescing(api, maxBytes=1024), sqs_batch(long_keys))
    assert sorted(len(group) for group in runs(api)) == [1, 2]
    assert [entry["closed"] for entry in result["submitted"]] == ["bytes", "end of batch"]
    assert all(len(",".join(group).encode()) <= 1024 for group in runs(api))


def test_each_coalescing_route_groups_its_own_objects(clock: FakeClock, api: Emulator) -> None:
    routes = [
        {"name": "csv", "match": {"suffix": ".csv"}, "jobId": "CsvJob1", "coalesce": {"parameter": "$files"}},
        {"name": "all", "match": {"prefix": "in/"}, "jobId": "AllJob1", "coalesce": {"parameter": "$files"}},
    ]
    batch = sqs_batch([*files(3, clock), upload("in/readme.txt", at=clock.wall())])
    config = coalescing(api) | {"DATAFLOW_ROUTES": json.dumps(routes)}
    result = result_of(container(clock), config, batch)
    assert sorted((entry["route"], entry["objects"]) for entry in result["submitted"]) == [("all", 4), ("csv", 3)]


def test_a_per_object_placeholder_in_a_coalescing_route_is_refused_naming_it() -> None:
    route = {
        "name": "batch",
        "match": {"source": "object", "pattern": "^in/(?P<table>[a-z]+)/"},
        "jobId": JOB,
        "coalesce": {"parameter": "$files"},
        "parameters": {"$key": "{key}", "$table": "{match.table}", "$n": "{count}", "$day": "{time:%Y-%m-%d}"},
    }
    with pytest.raises(ConfigError) as refused:
        parse_settings({"DATAFLOW_ROUTES": json.dumps([route]), "DATAFLOW_DRY_RUN": "true"})
    allowed = "a coalesced run may use only {bucket}, {route}, {count}, {time...} and the placeholders its coalesce.groupBy names"
    assert [str(problem) for problem in refused.value.problems] == [
        f"DATAFLOW_ROUTES[batch].parameters.$key: {{key}} differs between the objects of a group; {allowed}; each "
        "object has its own {key} (the group's keys are in $files): drop coalesce for one run per object",
        f"DATAFLOW_ROUTES[batch].parameters.$table: {{match.table}} differs between the objects of a group; {allowed}; "
        'for one group (and run) per value, set "groupBy": "{match.table}" in coalesce',
    ]


def test_a_redelivered_batch_starts_nothing_again_in_the_same_or_another_container(
    clock: FakeClock, api: Emulator
) -> None:
    batch = sqs_batch(files(6, clock))
    result_of(container(clock), coalescing(api, maxObjects=4), batch)
    clock.advance(60)
    same = result_of(container(clock), coalescing(api, maxObjects=4), batch)  # a cold container: the listing tells
    assert same["submitted"] == []
    assert [skip["reason"] for skip in same["skipped"]] == ["duplicate"] * 6
    assert len(api.all_executions()) == 2


def test_a_batch_redelivered_in_another_composition_starts_only_what_no_run_covers(
    clock: FakeClock, api: Emulator
) -> None:
    first = files(6, clock)
    result_of(container(clock), coalescing(api, maxObjects=4), sqs_batch(first))
    clock.advance(60)
    # SQS hands back two of those objects among new ones, in another batch.
    mixed = [first[5], *files(3, clock, start=10), first[0]]
    again = result_of(container(clock), coalescing(api, maxObjects=4), sqs_batch(mixed))
    assert sorted(skip["source"]["key"] for skip in again["skipped"]) == ["in/part-0000.csv", "in/part-0005.csv"]
    [entry] = again["submitted"]
    assert entry["keys"] == ["in/part-0010.csv", "in/part-0011.csv", "in/part-0012.csv"]
    covered = [key for group in runs(api) for key in group]
    assert sorted(covered) == sorted(set(covered))  # every object in exactly one run


def test_a_failed_group_reports_exactly_its_own_messages(clock: FakeClock, api: Emulator) -> None:
    api.inject(Fault(status=400, body={"errorType": "bad-parameter", "detail": "no"}, method="POST"))
    one_at_a_time = coalescing(api, maxObjects=3) | {"DATAFLOW_MAX_CONCURRENCY": "1"}  # the first group's is refused
    result = result_of(container(clock), one_at_a_time, sqs_batch(files(7, clock)))
    [failed] = result["failed"]
    assert failed["code"] == "bad-parameter"
    failed_ids = [item["itemIdentifier"] for item in result["batchItemFailures"]]
    assert failed_ids == ["m0", "m1", "m2"]  # the first group's three messages, and nothing else
    assert [entry["objects"] for entry in result["submitted"]] == [3, 1]
    assert sorted(key for group in runs(api) for key in group) == [f"in/part-{index:04d}.csv" for index in range(3, 7)]


def test_with_nothing_echoed_and_fail_a_coalesced_redelivery_is_refused_not_doubled(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo="none") as api:
        config = coalescing(api) | {"DATAFLOW_DEDUP_UNVERIFIABLE": "fail"}
        batch = sqs_batch(files(3, clock))
        result_of(container(clock), config, batch)
        clock.advance(60)
        again = result_of(container(clock), config, batch)
        assert [failed["code"] for failed in again["failed"]] == ["unknown-outcome"] * 3
        assert [item["itemIdentifier"] for item in again["batchItemFailures"]] == ["m0", "m1", "m2"]
        assert len(api.all_executions()) == 1


def plain(api: Emulator, **more: str) -> dict[str, str]:
    return connected(
        api.url, **{"DATAFLOW_JOB_ID": "gqigvH123456", "DATAFLOW_PARAMETERS": '{"$input": "{key}"}', **more}
    )


def test_the_rate_limit_is_shared_by_the_pool_and_by_consecutive_invocations(clock: FakeClock, api: Emulator) -> None:
    launcher = container(clock)
    config = plain(api, DATAFLOW_RATE_LIMIT="5")
    result_of(launcher, config, sqs_batch(files(5, clock)))  # five creates, and the lookups' listings
    result_of(launcher, config, sqs_batch(files(5, clock, start=5)))
    # At 5 a second: the first request is free, each other one waits its 0.2 s turn, whichever thread sends it.
    sent = len(api.received)
    assert sent >= 12
    assert sum(clock.sleeps) == pytest.approx((sent - 1) * 0.2)
    assert max(clock.sleeps) == pytest.approx(0.2)


@pytest.mark.parametrize(("code", "message"), [("410", "Throttle Limited"), ("420", "Rate Limited")])
def test_a_throttled_request_is_retried_after_jittered_backoff(
    clock: FakeClock, api: Emulator, code: str, message: str
) -> None:
    api.inject(Fault(status=429, body={"error": {"errorCode": code, "message": message}}, method="POST", times=2))
    result = result_of(container(clock), plain(api), upload("in/a.csv", at=clock.wall()))
    assert len(result["submitted"]) == 1
    assert clock.sleeps == [0.2, 0.4]  # full jitter (the test's jitter is 1.0): 0.2 s, then twice that


def test_a_retry_after_header_is_honoured(clock: FakeClock, api: Emulator) -> None:
    refusal = {"error": {"errorCode": "420", "message": "Rate Limited"}}
    api.inject(Fault(status=429, body=refusal, headers={"Retry-After": "3"}, method="POST"))
    result = result_of(container(clock), plain(api), upload("in/a.csv", at=clock.wall()))
    assert len(result["submitted"]) == 1
    assert clock.sleeps == [3.0]


def test_an_exceeded_quota_is_not_retried_in_the_invocation_and_fails_retryable(
    clock: FakeClock, api: Emulator
) -> None:
    api.quota = 1  # the lookup is the last request the quota allows
    result = result_of(container(clock), plain(api), upload("in/a.csv", at=clock.wall()))
    [failed] = result["failed"]
    assert (failed["code"], failed["retryable"]) == ("gateway-400", True)
    assert failed["error"].startswith("400: HTTP 429 Quota Exceeded (gateway code 400")
    assert "not retried in this invocation (it resets with the quota's day or month)" in failed["error"]
    assert clock.sleeps == []
    assert api.quota_refused == 1


def guarded(api: Emulator, limit: int) -> dict[str, str]:
    route = {
        "name": "busy",
        "match": {"source": "object"},
        "jobId": "BusyJob1",
        "maxRunning": limit,
        "parameters": {"$input": "{key}"},
    }
    config = plain(api) | {"DATAFLOW_ROUTES": json.dumps([route])}
    return {name: value for name, value in config.items() if name not in ("DATAFLOW_JOB_ID", "DATAFLOW_PARAMETERS")}


def test_the_guard_defers_at_max_running_and_submits_once_the_runs_finish(clock: FakeClock, api: Emulator) -> None:
    launcher = container(clock)
    batch = sqs_batch(files(5, clock))
    first = result_of(launcher, guarded(api, 2), batch)
    assert len(first["submitted"]) == 2  # concurrent submissions of one invocation never pass the limit
    deferred = first["failed"]
    assert [(entry["code"], entry["retryable"]) for entry in deferred] == [("deferred", True)] * 3
    assert deferred[0]["error"] == "deferred: the job has 2 executions READY, RUNNING or starting (maxRunning 2)"
    assert len(first["batchItemFailures"]) == 3
    again = result_of(launcher, guarded(api, 2), batch)  # SQS redelivers the deferred after the visibility timeout
    assert again["submitted"] == []
    assert again["failed"][0]["error"] == "deferred: the job has 2 executions READY, RUNNING or starting (maxRunning 2)"
    api.finish("BusyJob1")
    last = result_of(launcher, guarded(api, 2), batch)
    assert len(last["submitted"]) == 2
    assert len(api.all_executions()) == 4


def test_a_create_refused_at_the_jobs_own_limit_is_deferred_and_submitted_once_a_run_ends(
    clock: FakeClock, api: Emulator
) -> None:
    api.max_concurrent_runs = {"gqigvH123456": 2}  # Data Flow's own limit; the route sets no maxRunning
    launcher = container(clock)
    batch = sqs_batch(files(3, clock))
    first = result_of(launcher, plain(api), batch)
    assert len(first["submitted"]) == 2
    [deferred] = first["failed"]
    assert (deferred["code"], deferred["retryable"]) == ("deferred", True)
    assert deferred["error"] == (
        "deferred: the job is at Data Flow's own limit of concurrent runs (maxConcurrentRuns): job gqigvH123456 "
        "has reached its maximum number of concurrent executions (maxConcurrentRuns 2): 2 executions are READY "
        "or RUNNING"
    )
    assert first["batchItemFailures"] == [{"itemIdentifier": deferred["source"]["messageId"]}]  # kept
    assert len(api.posts) == 3 and clock.sleeps == []  # not retried within the invocation
    api.finish("gqigvH123456")
    again = result_of(launcher, plain(api), batch)  # SQS redelivers the whole batch: two are duplicates
    assert [entry["reason"] for entry in again["skipped"]] == ["duplicate", "duplicate"]
    assert len(again["submitted"]) == 1 and again["failed"] == []
    assert len(api.all_executions()) == 3


def test_a_refusal_whose_words_are_unclear_stays_permanent_and_points_at_doctor(
    clock: FakeClock, api: Emulator
) -> None:
    # Under its limit (1 of 3 going), a refusal whose words say neither reason is not the limit's.
    api.max_concurrent_runs = {"gqigvH123456": 3}
    detail = "the request cannot be processed in the job's current state"
    api.inject(Fault(status=400, body={"errorType": "bad-state", "detail": detail}, method="POST"))
    api.plant("gqigvH123456", None, "RUNNING", {"$input": "earlier"})
    result = result_of(container(clock), plain(api), upload("in/a.csv", at=clock.wall()))
    [failed] = result["failed"]
    assert (failed["code"], failed["retryable"]) == ("bad-state", False)
    assert failed["error"].startswith("bad-state: the request cannot be processed in the job's current state; ")
    assert "maxConcurrentRuns" in failed["error"] and "`python -m handler doctor`" in failed["error"]


def test_where_the_service_queues_past_its_limit_the_run_is_submitted_and_stays_ready(
    clock: FakeClock, api: Emulator
) -> None:
    api.max_concurrent_runs, api.at_limit = {"gqigvH123456": 1}, "queue"
    result = result_of(container(clock), plain(api), sqs_batch(files(2, clock)))
    assert [entry["status"] for entry in result["submitted"]] == ["READY", "READY"]
    assert result["failed"] == [] and result["batchItemFailures"] == []


def test_a_dry_run_with_max_running_sends_nothing(clock: FakeClock, api: Emulator, logs: JsonLines) -> None:
    config = guarded(api, 1) | {"DATAFLOW_DRY_RUN": "true", "DATAFLOW_MAX_CONCURRENCY": "1"}
    out = result_of(container(clock), config, sqs_batch(files(2, clock)))
    assert api.received == []  # the count's listing is logged, like the create, not sent
    assert len(out["submitted"]) == 2  # a dry run lists no runs, and its own starts nothing
    methods = [record["request"]["method"] for record in logs.records if record["message"] == "dry-run request"]
    assert methods == ["GET", "POST", "POST"]  # one listing serves the invocation's counts


# Partitions kept apart (coalesce.groupBy), through the Lambda entry point.

SEOUL = timezone(timedelta(hours=9))
SEOUL_MIDNIGHT = datetime(2026, 12, 6, tzinfo=SEOUL).timestamp()
CLICKS = r"^landing/clicks/(?:dt=(?P<dt>\d{4}-\d{2}-\d{2})/)?"


def partitioned(api: Emulator, **settings: str) -> dict[str, str]:
    route = {
        "name": "clicks",
        "match": {"source": "object", "prefix": "landing/clicks/", "pattern": CLICKS},
        "jobId": JOB,
        "coalesce": {"parameter": "$files", "groupBy": "{match.dt}"},
        "parameters": {"$dt": "{match.dt}", "$count": "{count}", "$loaded": "{time:%Y-%m-%d}"},
    }
    return connected(api.url, DATAFLOW_ROUTES=json.dumps([route]), DATAFLOW_TIMEZONE="+09:00", **settings)


def clicks(day: str, name: str, seconds_after_midnight: float) -> dict[str, Any]:
    return upload(f"landing/clicks/dt={day}/{name}.json", at=SEOUL_MIDNIGHT + seconds_after_midnight)


ACROSS_MIDNIGHT = [  # uploaded from 23:59:50 to 00:00:30 Seoul time; a late file of the 5th among them
    clicks("2026-12-05", "a", -10),
    clicks("2026-12-06", "b", 10),
    clicks("2026-12-05", "late", 20),
    clicks("2026-12-06", "c", 30),
]


@pytest.mark.parametrize("echo", ["object", "list"])
def test_partitions_across_seoul_midnight_run_apart_each_with_its_own_dt_and_a_redelivery_starts_nothing(
    echo: str,
) -> None:
    clock = FakeClock(wall_now=SEOUL_MIDNIGHT + 600)
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo=echo) as api:
        result = lambda_result(container(clock), partitioned(api), sqs_batch(ACROSS_MIDNIGHT))
        assert [(entry["keys"], entry["closed"]) for entry in result["submitted"]] == [
            (["landing/clicks/dt=2026-12-05/a.json", "landing/clicks/dt=2026-12-05/late.json"], "end of batch"),
            (["landing/clicks/dt=2026-12-06/b.json", "landing/clicks/dt=2026-12-06/c.json"], "end of batch"),
        ]
        sent = sorted((run["parsedParameters"] for run in api.all_executions()), key=lambda sent: sent["$dt"])
        assert [(run["$dt"], run["$count"], run["$loaded"]) for run in sent] == [
            ("2026-12-05", "2", "2026-12-06"),  # {time...} is still the newest upload's: the late file's
            ("2026-12-06", "2", "2026-12-06"),
        ]
        clock.advance(60)
        again = lambda_result(container(clock), partitioned(api), sqs_batch(ACROSS_MIDNIGHT))  # a fresh container
        assert (again["submitted"], again["batchItemFailures"]) == ([], [])
        assert sorted((skip["reason"], skip["source"]["key"][15:]) for skip in again["skipped"]) == [
            ("duplicate", "dt=2026-12-05/a.json"),
            ("duplicate", "dt=2026-12-05/late.json"),
            ("duplicate", "dt=2026-12-06/b.json"),
            ("duplicate", "dt=2026-12-06/c.json"),
        ]
        assert len(api.all_executions()) == 2


def test_an_object_without_the_partition_its_group_by_names_fails_its_own_message_alone() -> None:
    clock = FakeClock(wall_now=SEOUL_MIDNIGHT + 600)
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        stray = upload("landing/clicks/stray.json", at=SEOUL_MIDNIGHT)
        result = lambda_result(container(clock), partitioned(api), sqs_batch([*ACROSS_MIDNIGHT[:2], stray]))
        assert result["batchItemFailures"] == [{"itemIdentifier": "m2"}]
        [failed] = result["failed"]
        assert (failed["source"]["key"], failed["retryable"]) == ("landing/clicks/stray.json", False)
        assert failed["error"].startswith("bad-event: coalesce.groupBy: {match.dt} has no value for this key")
        assert sorted(run["parsedParameters"]["$dt"] for run in api.all_executions()) == ["2026-12-05", "2026-12-06"]


def test_where_runs_echo_only_their_partition_one_partitions_run_never_holds_up_anothers_file() -> None:
    # The service echoes only $dt (the job declares no $files): a run cannot say which files it covers, so it may
    # cover any file of its own partition older than itself, and none of another partition.
    clock = FakeClock(wall_now=SEOUL_MIDNIGHT + 600)
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo_only=frozenset({"$dt"})) as api:
        config = partitioned(api, DATAFLOW_DEDUP_UNVERIFIABLE="fail")
        lambda_result(container(clock), config, sqs_batch([ACROSS_MIDNIGHT[0]]))
        clock.advance(60)
        # The 6th's file was uploaded before the 5th's run started; SQS hands it over only now.
        result = lambda_result(container(clock), config, sqs_batch([ACROSS_MIDNIGHT[1]]))
        assert [entry["keys"] for entry in result["submitted"]] == [["landing/clicks/dt=2026-12-06/b.json"]]
        # A later file of the 5th that arrived before that run: the run may cover it, so it is refused, not doubled.
        result = lambda_result(container(clock), config, sqs_batch([clicks("2026-12-05", "d", -5)]))
        assert [failed["code"] for failed in result["failed"]] == ["unknown-outcome"]
        assert len(api.all_executions()) == 2
