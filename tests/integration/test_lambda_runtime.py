"""The handler under the real AWS Lambda Runtime Interface Client, against a local Runtime API: what Lambda does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from emulator.runtime_api import LambdaRuntime, template_handler
from emulator.server import Emulator, Fault
from tests.conftest import ACCESS_KEY, ROOT, SECRET_KEY, cli, load_event

pytest.importorskip("awslambdaric", reason="SKIPPED: awslambdaric (a dev dependency) is not installed")


@pytest.fixture
def api() -> Iterator[Emulator]:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as emulator:  # real clock: the function signs with it
        yield emulator


def settings(api: Emulator) -> dict[str, str]:
    return {
        "NCLOUD_ACCESS_KEY": ACCESS_KEY,
        "NCLOUD_SECRET_KEY": SECRET_KEY,
        "DATAFLOW_ENDPOINT": api.url,
        "DATAFLOW_JOB_ID": "gqigvH123456",
        "DATAFLOW_PARAMETERS": '{"$input": "{bucket}/{key}"}',
    }


def test_the_template_names_the_handler_the_runtime_client_loads() -> None:
    assert template_handler() == "handler.app.lambda_handler"


def test_a_result_is_the_invocation_s_response(api: Emulator) -> None:
    with LambdaRuntime(settings(api)) as runtime:
        answer = runtime.invoke(load_event("s3-put.json"))
    assert answer.kind == "response"
    [entry] = answer.body["submitted"]
    assert entry["jobExecutionId"] == api.all_executions()[0]["jobExecutionId"]


def test_a_partial_sqs_batch_is_a_response_naming_the_failed_messages(api: Emulator) -> None:
    event = load_event("sqs-s3.json")  # its second message's body is not JSON
    with LambdaRuntime(settings(api)) as runtime:
        answer = runtime.invoke(event)
    assert answer.kind == "response"  # Lambda deletes the others and redelivers only these
    assert answer.body["batchItemFailures"] == [{"itemIdentifier": event["Records"][1]["messageId"]}]


def test_a_failure_raises_invocation_failed_error_and_its_records_are_in_the_log(api: Emulator) -> None:
    api.inject(Fault(status=400, body={"errorType": "bad-parameter", "detail": "no such column"}, method="POST"))
    with LambdaRuntime(settings(api)) as runtime:
        answer = runtime.invoke(load_event("schedule-classic.json"))
    assert answer.kind == "error"  # Lambda retries an async event, then sends it to the on-failure destination
    assert answer.body["errorType"] == "InvocationFailedError"
    assert answer.body["errorMessage"] == "1 failed: bad-parameter: no such column"
    # The result the exception carries is in the function's log, record by record, before the raise.
    failed = [json.loads(line) for line in runtime.output.splitlines() if '"message":"failed"' in line]
    assert [(record["code"], record["retryable"]) for record in failed] == [("bad-parameter", False)]


def test_invoke_with_the_lambda_runtime_from_the_command_line(api: Emulator) -> None:
    done = cli("invoke", str(ROOT / "events" / "s3-put.json"), "--runtime", "lambda", env=settings(api))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["submitted"][0]["route"] == "default"
