"""Issue 23, items 1-6: outputs, separators and group sizes validate refuses, and batches that list or time oddly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.server import Emulator
from handler import app
from handler.errors import ConfigError
from handler.launcher import Launcher
from handler.routes import route_warnings
from handler.settings import parse_settings
from handler.wiring import Wiring
from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeClock,
    LambdaContextStub,
    SleeplessClock,
    cli,
    connected,
    container,
    result_of,
    sqs_batch,
    upload,
)

BUCKET = "raw-data"  # the sample upload's bucket
JOB = "SharpJob1"


def problems_of(*routes: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        parse_settings({"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps(list(routes))})
    return [str(problem) for problem in refused.value.problems]


def watching(**fields: Any) -> dict[str, Any]:
    """A route on the whole sample bucket, its job writing under `output`."""
    return {"name": "r", "match": {"source": "object", "bucket": BUCKET}, "jobId": JOB, **fields}


def coalescing(**spec: Any) -> dict[str, Any]:
    return {
        "name": "batch",
        "match": {"source": "object", "prefix": "in/"},
        "jobId": JOB,
        "coalesce": {"parameter": "$files", **spec},
        "parameters": {"$count": "{count}", "$bucket": "{bucket}"},
    }


def routed(api: Emulator, *routes: dict[str, Any]) -> dict[str, str]:
    return connected(api.url, DATAFLOW_ROUTES=json.dumps(list(routes)))


# Item 1: Spark's s3a:// (and s3n://, S3://) names the same bucket, so the recursion guard holds.


@pytest.mark.parametrize("output", ["s3a://raw-data/results/", "S3://raw-data/results/", "s3n://raw-data/results/"])
def test_an_output_in_sparks_scheme_is_the_watched_bucket_and_refused_as_recursion(output: str) -> None:
    [problem] = problems_of(watching(output=output))
    assert problem.startswith(f"DATAFLOW_ROUTES[r]: its job writes under {BUCKET}/results/ (output)")
    assert "set allowRecursion: true" in problem


def test_the_jobs_own_result_under_an_s3a_output_starts_no_run(clock: FakeClock, emulator: Emulator) -> None:
    config = routed(emulator, watching(output="s3a://raw-data/results/", allowRecursion=True))
    result = result_of(container(clock), config, upload("results/part-0.parquet", at=clock.wall()))
    assert [(skip["route"], skip["reason"]) for skip in result["skipped"]] == [("r", "own-output")]
    assert emulator.all_executions() == []


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("/raw-data/results/", "starts with '/': its first part is the bucket (did you mean 'raw-data/results/'?)"),
        ("gs://raw-data/results/", "'gs://raw-data/results/' names gs:// storage; output is 'bucket/prefix/'"),
        ("s3a:/raw-data/results/", "'s3a:' is not a bucket's name"),
    ],
    ids=["leading-slash", "other-storage", "one-slash-scheme"],
)
def test_an_output_that_names_no_bucket_here_is_refused_with_the_fix(output: str, expected: str) -> None:
    [problem] = problems_of(watching(output=output, allowRecursion=True))
    assert problem.startswith(f"DATAFLOW_ROUTES[r].output: {expected}")


@pytest.mark.parametrize(
    ("output", "fixed"),
    [("lake/results//", "lake/results/"), ("lake//results/", "lake/results/"), ("s3a://lake/a//b", "lake/a/b/")],
)
def test_an_output_with_an_empty_folder_name_is_refused_with_the_fix(output: str, fixed: str) -> None:
    # Its guard would compare keys with 'results//', which no key the job writes starts with.
    [problem] = problems_of(watching(output=output, allowRecursion=True))
    assert problem.startswith(f"DATAFLOW_ROUTES[r].output: {output!r} has an empty folder name ('//')")
    assert problem.endswith(f"write {fixed!r}")


# Item 2: an output compares whole path segments.


def test_an_output_without_its_slash_guards_its_folder_and_not_its_namesakes(
    clock: FakeClock, emulator: Emulator
) -> None:
    config = routed(emulator, watching(output="raw-data/out", allowRecursion=True, parameters={"$key": "{key}"}))
    keys = ["out/part-0.parquet", "outbound/partner.csv", "output_v2/x.csv"]
    results = [result_of(container(clock), config, upload(key, at=clock.wall())) for key in keys]
    assert [skip["source"]["key"] for result in results for skip in result["skipped"]] == ["out/part-0.parquet"]
    assert sorted(run["parsedParameters"]["$key"] for run in emulator.all_executions()) == keys[1:]


def test_validate_says_an_output_without_its_slash_is_read_as_a_folder() -> None:
    done = cli(
        "validate", env={"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps([watching(output="lake/out")])}
    )
    assert done.returncode == 0, done.stderr
    [checked] = json.loads(done.stdout)["routes"]
    assert checked["warnings"] == [
        "output lake/out has no trailing '/': it is read as the folder lake/out/ (keys under out/ are the job's own, "
        "out_v2/x is not); write 'lake/out/' to say so"
    ]
    [route] = parse_settings(
        {"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps([watching(output="lake/out/")])}
    ).routes
    assert route_warnings(route) == []


# Item 3: a separator whose start recurs at its end cannot be split back.


@pytest.mark.parametrize(("separator", "ending"), [("||", "|"), ("::", ":"), ("--", "-"), (" | ", " |")])
def test_a_separator_that_cannot_be_split_back_is_refused_naming_the_keys_that_break_it(
    separator: str, ending: str
) -> None:
    [problem] = problems_of(coalescing(separator=separator))
    assert problem.startswith(
        f"DATAFLOW_ROUTES[batch].coalesce.separator: {separator!r} cannot be split back reliably: a key ending in "
        f"{ending!r} before it"
    )
    assert problem.endswith("choose a separator whose start does not recur at its end, such as ',' or a newline")


def test_a_redelivery_into_a_fresh_container_starts_no_second_run_whatever_the_keys_end_with(
    clock: FakeClock, emulator: Emulator
) -> None:
    batch = sqs_batch([upload("in/a|", at=clock.wall() - 60), upload("in/b.csv", at=clock.wall() - 60)])
    refusals = []
    for _ in range(2):  # what SQS redelivers reaches a container that remembers nothing
        try:
            result_of(container(clock), routed(emulator, coalescing(separator="||")), batch)
        except ConfigError as refused:
            refusals.append(str(refused))
        clock.advance(60)
    assert len(emulator.all_executions()) == 0  # '||' read 'in/a|||in/b.csv' back as 'in/a' and '|in/b.csv'
    assert len(refusals) == 2 and "'||' cannot be split back reliably" in refusals[0]
    config = routed(emulator, coalescing(separator="|;"))  # its start does not recur at its end
    first = result_of(container(clock), config, batch)
    clock.advance(60)
    again = result_of(container(clock), config, batch)
    assert [entry["keys"] for entry in first["submitted"]] == [["in/a|", "in/b.csv"]]
    assert [skip["reason"] for skip in again["skipped"]] == ["duplicate", "duplicate"]
    [run] = emulator.all_executions()
    assert run["parsedParameters"]["$files"].split("|;") == ["in/a|", "in/b.csv"]


def test_a_separator_that_is_not_unicode_is_a_configuration_error_naming_the_field() -> None:
    # Valid JSON ("\ud800", a lone surrogate) that no request can carry: one problem, not a UnicodeEncodeError.
    routes = (
        '[{"name": "batch", "match": {"source": "object"}, "jobId": "SharpJob1",'
        ' "coalesce": {"parameter": "$files", "separator": "\\ud800"}}]'
    )
    with pytest.raises(ConfigError) as refused:
        parse_settings({"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": routes})
    [problem] = [str(problem) for problem in refused.value.problems]
    assert problem.startswith("DATAFLOW_ROUTES[batch].coalesce.separator: '\\ud800' holds a lone surrogate")
    assert "write a real character" in problem


# Item 6: without maxBytes, the count alone must keep the parameter inside the request budget.


def test_max_objects_without_max_bytes_is_bounded_by_the_request_budget_where_the_route_is_validated() -> None:
    [problem] = problems_of(coalescing(maxObjects=5000))
    assert problem == (
        "DATAFLOW_ROUTES[batch].coalesce.maxObjects: 5000 keys of up to 1024 bytes make the parameter up to 5124999 "
        "bytes, past the 262144-byte budget of one parameter (the gateway refuses a request over 1 MB, for good, "
        "with 413); set maxBytes (at most 262144) so groups also close by size, or maxObjects at most 255"
    )
    for accepted in (coalescing(maxObjects=255), coalescing(maxObjects=5000, maxBytes=262_144), coalescing()):
        parse_settings({"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps([accepted])})


# Items 4 and 5, through the Lambda entry point against the emulator.


@pytest.fixture
def lambda_routes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A fresh warm Lambda container on the real clock (the adapter signs with it), routed to one coalescing route."""
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:
        monkeypatch.setattr(app, "launcher", Launcher(Wiring(SleeplessClock().clocks())))
        for name, value in routed(api, coalescing()).items():
            monkeypatch.setenv(name, value)
        for name in ("DATAFLOW_JOB_ID", "DATAFLOW_PARAMETERS", "DATAFLOW_DRY_RUN"):
            monkeypatch.delenv(name, raising=False)
        yield api


def fresh_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "launcher", Launcher(Wiring(SleeplessClock().clocks())))


def test_a_key_uploaded_twice_in_a_batch_is_listed_and_counted_once(
    lambda_routes: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = SleeplessClock().wall()
    twice = [upload("in/a.csv", at=now - 50, etag="one", sequencer="01"), upload("in/a.csv", at=now - 40, etag="two")]
    batch = sqs_batch([twice[0], upload("in/b.csv", at=now - 45), twice[1]])
    result = app.lambda_handler(batch, LambdaContextStub())
    [entry] = result["submitted"]
    assert (entry["objects"], entry["keys"], result["batchItemFailures"]) == (2, ["in/a.csv", "in/b.csv"], [])
    [run] = lambda_routes.all_executions()
    assert (run["parsedParameters"]["$files"], run["parsedParameters"]["$count"]) == ("in/a.csv,in/b.csv", "2")
    fresh_container(monkeypatch)
    again = app.lambda_handler(batch, LambdaContextStub())  # both uploads of in/a.csv are that run's
    assert [skip["reason"] for skip in again["skipped"]] == ["duplicate"] * 3
    assert len(lambda_routes.all_executions()) == 1


def test_a_key_uploaded_twice_in_a_batch_is_run_once_across_groups(clock: FakeClock, emulator: Emulator) -> None:
    # maxObjects 2 closes "a,b" before the second upload of a arrives: it joins that group, not a run of its own.
    now = clock.wall()
    batch = sqs_batch(
        [
            upload("in/a.csv", at=now - 50, etag="one", sequencer="01"),
            upload("in/b.csv", at=now - 45),
            upload("in/a.csv", at=now - 40, etag="two", sequencer="02"),
            upload("in/c.csv", at=now - 35),
        ]
    )
    result = result_of(container(clock), routed(emulator, coalescing(maxObjects=2)), batch)
    listed = [run["parsedParameters"]["$files"] for run in emulator.all_executions()]
    assert sorted(listed) == ["in/a.csv,in/b.csv", "in/c.csv"], listed
    groups = sorted((entry["keys"], entry["objects"]) for entry in result["submitted"])
    assert groups == [(["in/a.csv", "in/b.csv"], 2), (["in/c.csv"], 1)]
    assert result["skipped"] == result["failed"] == result["batchItemFailures"] == []


def test_a_record_stamped_with_gos_zero_time_fails_its_own_message_alone(
    lambda_routes: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = SleeplessClock().wall()
    app.lambda_handler(sqs_batch([upload("in/earlier.csv", at=now - 120)]), LambdaContextStub())  # a run listed
    poison = upload("in/zero.csv")
    poison["Records"][0]["eventTime"] = "0001-01-01T00:00:00Z"
    fresh_container(monkeypatch)
    result = app.lambda_handler(
        sqs_batch([upload("in/a.csv", at=now - 30), poison, upload("in/b.csv", at=now - 30)]), LambdaContextStub()
    )
    assert result["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    [failed] = result["failed"]
    assert failed["error"].startswith("bad-event: Records[0].eventTime is 0001-01-01T00:00:00+00:00, out of range")
    assert "Go's zero time" in failed["error"]
    [entry] = result["submitted"]
    assert entry["keys"] == ["in/a.csv", "in/b.csv"]


def test_a_time_the_groups_template_cannot_render_fails_its_own_object_alone(
    clock: FakeClock, emulator: Emulator
) -> None:
    route = coalescing() | {"parameters": {"$until": "{time+999999d:%Y}"}}  # valid, and past 9999 for year 8000
    late = upload("in/late.csv")
    late["Records"][0]["eventTime"] = "8000-01-01T00:00:00Z"
    batch = sqs_batch([upload("in/a.csv", at=clock.wall() - 30), late, upload("in/b.csv", at=clock.wall() - 30)])
    result = result_of(container(clock), routed(emulator, route), batch)
    assert result["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    assert [entry["keys"] for entry in result["submitted"]] == [["in/a.csv", "in/b.csv"]]
