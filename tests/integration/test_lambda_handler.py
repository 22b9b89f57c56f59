"""The Lambda entry point end to end: structured logs, context fields, secrets kept out."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from emulator.server import Emulator, Fault, dataflow_error
from handler import app
from handler.errors import ConfigError, InvocationFailedError
from handler.launcher import Launcher
from handler.wiring import Wiring
from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    JsonLines,
    LambdaContextStub,
    SleeplessClock,
    load_event,
    sqs_batch,
)


@pytest.fixture
def live_emulator() -> Iterator[Emulator]:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:  # real clock: the adapter signs with real time
        yield api


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, live_emulator: Emulator, logs: JsonLines) -> Emulator:
    # A fresh warm container per test; real clock (the adapter signs with it), no real sleeping.
    monkeypatch.setattr(app, "launcher", Launcher(Wiring(SleeplessClock().clocks())))
    for name, value in {
        "NCLOUD_ACCESS_KEY": ACCESS_KEY,
        "NCLOUD_SECRET_KEY": SECRET_KEY,
        "DATAFLOW_ENDPOINT": live_emulator.url,
        "DATAFLOW_JOB_ID": "gqigvH123456",
        "DATAFLOW_PARAMETERS": '{"$table_name": "sales"}',
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("DATAFLOW_ROUTES", "DATAFLOW_DRY_RUN"):
        monkeypatch.delenv(name, raising=False)
    return live_emulator


def test_multi_record_s3_event_submits_each_record_and_logs_one_record_per_decision(
    lambda_env: Emulator, logs: JsonLines
) -> None:
    result = app.lambda_handler(load_event("s3-multi-record.json"), LambdaContextStub())
    records = logs.records
    decisions = [r for r in records if r["message"] in ("submitted", "skipped", "failed")]
    # Skips are decided while routing, submissions after: one record per decision, in that order.
    assert [d["message"] for d in decisions] == ["skipped", "submitted", "submitted"]
    assert decisions[0]["reason"] == "folder-marker"
    # The two submissions run concurrently: their records may come in either order.
    [first] = [d for d in decisions if d.get("key") == "incoming/customers/part-0001.csv"]
    assert first["function_request_id"] == "0c7f9c3e-test"
    assert first["function_name"] == "dataflow-launcher"
    assert first["route"] == "default"
    assert first["jobId"] == "gqigvH123456"
    assert first["jobExecutionId"] == result["submitted"][0]["jobExecutionId"]
    assert first["bucket"] == "raw-data"
    assert first["key"] == "incoming/customers/part-0001.csv"
    assert first["attempts"] == 1
    assert isinstance(first["elapsedMs"], float)
    assert len(lambda_env.all_executions()) == 2


def test_a_lone_submission_is_one_record_and_anything_else_adds_a_summary(
    lambda_env: Emulator, logs: JsonLines
) -> None:
    # A record costs about 0.1 ms of a warm call: a lone submission's own record is its summary.
    app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())
    # What the container learned of the service's echo is said once per job, then never again.
    [reading, submitted] = logs.records
    assert (reading["message"], reading["jobId"], reading["echo"]) == ("service reading", "gqigvH123456", "object")
    assert submitted["message"] == "submitted"
    assert isinstance(submitted["elapsedMs"], float)  # since the invocation started
    assert submitted["lookups"] == ["absent (0 executions in the window)"]  # in the decision's record, not its own
    # A lone skip carries no time of its own: the summary says how long the invocation took.
    app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())
    assert [r["message"] for r in logs.records[2:]] == ["skipped", "invocation finished"]
    assert isinstance(logs.records[3]["elapsedMs"], float)
    app.lambda_handler(load_event("s3-multi-record.json"), LambdaContextStub())
    [summary] = [r for r in logs.records[4:] if r["message"] == "invocation finished"]
    assert (summary["submittedCount"], summary["skippedCount"], summary["failedCount"]) == (2, 1, 0)


def test_failure_raises_after_logging_with_the_result_attached(lambda_env: Emulator, logs: JsonLines) -> None:
    lambda_env.inject(Fault(status=400, body=dataflow_error("bad-parameter", "numWorker out of range")))
    with pytest.raises(InvocationFailedError) as caught:
        app.lambda_handler(load_event("schedule-classic.json"), LambdaContextStub())
    records = logs.records
    assert any(r["message"] == "failed" and r["error"] == "bad-parameter: numWorker out of range" for r in records)
    assert caught.value.result["failed"][0]["error"] == "bad-parameter: numWorker out of range"
    assert "bad-parameter" in str(caught.value)


def test_secrets_never_appear_in_logs_results_or_errors(
    lambda_env: Emulator, logs: JsonLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    ok = app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())
    seen.append(json.dumps(ok))
    lambda_env.inject(Fault(status=503, times=10))
    with pytest.raises(InvocationFailedError) as failure:
        app.lambda_handler(load_event("schedule-classic.json"), LambdaContextStub())
    seen += [json.dumps(failure.value.result), str(failure.value), repr(failure.value)]
    monkeypatch.setenv("NCLOUD_SECRET_KEY", "wrong-" + SECRET_KEY)
    with pytest.raises(InvocationFailedError) as refused:
        app.lambda_handler(load_event("schedule-classic.json"), LambdaContextStub())
    seen += [json.dumps(refused.value.result), str(refused.value)]
    monkeypatch.setenv("DATAFLOW_DRY_RUN", "true")
    seen.append(json.dumps(app.lambda_handler(load_event("scheduler-input.json"), LambdaContextStub())))
    monkeypatch.setenv("DATAFLOW_JOB_CONDITION", '{"numWorker": 99}')
    with pytest.raises(ConfigError) as bad_config:
        app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())
    seen.append(str(bad_config.value))
    seen.append(logs.text)
    everything = "\n".join(seen)
    signatures = {r.headers["x-ncp-apigw-signature-v2"] for r in lambda_env.received}
    assert len(signatures) >= 5
    assert SECRET_KEY not in everything
    for signature in signatures:
        assert signature not in everything
    [dry_run] = [r for r in logs.records if r["message"] == "dry-run request"]
    assert dry_run["request"]["headers"]["x-ncp-apigw-signature-v2"] == "***"


def test_invalid_configuration_is_one_error_listing_every_problem(
    lambda_env: Emulator, monkeypatch: pytest.MonkeyPatch, logs: JsonLines
) -> None:
    monkeypatch.delenv("NCLOUD_ACCESS_KEY")
    monkeypatch.setenv("DATAFLOW_ENDPOINT", "http://dataflow.example.com")
    monkeypatch.setenv("DATAFLOW_JOB_CONDITION", '{"numWorker": 11, "timeout": 0, "nrn": "x"}')
    monkeypatch.setenv("DATAFLOW_PARAMETERS", "{not json")
    with pytest.raises(ConfigError) as caught:
        app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())
    wheres = [problem.where for problem in caught.value.problems]
    assert wheres == [
        "NCLOUD_ACCESS_KEY",
        "DATAFLOW_ENDPOINT",
        "DATAFLOW_JOB_CONDITION.numWorker",
        "DATAFLOW_JOB_CONDITION.timeout",
        "DATAFLOW_JOB_CONDITION",
        "DATAFLOW_PARAMETERS",
    ]
    assert str(caught.value).startswith("invalid configuration (6 problems):\n- NCLOUD_ACCESS_KEY: is required")
    assert lambda_env.received == []
    logged = [r for r in logs.records if r["message"] == "invalid configuration"]
    assert len(logged[0]["problems"]) == 6


def test_emf_metrics_count_every_outcome(lambda_env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    app.lambda_handler(load_event("s3-multi-record.json"), LambdaContextStub())
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [blob] = blobs
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "DataflowLauncher"
    assert (blob["Submitted"], blob["Skipped"], blob["Failed"]) == ([2.0], [1.0], [0.0])
    assert "DedupUnverifiable" not in blob  # emitted only when some check could not identify runs


def test_emf_metrics_count_what_the_result_lists_leave_out(
    lambda_env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = load_event("sqs-s3.json")["Records"][1]  # its body is not JSON
    batch = {"Records": [broken | {"messageId": f"m{index}"} for index in range(130)]}
    result = app.lambda_handler(batch, LambdaContextStub())
    assert (len(result["failed"]), result["omitted"], len(result["batchItemFailures"])) == (100, {"failed": 30}, 130)
    [blob] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert blob["Failed"] == [130.0]


def test_emf_metrics_count_checks_that_cannot_identify_runs(
    lambda_env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_env.echo = "none"
    app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())  # an empty window: nothing to identify
    monkeypatch.setattr(app, "launcher", Launcher(Wiring(SleeplessClock().clocks())))  # a second container
    app.lambda_handler(load_event("s3-multi-record.json"), LambdaContextStub())
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [blob.get("DedupUnverifiable") for blob in blobs] == [None, [2.0]]


def test_event_id_is_the_event_s_own_id_and_empty_when_it_has_none(
    lambda_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFLOW_PARAMETERS", '{"$id": "{event_id}"}')
    app.lambda_handler(load_event("schedule-classic.json"), LambdaContextStub())
    app.lambda_handler(load_event("scheduler-input.json"), LambdaContextStub())
    app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())
    ids = [request.json["parameters"]["$id"] for request in lambda_env.posts]
    assert ids == ["53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "", "C3D13FE58DE4C810"]


def test_an_existing_bucket_s_eventbridge_events_come_through_the_upload_queue_and_coalesce(
    lambda_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The template sends an existing bucket's "Object Created" events to the upload queue: each SQS record's
    # body is the EventBridge event itself, and one batch of them is one run of a coalescing route.
    route = {
        "name": "drop",
        "match": {"source": "object", "bucket": "raw-data"},
        "jobId": "gqigvH123456",
        "parameters": {"$bucket": "{bucket}"},
        "coalesce": {"parameter": "$files"},
    }
    for name in ("DATAFLOW_JOB_ID", "DATAFLOW_PARAMETERS"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATAFLOW_ROUTES", json.dumps([route]))
    uploads = []
    for key in ("incoming/a.csv", "incoming/b.csv"):
        event = load_event("eventbridge-s3-object-created.json")
        event["detail"]["object"] |= {"key": key, "etag": f"etag-{key}"}
        uploads.append(event)
    result = app.lambda_handler(sqs_batch(uploads), LambdaContextStub())
    assert result["batchItemFailures"] == [] and len(result["submitted"]) == 1
    [run] = [request.json["parameters"] for request in lambda_env.posts]
    assert run["$bucket"] == "raw-data"
    assert sorted(run["$files"].split(",")) == ["incoming/a.csv", "incoming/b.csv"]
