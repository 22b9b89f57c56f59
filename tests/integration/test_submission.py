"""lambda_handler through real sockets to the emulator: signing, retries, unknown outcomes."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from emulator.server import Emulator, Fault, dataflow_error
from handler.clocks import Clocks
from handler.dataflow.client import DataflowClient, ExecutionRequest
from handler.dataflow.signing import Credentials, NcpSignatureV2
from handler.errors import InvocationFailedError
from handler.jobs import JobSpec
from handler.launcher import Launcher
from tests.conftest import ACCESS_KEY, SECRET_KEY, FakeClock, load_event
from tests.conftest import lambda_result as invoke

CONDITION = {
    "numWorker": 4,
    "timeout": 120,
    "nrn": "nrn:PUB:IAM::1234:Role/example",
    "scriptPath": "dataflow-1/scripts/",
    "logPath": "dataflow-1/logs/",
}


def failed_result(launcher: Launcher, config: dict[str, str], event: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(InvocationFailedError) as caught:
        invoke(launcher, config, event, **kwargs)
    return caught.value.result


def test_s3_put_reaches_the_emulator_signed_with_path_query_and_body(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    config |= {
        "DATAFLOW_WORKFLOW_ID": "wf-1",
        "DATAFLOW_TRIGGER_ID": "tr-1",
        "DATAFLOW_JOB_CONDITION": '{"numWorker": 4, "timeout": 120, "nrn": "nrn:PUB:IAM::1234:Role/example", '
        '"scriptPath": "dataflow-1/scripts/", "logPath": "dataflow-1/logs/"}',
        "DATAFLOW_PARAMETERS": '{"$table_name": "test.sample_table2"}',
    }
    result = invoke(launcher, config, load_event("s3-put.json"))
    [request] = emulator.posts
    assert request.verdict == "ok"
    assert request.method == "POST"
    assert request.path == "/api/v1/jobs/gqigvH123456/executions?triggerId=tr-1&workflowId=wf-1"
    assert request.json == {"jobCondition": CONDITION, "parameters": {"$table_name": "test.sample_table2"}}
    assert request.headers["x-ncp-iam-access-key"] == ACCESS_KEY
    assert request.headers["content-type"] == "application/json"
    [execution] = emulator.all_executions()
    [entry] = result["submitted"]
    assert entry["jobExecutionId"] == execution["jobExecutionId"]
    assert entry["status"] == "READY"
    assert entry["source"] == {
        "kind": "object",
        "bucket": "raw-data",
        "key": "incoming/orders/2026-11-27 batch+1.csv",
        "eventName": "ObjectCreated:Put",
    }
    assert result["failed"] == [] and result["dryRun"] is False


def test_without_job_condition_the_body_carries_only_parameters(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    invoke(launcher, config, load_event("schedule-classic.json"))
    [request] = emulator.posts
    assert request.json == {"parameters": {}}
    assert request.path == "/api/v1/jobs/gqigvH123456/executions"


@pytest.mark.parametrize("status", [503, 429])
def test_refusals_that_surely_did_not_run_are_retried_with_backoff(
    launcher: Launcher, config: dict[str, str], emulator: Emulator, clock: FakeClock, status: int
) -> None:
    emulator.inject(Fault(status=status, times=2, method="POST"))
    result = invoke(launcher, config, load_event("schedule-classic.json"))
    assert [r.status for r in emulator.posts] == [status, status, 200]
    assert len(emulator.all_executions()) == 1
    assert result["submitted"][0]["jobExecutionId"] == emulator.all_executions()[0]["jobExecutionId"]
    assert clock.sleeps == [0.2, 0.4]  # exponential, jitter pinned at its maximum
    timestamps = [r.headers["x-ncp-apigw-timestamp"] for r in emulator.posts]
    assert len(set(timestamps)) == 3  # every attempt signed afresh


def test_retry_after_is_honoured_up_to_the_cap(
    launcher: Launcher, config: dict[str, str], emulator: Emulator, clock: FakeClock
) -> None:
    emulator.inject(Fault(status=429, headers={"Retry-After": "3"}, method="POST"))
    invoke(launcher, config, load_event("schedule-classic.json"))
    assert clock.sleeps == [3.0]


def test_attempts_are_bounded(launcher: Launcher, config: dict[str, str], emulator: Emulator) -> None:
    emulator.inject(Fault(status=503, times=10, method="POST"))
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    assert len(emulator.posts) == 4
    [entry] = result["failed"]
    assert entry["error"] == "500: HTTP 503 Endpoint Error (gateway code 500)"
    assert entry["retryable"] is True


def test_bad_request_is_not_retried(launcher: Launcher, config: dict[str, str], emulator: Emulator) -> None:
    emulator.inject(Fault(status=400, body=dataflow_error("bad-state", "job is not runnable"), method="POST"))
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    assert len(emulator.posts) == 1
    assert emulator.all_executions() == []
    [entry] = result["failed"]
    assert entry["error"] == "bad-state: job is not runnable"
    assert entry["retryable"] is False
    assert entry["route"] == "default" and entry["jobId"] == "gqigvH123456"


def test_a_redirect_is_a_failure_not_a_submission(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    emulator.inject(Fault(status=302, body={}, headers={"Location": "https://elsewhere.example/"}, method="POST"))
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    assert len(emulator.posts) == 1
    assert result["failed"][0]["error"].startswith("302: ")
    assert result["failed"][0]["retryable"] is False


def test_unknown_job_is_a_permanent_404(launcher: Launcher, config: dict[str, str], clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, jobs={"OtherJob"}) as api:
        config |= {"DATAFLOW_ENDPOINT": api.url, "DATAFLOW_DEDUP_PARAMETER": "$dedup"}
        result = failed_result(launcher, config, load_event("schedule-classic.json"))
        # The duplicate check's 404 proves nothing ran; the submission then meets the same 404.
        assert [(r.method, r.status) for r in api.received] == [("GET", 404), ("POST", 404)]
    assert result["failed"][0]["error"].startswith("not-found: job gqigvH123456")


@pytest.mark.parametrize(
    ("fault", "posts"),
    [
        # Each of these may or may not have run: the lookup decides, and only an absent run is resent.
        (Fault(status=504, execute=True, method="POST"), 1),
        (Fault(status=500, execute=True, method="POST"), 1),
        (Fault(status=502, execute=True, method="POST"), 1),
        (Fault(drop=True, execute=True, method="POST"), 1),
        (Fault(hold=30, execute=True, method="POST"), 1),  # read timeout; released when the emulator stops
        (Fault(status=504, method="POST"), 2),
        (Fault(status=500, method="POST"), 2),
        (Fault(drop=True, method="POST"), 2),
    ],
    ids=[
        "504-after-executing",
        "500-after-executing",
        "502-after-executing",
        "dropped-after-executing",
        "read-timeout-after-executing",
        "504-before-executing",
        "500-before-executing",
        "dropped-before-executing",
    ],
)
def test_unknown_outcomes_are_reconciled_before_any_resend(
    launcher: Launcher, config: dict[str, str], emulator: Emulator, fault: Fault, posts: int
) -> None:
    config |= {"DATAFLOW_READ_TIMEOUT": "0.3", "DATAFLOW_PARAMETERS": '{"$day": "{time:%Y-%m-%d}"}'}
    emulator.inject(fault)
    result = invoke(launcher, config, load_event("schedule-classic.json"))
    assert len(emulator.posts) == posts
    [execution] = emulator.all_executions()
    [entry] = result["submitted"]
    assert entry["jobExecutionId"] == execution["jobExecutionId"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=504, execute=True, method="POST"), "unknown-outcome: 510: HTTP 504 Endpoint Timeout"),
        (Fault(drop=True, method="POST"), "unknown-outcome: the connection dropped after the request was sent"),
    ],
    ids=["504", "dropped"],
)
def test_with_the_check_off_an_unknown_outcome_fails_and_is_never_resent(
    launcher: Launcher, config: dict[str, str], emulator: Emulator, fault: Fault, error: str
) -> None:
    config["DATAFLOW_DEDUP_CHECK"] = "off"
    emulator.inject(fault)
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    assert [r.method for r in emulator.received] == ["POST"]
    [entry] = result["failed"]
    assert entry["error"].startswith(error)
    assert entry["error"].endswith("not resent, because DATAFLOW_DEDUP_CHECK is off")
    assert entry["retryable"] is False


def test_an_ambiguous_create_that_the_lookup_cannot_settle_fails_without_a_second_post(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    # The service echoes no parameters: the execution found cannot be told from any other run.
    emulator.echo = "none"
    emulator.inject(Fault(status=504, execute=True, method="POST"))
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    # The list, the create, the list again, and the run's own page (it echoes nothing either).
    assert [r.method for r in emulator.received] == ["GET", "POST", "GET", "GET"]
    assert len(emulator.all_executions()) == 1
    [entry] = result["failed"]
    assert entry["error"].startswith("unknown-outcome: 510: HTTP 504 Endpoint Timeout (gateway code 510)")
    assert "cannot be told apart" in entry["error"]
    # A redelivery could not tell either, and DATAFLOW_DEDUP_UNVERIFIABLE=submit would start it: not replay-safe.
    assert entry["retryable"] is False


def test_an_ambiguous_create_is_settled_by_an_identical_run_created_after_the_event(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    emulator.inject(Fault(status=504, execute=True, method="POST"))
    result = invoke(launcher, config, load_event("schedule-classic.json"))
    assert [r.method for r in emulator.received] == ["GET", "POST", "GET"]
    [execution] = emulator.all_executions()
    assert result["submitted"][0]["jobExecutionId"] == execution["jobExecutionId"]


def test_read_timeout_message_states_the_time_spent(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    config |= {"DATAFLOW_READ_TIMEOUT": "0.2", "DATAFLOW_DEDUP_CHECK": "off"}
    emulator.inject(Fault(hold=30, execute=True, method="POST"))
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    assert re.match(r"unknown-outcome: no answer within 0\.2\ds; the execution may exist", result["failed"][0]["error"])


def test_wrong_secret_is_refused_with_401_and_not_retried(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    config["NCLOUD_SECRET_KEY"] = "not-the-secret"
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    [request] = emulator.received  # the lookup is refused; nothing is sent after it
    assert request.status == 401
    assert request.verdict == "rejected: signature mismatch"
    assert result["failed"][0]["error"] == "200: HTTP 401 Authentication Failed (gateway code 200; signature mismatch)"
    assert result["failed"][0]["retryable"] is False
    assert emulator.all_executions() == []


def test_query_altered_after_signing_is_refused(emulator: Emulator, clock: FakeClock) -> None:
    auth = NcpSignatureV2(Credentials(ACCESS_KEY, SECRET_KEY), clock=clock.wall)
    session = requests.Session()
    url = f"{emulator.url}/api/v1/jobs/gqigvH123456/executions"
    request = requests.Request("POST", url, params={"triggerId": "t1"}, json={})
    prepared = auth.sign(session.prepare_request(request), auth.offset)
    prepared.url = f"{url}?triggerId=t2"  # tampered in flight
    response = session.send(prepared, timeout=5)
    assert response.status_code == 401
    assert emulator.received[0].path.endswith("?triggerId=t2")
    assert emulator.received[0].verdict == "rejected: signature mismatch"
    untouched = session.send(auth.sign(session.prepare_request(request), auth.offset), timeout=5)
    assert untouched.status_code == 200


def test_clock_skew_is_corrected_once_from_the_gateway_date(
    launcher: Launcher, config: dict[str, str], clock: FakeClock
) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=lambda: clock.wall() + 600) as api:
        config["DATAFLOW_ENDPOINT"] = api.url
        result = invoke(launcher, config, load_event("schedule-classic.json"))
        assert [(r.method, r.status) for r in api.received] == [("GET", 401), ("GET", 200), ("POST", 200)]
        assert api.received[0].verdict == "rejected: timestamp outside the 5 minute window"
    assert result["submitted"][0]["jobExecutionId"]


def test_short_remaining_time_gives_up_before_the_deadline(
    launcher: Launcher, config: dict[str, str], emulator: Emulator, clock: FakeClock
) -> None:
    emulator.inject(Fault(status=503, times=10, method="POST"))
    start = clock.monotonic()
    result = failed_result(launcher, config, load_event("schedule-classic.json"), remaining_ms=1_500)
    # Deadline = 1.5s minus the 0.5s margin; the 0.8s third backoff would overrun it.
    assert len(emulator.posts) == 3
    assert clock.monotonic() - start < 1.0
    assert clock.sleeps == [0.2, 0.4]
    assert result["failed"][0]["retryable"] is True


def test_no_time_left_sends_nothing(launcher: Launcher, config: dict[str, str], emulator: Emulator) -> None:
    result = failed_result(launcher, config, load_event("schedule-classic.json"), remaining_ms=600)
    assert emulator.received == []
    assert result["failed"][0]["error"].startswith("timeout:")
    assert result["failed"][0]["retryable"] is True


def test_refused_connection_is_retried_then_fails_retryable(launcher: Launcher, config: dict[str, str]) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:
        closed = api.url  # the port is free again once this emulator stops
    config["DATAFLOW_ENDPOINT"] = closed
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    [entry] = result["failed"]
    assert re.fullmatch(r"connection: the connection was refused \(\d+\.\d\ds\)", entry["error"])
    assert entry["retryable"] is True


def test_second_delivery_of_the_same_event_starts_nothing(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    first = invoke(launcher, config, load_event("s3-put.json"))
    second = invoke(launcher, config, load_event("s3-put.json"))
    assert len(emulator.all_executions()) == 1
    assert second["submitted"] == []
    [skip] = second["skipped"]
    assert skip["reason"] == "duplicate"
    assert skip["dedupKey"] == first["submitted"][0]["dedupKey"]


def test_client_lists_executions(emulator: Emulator, clock: FakeClock) -> None:
    client = DataflowClient(emulator.url, Credentials(ACCESS_KEY, SECRET_KEY), clocks=clock.clocks())
    created = client.create_execution(ExecutionRequest(JobSpec("gqigvH123456"), {"$a": "1"}))
    listed = client.list_executions("gqigvH123456", page=0, limit=5)
    assert listed["count"] == 1
    assert listed["list"][0]["jobExecutionId"] == created.execution_id
    assert listed["list"][0]["parsedParameters"] == {"$a": "1"}
    assert emulator.received[1].path == "/api/v1/jobs/gqigvH123456/executions?page=0&limit=5"


def test_client_reads_the_job_and_its_concurrency_limit(emulator: Emulator, clock: FakeClock) -> None:
    emulator.max_concurrent_runs = {"gqigvH123456": 3}
    client = DataflowClient(emulator.url, Credentials(ACCESS_KEY, SECRET_KEY), clocks=clock.clocks())
    job = client.get_job("gqigvH123456")
    assert (job["jobId"], job["maxConcurrentRuns"], job["status"]) == ("gqigvH123456", 3, "READY")
    assert emulator.received[0].path == "/api/v1/jobs/gqigvH123456"


def test_a_job_that_cannot_run_fails_permanently_without_a_hint(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    emulator.job_status = {"gqigvH123456": "STOPPED"}
    emulator.max_concurrent_runs = {"gqigvH123456": 1}  # a limit, but not what refused it
    result = failed_result(launcher, config, load_event("schedule-classic.json"))
    [entry] = result["failed"]
    assert entry["error"] == "bad-state: job gqigvH123456 is not runnable in its current status (STOPPED)"
    assert (entry["code"], entry["retryable"]) == ("bad-state", False)
    assert len(emulator.posts) == 1


def test_empty_2xx_body_counts_as_submitted_without_an_id(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(status=202, raw=b"", execute=True))
    client = DataflowClient(emulator.url, Credentials(ACCESS_KEY, SECRET_KEY), clocks=Clocks(wall=clock.wall))
    answer = client.create_execution(ExecutionRequest(JobSpec("gqigvH123456"), {}))
    assert answer.execution_id is None
    assert len(emulator.all_executions()) == 1
