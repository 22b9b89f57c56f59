"""Route matching, fan-out, skip reasons and placeholder availability."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from handler import coalescing
from handler.errors import Problems
from handler.events import Batch, Delivery, JobInvocation, ObjectTrigger, RouteInvocation, ScheduleTrigger
from handler.jobs import JobSpec
from handler.outcomes import Failed, Skipped
from handler.planning import CoalescedPlan, Origin, PlannedExecution, fire, plan
from handler.routes import Route, check_route, check_routes

TIME = datetime(2026, 11, 27, 23, 10, 5, tzinfo=UTC)
LATER = datetime(2026, 11, 28, tzinfo=UTC)


def routes(*raw: dict[str, Any]) -> tuple[Route, ...]:
    problems = Problems()
    parsed = check_routes(list(raw), "DATAFLOW_ROUTES", problems)
    assert not problems, [str(p) for p in problems.items]
    return parsed


def obj(
    key: str, event_name: str = "ObjectCreated:Put", bucket: str = "raw-data", size: int | None = 10
) -> ObjectTrigger:
    return ObjectTrigger(bucket, key, event_name, TIME, size=size)


def fired(trigger: Any, table: tuple[Route, ...]) -> list[str | None]:
    return [step.route for step in fire(trigger, table, UTC, Origin()) if isinstance(step, PlannedExecution)]


def skips(trigger: Any, table: tuple[Route, ...]) -> list[str]:
    return [step.reason for step in fire(trigger, table, UTC, Origin()) if isinstance(step, Skipped)]


TABLE = routes(
    {
        "name": "csv",
        "match": {
            "source": "object",
            "bucket": "raw-data",
            "prefix": "incoming/",
            "suffix": ".csv",
            "pattern": "^incoming/(?P<table>[a-z_]+)/",
        },
        "jobId": "J1",
        "parameters": {"$t": "{match.table}", "$k": "{key}"},
    },
    {"name": "all-raw", "match": {"source": "object", "bucket": "raw-data"}, "jobId": "J2"},
    {
        "name": "deletes",
        "match": {"source": "object", "events": ["ObjectRemoved:*"], "prefix": "audit/"},
        "jobId": "J3",
    },
    {
        "name": "nightly",
        "match": {"source": "schedule", "schedule": "nightly"},
        "jobId": "J4",
        "parameters": {"$d": "{time-1d:%Y-%m-%d}", "$s": "{schedule}"},
    },
    {"name": "any-schedule", "match": {"source": "schedule"}, "jobId": "J5"},
    {"name": "manual", "match": {"source": "direct"}, "jobId": "J6", "parameters": {"$r": "{route}"}},
)


def test_every_matching_route_fires() -> None:
    assert fired(obj("incoming/orders/a.csv"), TABLE) == ["csv", "all-raw"]
    assert fired(obj("incoming/orders/a.json"), TABLE) == ["all-raw"]
    assert fired(obj("incoming/Orders/a.csv"), TABLE) == ["all-raw"]  # pattern must match too


def test_pattern_groups_and_object_placeholders_render() -> None:
    [step, _] = fire(obj("incoming/orders/a.csv"), TABLE, UTC, Origin())
    assert isinstance(step, PlannedExecution)
    assert step.parameters == {"$t": "orders", "$k": "incoming/orders/a.csv"}


def test_event_names_match_case_insensitively_with_wildcards() -> None:
    assert fired(obj("incoming/o/a.csv", "ObjectCreated:PUT"), TABLE) == ["csv", "all-raw"]
    assert fired(obj("audit/x", "ObjectRemoved:Delete"), TABLE) == ["deletes"]


def test_deletes_start_nothing_unless_asked() -> None:
    assert fired(obj("incoming/o/a.csv", "ObjectRemoved:Delete"), TABLE) == []
    assert skips(obj("incoming/o/a.csv", "ObjectRemoved:Delete"), TABLE) == ["event-type"]


def test_unmatched_created_object_is_no_route() -> None:
    assert skips(obj("x.csv", bucket="other"), TABLE) == ["no-route"]


def test_folder_markers_are_skipped() -> None:
    assert skips(obj("incoming/orders/", size=0), TABLE) == ["folder-marker"]
    assert skips(obj("incoming/orders/", size=None), TABLE) == ["folder-marker"]


def test_schedules_match_by_name_and_render_offsets() -> None:
    trigger = ScheduleTrigger("nightly", datetime(2026, 11, 28, 15, tzinfo=UTC))
    assert fired(trigger, TABLE) == ["nightly", "any-schedule"]
    step = fire(trigger, TABLE, UTC, Origin())[0]
    assert isinstance(step, PlannedExecution)
    assert step.parameters == {"$d": "2026-11-27", "$s": "nightly"}
    assert fired(ScheduleTrigger("hourly", TIME), TABLE) == ["any-schedule"]


def test_direct_routes_fire_only_by_name_and_any_route_can_be_replayed() -> None:
    assert "manual" not in fired(obj("incoming/o/a.csv"), TABLE)
    assert fired(RouteInvocation("manual", TIME), TABLE) == ["manual"]
    assert fired(RouteInvocation("nightly", TIME), TABLE) == ["nightly"]
    [reject] = fire(RouteInvocation("missing", TIME), TABLE, UTC, Origin())
    assert isinstance(reject, Failed)
    assert (reject.route, reject.code) == ("missing", "unknown-route")
    assert reject.message.startswith("no route is named 'missing' (routes: csv, all-raw,")


def test_direct_job_runs_literally() -> None:
    [step] = fire(JobInvocation(JobSpec("J9"), {"$a": "{bucket}"}, TIME), TABLE, UTC, Origin())
    assert isinstance(step, PlannedExecution)
    assert step.parameters == {"$a": "{bucket}"}  # literal values are never rendered
    assert step.route is None


def test_dedup_keys_are_stable_per_event_and_route() -> None:
    first = fire(obj("incoming/o/a.csv"), TABLE, UTC, Origin())
    again = fire(obj("incoming/o/a.csv"), TABLE, UTC, Origin())
    other = fire(obj("incoming/o/b.csv"), TABLE, UTC, Origin())
    keys = [s.dedup_key for s in first if isinstance(s, PlannedExecution)]
    assert keys == [s.dedup_key for s in again if isinstance(s, PlannedExecution)]
    assert len(set(keys)) == 2
    assert not set(keys) & {s.dedup_key for s in other if isinstance(s, PlannedExecution)}


def problems_of(raw: Any) -> list[str]:
    problems = Problems()
    check_route(raw, "r", problems)
    return [str(problem) for problem in problems.items]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"name": "a", "jobId": "J", "match": {"source": "schedule"}, "parameters": {"$k": "{key}"}},
            ["r.parameters.$k: {key} is not available for match.source schedule"],
        ),
        (
            {"name": "a", "jobId": "J", "match": {"source": "object"}, "parameters": {"$s": "{schedule}"}},
            ["r.parameters.$s: {schedule} is not available for match.source object"],
        ),
        (
            {
                "name": "a",
                "jobId": "J",
                "match": {"source": "object", "pattern": "(?P<x>a)"},
                "parameters": {"$y": "{match.y}"},
            },
            ["r.parameters.$y: {match.y} is not a named group of match.pattern"],
        ),
        ({"name": "a", "jobId": "J", "parameters": {"$y": "{nope}"}}, ["r.parameters.$y: unknown placeholder {nope}"]),
        (
            {"name": "a", "jobId": "J", "match": {"pattern": "("}},
            ["r.match.pattern: invalid regular expression: missing ), unterminated subpattern at position 0"],
        ),
        (
            {"name": "a", "jobId": "J", "match": {"source": "file"}},
            ["r.match.source: must be one of object, schedule, direct, got string 'file'"],
        ),
        (
            {"name": "a", "jobId": "J", "match": {"source": "schedule", "prefix": "x"}},
            ["r.match: prefix: only for match.source object"],
        ),
        (
            {"name": "a", "jobId": "J", "match": {"events": []}},
            ["r.match.events: must be a non-empty array of event names, got array of 0 items"],
        ),
        (
            {"name": "a", "jobId": "J", "match": {"bukket": "x"}},
            [
                "r.match.bukket: unknown match field (did you mean bucket?) (allowed: bucket, events, pattern, prefix, schedule, source, suffix)"
            ],
        ),
        (
            {"name": "a b", "jobId": "J/../x"},
            [
                "r.name: must be 1-64 letters, digits, '.', '-' or '_', got string 'a b'",
                "r.jobId: must be 1-64 letters, digits, '-' or '_', got string 'J/../x'",
            ],
        ),
        (
            {"name": "a", "jobId": "J", "jobCondition": {"numWorker": 11, "timeout": 1441, "scriptPath": ""}},
            [
                "r.jobCondition.numWorker: must be an integer 2-10, got number 11",
                "r.jobCondition.timeout: must be an integer 1-1440, got number 1441",
                "r.jobCondition.scriptPath: must be a non-empty string, got string ''",
                "r.jobCondition: nrn, scriptPath and logPath go together; missing nrn, logPath",
            ],
        ),
        (
            {"name": "a", "jobId": "J", "jobCondition": {"numWorker": True}},
            ["r.jobCondition.numWorker: must be an integer 2-10, got boolean true"],
        ),
        ({"name": "a", "jobId": "J", "parameters": {"$n": 5}}, ["r.parameters.$n: must be a string, got number 5"]),
        (
            {"name": "a", "jobId": "J", "extra": 1},
            [
                "r.extra: unknown route field (allowed: allowRecursion, coalesce, dedupParameter, jobCondition, jobId, match, maxRunning, name, output, parameters, sweep, triggerId, workflowId)"
            ],
        ),
        ("route", ["r: must be a JSON object, got string 'route'"]),
    ],
)
def test_route_problems_name_the_field(raw: Any, expected: list[str]) -> None:
    assert problems_of(raw) == expected


def test_default_source_serves_objects_and_schedules_with_both_placeholders() -> None:
    table = routes({"name": "default", "jobId": "J", "parameters": {"$k": "{key}", "$s": "{schedule}"}})
    assert fired(obj("x.csv"), table) == ["default"]
    step = fire(ScheduleTrigger("nightly", TIME), table, UTC, Origin())[0]
    assert isinstance(step, PlannedExecution)
    assert step.parameters == {"$k": "", "$s": "nightly"}  # object placeholders render empty


def test_duplicate_route_names_are_rejected() -> None:
    problems = Problems()
    check_routes([{"name": "a", "jobId": "J"}, {"name": "a", "jobId": "K"}], "DATAFLOW_ROUTES", problems)
    assert [str(p) for p in problems.items] == ["DATAFLOW_ROUTES[a]: route names must be unique"]


def test_a_pattern_that_backtracks_catastrophically_is_stopped_and_fails_its_route_only() -> None:
    import time

    from handler.routes import route_warnings

    table = routes(
        {"name": "hang", "match": {"pattern": "^(a|aa)+$"}, "jobId": "J1"},
        {"name": "fine", "match": {"prefix": "a"}, "jobId": "J2"},
    )
    [hang, _] = table
    assert route_warnings(hang)[0].startswith("match.pattern has a quantified group inside a quantifier")
    started = time.process_time()
    failed, planned = fire(obj("a" * 60 + "b"), table, UTC, Origin())  # unbounded, this takes longer than the universe
    assert time.process_time() - started < 1.0
    assert isinstance(failed, Failed) and (failed.route, failed.code) == ("hang", "pattern-timeout")
    assert isinstance(planned, PlannedExecution) and planned.route == "fine"


RECURSIVE = {
    "name": "sales",
    "match": {"bucket": "acme-lake", "prefix": "landing/"},
    "jobId": "J1",
    "jobCondition": {
        "nrn": "nrn:PUB:IAM::1:Role/r",
        "scriptPath": "acme-lake/scripts/",
        "logPath": "acme-lake/landing/logs/",
    },
}


def test_a_job_that_writes_where_its_route_watches_is_refused_unless_allowed() -> None:
    problems = Problems()
    check_routes([RECURSIVE], "DATAFLOW_ROUTES", problems)
    [problem] = problems.items
    assert problem.where == "DATAFLOW_ROUTES[sales]"
    assert problem.reason.startswith("its job writes under acme-lake/landing/logs/ (jobCondition.logPath)")
    declared = {key: value for key, value in RECURSIVE.items() if key != "jobCondition"}
    declared["output"] = "acme-lake/landing/sales/out/"
    problems = Problems()
    check_routes([declared], "DATAFLOW_ROUTES", problems)
    assert [p.reason.split(" (")[0] for p in problems.items] == ["its job writes under acme-lake/landing/sales/out/"]
    allowed = Problems()
    assert len(check_routes([RECURSIVE | {"allowRecursion": True}], "DATAFLOW_ROUTES", allowed)) == 1
    assert not allowed


def test_an_object_under_a_routes_declared_output_is_skipped_as_its_own() -> None:
    table = routes(
        {
            "name": "sales",
            "match": {"bucket": "raw-data", "prefix": "landing/"},
            "jobId": "J1",
            "output": "raw-data/landing/out/",
            "allowRecursion": True,
        }
    )
    [skip] = fire(obj("landing/out/part-0.parquet"), table, UTC, Origin())
    assert isinstance(skip, Skipped) and (skip.route, skip.reason) == ("sales", "own-output")
    assert fired(obj("landing/in/part-0.parquet"), table) == ["sales"]


# coalesce.groupBy: partitions kept apart (issue 24, item 4).

CLICKS = r"^landing/clicks/(?:dt=(?P<dt>\d{4}-\d{2}-\d{2})/)?(?:hour=(?P<hour>\d{2})/)?"


def grouping(spec: dict[str, Any] | None = None, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": "clicks",
        "jobId": "J",
        "match": {"source": "object", "pattern": CLICKS},
        "coalesce": {"parameter": "$files", **(spec or {})},
        "parameters": parameters or {},
    }


@pytest.mark.parametrize(
    ("spec", "parameters", "expected"),
    [
        (
            {},
            {"$dt": "{match.dt}", "$hour": "{match.hour}"},
            [
                "r.parameters.$dt: {match.dt} differs between the objects of a group; a coalesced run may use only "
                "{bucket}, {route}, {count}, {time...} and the placeholders its coalesce.groupBy names; for one group "
                '(and run) per value, set "groupBy": "{match.dt}/{match.hour}" in coalesce',
                "r.parameters.$hour: {match.hour} differs between the objects of a group; a coalesced run may use only "
                "{bucket}, {route}, {count}, {time...} and the placeholders its coalesce.groupBy names; for one group "
                '(and run) per value, set "groupBy": "{match.dt}/{match.hour}" in coalesce',
            ],
        ),
        (
            {"groupBy": "{match.dt}"},
            {"$dt": "{match.dt}", "$where": "{key_dir}/{match.hour}"},
            [
                "r.parameters.$where: {key_dir} differs between the objects of a group; a coalesced run may use only "
                "{bucket}, {route}, {count}, {time...} and the placeholders its coalesce.groupBy names; for one group "
                '(and run) per value, set "groupBy": "{match.dt}/{key_dir}/{match.hour}" in coalesce',
                "r.parameters.$where: {match.hour} differs between the objects of a group; a coalesced run may use only "
                "{bucket}, {route}, {count}, {time...} and the placeholders its coalesce.groupBy names; for one group "
                '(and run) per value, set "groupBy": "{match.dt}/{key_dir}/{match.hour}" in coalesce',
            ],
        ),
        (
            {"groupBy": "{match.dt}"},
            {"$key": "{key}"},
            [
                "r.parameters.$key: {key} differs between the objects of a group; a coalesced run may use only "
                "{bucket}, {route}, {count}, {time...} and the placeholders its coalesce.groupBy names; each object "
                "has its own {key} (the group's keys are in $files): drop coalesce for one run per object"
            ],
        ),
        ({"groupBy": "{match.day}"}, {}, ["r.coalesce.groupBy: {match.day} is not a named group of match.pattern"]),
        (
            {"groupBy": "{time:%Y-%m-%d}"},
            {},
            [
                "r.coalesce.groupBy: {time...} cannot group: a group's time is its newest object's; take the partition "
                'from the key (a named group of match.pattern, such as "{match.dt}")'
            ],
        ),
        (
            {"groupBy": "{etag}"},
            {},
            ["r.coalesce.groupBy: {etag} is each object's own: every object would run alone; drop coalesce instead"],
        ),
        ({"groupBy": "{count}"}, {}, ["r.coalesce.groupBy: {count} is not a placeholder of an object"]),
        ({"groupBy": "{schedule}"}, {}, ["r.coalesce.groupBy: {schedule} is not a placeholder of an object"]),
        (
            {"groupBy": "daily"},
            {},
            ["r.coalesce.groupBy: 'daily' names no placeholder; name what keeps groups apart, such as \"{match.dt}\""],
        ),
        (
            {"groupBy": ["{match.dt}"]},
            {},
            ['r.coalesce.groupBy: must be a template naming placeholders, such as "{match.dt}", got array of 1 items'],
        ),
        (
            {"groupBy": "{match.dt"},
            {},
            ["r.coalesce.groupBy: unclosed '{' at position 0; write '{{' for a literal brace"],
        ),
    ],
)
def test_group_by_problems_name_the_fix(spec: dict[str, Any], parameters: dict[str, str], expected: list[str]) -> None:
    assert problems_of(grouping(spec, parameters)) == expected


def test_a_coalescing_route_may_use_what_its_group_by_names() -> None:
    accepted = [
        grouping({"groupBy": "{match.dt}"}, {"$dt": "{match.dt}", "$n": "{count}", "$at": "{time:%H}"}),
        grouping({"groupBy": "{match.dt}/{match.hour}"}, {"$path": "s3a://{bucket}/x/dt={match.dt}/hour={match.hour}"}),
        grouping({"groupBy": "{key_dir}"}, {"$dir": "{key_dir}", "$route": "{route}"}),
    ]
    for raw in accepted:
        assert problems_of(raw) == []


def delivered(*keys: str, at: datetime = TIME) -> Batch:
    return Batch(
        tuple(
            Delivery((ObjectTrigger("raw-data", key, "ObjectCreated:Put", at, size=10),), f"m{index}")
            for index, key in enumerate(keys)
        ),
        from_sqs=True,
    )


def test_objects_join_one_plan_per_route_bucket_and_grouped_values_in_arrival_order() -> None:
    table = routes(grouping({"groupBy": "{match.dt}"}, {"$dt": "{match.dt}"}))
    keys = ("dt=2026-12-05/a", "dt=2026-12-06/b", "dt=2026-12-05/c", "dt=2026-12-06/hour=01/d")
    steps = plan(delivered(*(f"landing/clicks/{key}" for key in keys)), table, UTC, lambda: False)
    plans = [step for step in steps if isinstance(step, CoalescedPlan)]
    assert len(plans) == len(steps)
    assert [[m.key.removeprefix("landing/clicks/") for m in step.members] for step in plans] == [
        ["dt=2026-12-05/a", "dt=2026-12-05/c"],
        ["dt=2026-12-06/b", "dt=2026-12-06/hour=01/d"],
    ]
    assert [step.members[0].groups for step in plans] == [{"dt": "2026-12-05"}, {"dt": "2026-12-06"}]


def test_groups_part_by_the_values_not_by_how_they_render() -> None:
    # "{match.dt}{match.hour}" renders dt=2026-12-0 hour=51 and dt=2026-12-05 hour=1 alike; they are two partitions.
    pattern = r"^(?P<dt>[0-9-]+)_(?P<hour>\d+)/"
    route = grouping({"groupBy": "{match.dt}{match.hour}"}) | {"match": {"source": "object", "pattern": pattern}}
    steps = plan(delivered("2026-12-0_51/a", "2026-12-05_1/b"), routes(route), UTC, lambda: False)
    assert [len(step.members) for step in steps if isinstance(step, CoalescedPlan)] == [1, 1]


def test_an_object_without_the_group_its_group_by_names_fails_alone() -> None:
    table = routes(grouping({"groupBy": "{match.dt}"}, {"$dt": "{match.dt}"}))
    steps = plan(delivered("landing/clicks/dt=2026-12-05/a", "landing/clicks/stray.csv"), table, UTC, lambda: False)
    [group, failed] = steps
    assert isinstance(group, CoalescedPlan) and [m.key for m in group.members] == ["landing/clicks/dt=2026-12-05/a"]
    assert isinstance(failed, Failed) and failed.messages == ("m1",)
    assert failed.message == (
        "coalesce.groupBy: {match.dt} has no value for this key (its group of match.pattern took no part in the "
        "match); make the group required, or match.pattern stricter"
    )


def test_a_groups_run_renders_its_grouped_values_and_its_newest_time_and_its_runs_look_like_that() -> None:
    table = routes(
        grouping({"groupBy": "{match.dt}"}, {"$dt": "{match.dt}", "$n": "{count}", "$loaded": "{time:%Y-%m-%d %H:%M}"})
    )
    batch = Batch(
        (
            Delivery((ObjectTrigger("raw-data", "landing/clicks/dt=2026-12-05/a", "ObjectCreated:Put", TIME),)),
            Delivery((ObjectTrigger("raw-data", "landing/clicks/dt=2026-12-05/b", "ObjectCreated:Put", LATER),)),
        )
    )
    [step] = plan(batch, table, UTC, lambda: False)
    assert isinstance(step, CoalescedPlan)
    [run] = coalescing.groups(step, step.members, UTC)
    assert isinstance(run, PlannedExecution)
    assert run.parameters == {
        "$dt": "2026-12-05",
        "$n": "2",
        "$loaded": "2026-11-28 00:00",
        "$files": "landing/clicks/dt=2026-12-05/a,landing/clicks/dt=2026-12-05/b",
    }
    # The reader tells this partition's runs by $dt: another partition's run never covers its files.
    assert coalescing.covering(step).fixed == {"$dt": "2026-12-05"}
