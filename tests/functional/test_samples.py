"""Every file in events/: exactly which executions reach the emulator, and which skips and failures."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from emulator.server import Emulator
from handler.launcher import Launcher
from tests.conftest import EVENTS, ROOT, load_event

ROUTES = json.loads((ROOT / "emulator" / "demo-routes.json").read_text(encoding="utf-8"))
CONDITION = ROUTES[0]["jobCondition"]


def orders(table: str, key: str, day: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    return ("gqigvH123456", {}, {"$table_name": table, "$input": f"raw-data/{key}", "$run_date": day})


def audit(key: str, size: str, event: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    directory, _, name = key.rpartition("/")
    stem, _, ext = name.rpartition(".")
    return (
        "AuDiT0000001",
        {},
        {"$dir": directory, "$file": name, "$stem": stem, "$ext": ext, "$size": size, "$event": event},
    )


def nightly(day: str, fired: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    return ("AbCdEf123456", {"workflowId": "wf-nightly"}, {"$date": day, "$fired": fired})


# file: (platform, executions as (jobId, query, parameters), skip reasons, failed count, SQS failures)
EXPECTED: dict[str, tuple[str, list[tuple[str, dict[str, str], dict[str, Any]]], list[str], int, int | None]] = {
    "s3-put.json": (
        "aws",
        [
            orders("orders", "incoming/orders/2026-11-27 batch+1.csv", "2026-11-28"),
            audit("incoming/orders/2026-11-27 batch+1.csv", "1048576", "ObjectCreated:Put"),
        ],
        [],
        0,
        None,
    ),
    # A Lambda on-failure destination record replays its requestPayload (here s3-put.json) as if new.
    "lambda-destination-record.json": (
        "aws",
        [
            orders("orders", "incoming/orders/2026-11-27 batch+1.csv", "2026-11-28"),
            audit("incoming/orders/2026-11-27 batch+1.csv", "1048576", "ObjectCreated:Put"),
        ],
        [],
        0,
        None,
    ),
    "s3-multi-record.json": (
        "aws",
        [
            orders("customers", "incoming/customers/part-0001.csv", "2026-11-28"),
            audit("incoming/customers/part-0001.csv", "73400320", "ObjectCreated:CompleteMultipartUpload"),
            audit("exports/report.tar.gz", "2048", "ObjectCreated:Copy"),
        ],
        ["folder-marker"],
        0,
        None,
    ),
    "s3-delete.json": ("aws", [], ["event-type"], 0, None),
    "sqs-s3.json": (
        "aws",
        [
            orders("products", "incoming/products/catalog.csv", "2026-11-28"),
            audit("incoming/products/catalog.csv", "1048576", "ObjectCreated:Put"),
        ],
        [],
        1,
        1,
    ),
    "sqs-s3-test-event.json": ("aws", [], ["test-event"], 0, 0),
    "sns-s3.json": (
        "aws",
        [
            orders("inventory", "incoming/inventory/stock levels.csv", "2026-11-28"),
            audit("incoming/inventory/stock levels.csv", "1048576", "ObjectCreated:Put"),
        ],
        [],
        0,
        None,
    ),
    "sns-sqs-s3.json": (
        "aws",
        [
            orders("returns", "incoming/returns/2026-11-27.csv", "2026-11-28"),
            audit("incoming/returns/2026-11-27.csv", "1048576", "ObjectCreated:Put"),
        ],
        [],
        0,
        0,
    ),
    "eventbridge-s3-object-created.json": (
        "aws",
        [
            orders("orders", "incoming/orders/eu+us 100%.csv", "2026-11-28"),
            audit("incoming/orders/eu+us 100%.csv", "5576", "ObjectCreated:Put"),
        ],
        [],
        0,
        None,
    ),
    "schedule-classic.json": ("aws", [nightly("2026-11-27", "2026-11-28T00:00:00+09:00")], [], 0, None),
    "scheduler-input.json": ("aws", [nightly("2026-11-26", "2026-11-27T00:00:00+09:00")], [], 0, None),
    "direct-backfill.json": (
        "aws",
        [
            ("AbCdEf123456", {}, {"$date": "2026-11-01", "$run": "backfill {manual}"}),
        ],
        [],
        0,
        None,
    ),
    "direct-job.json": ("aws", [("AbCdEf123456", {}, {"$date": "2026-10-31", "$mode": "rerun"})], [], 0, None),
    "ncp-object-storage.json": (
        "ncp",
        [
            orders("orders", "incoming/orders/2026-11-28 night.csv", "2026-11-28"),
            audit("incoming/orders/2026-11-28 night.csv", "4096", "ObjectCreated:PUT"),
        ],
        [],
        0,
        None,
    ),
    "ncp-object-storage-flat.json": (
        "ncp",
        [
            orders("orders", "incoming/orders/flat payload+1.csv", "2026-11-28"),
            audit("incoming/orders/flat payload+1.csv", "2048", "ObjectCreated:PUT"),
        ],
        [],
        0,
        None,
    ),
    # A cron run carries no time: the invocation time (the fixed test clock), truncated to the minute.
    "ncp-cron.json": ("ncp", [nightly("2026-11-27", "2026-11-28T09:00:00+09:00")], [], 0, None),
}


def test_every_sample_file_is_pinned() -> None:
    assert sorted(path.name for path in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_outcome(name: str, launcher: Launcher, config: dict[str, str], emulator: Emulator) -> None:
    platform, executions, skips, failures, sqs_failures = EXPECTED[name]
    config.pop("DATAFLOW_JOB_ID")
    config |= {"DATAFLOW_ROUTES": json.dumps(ROUTES), "DATAFLOW_TIMEZONE": "+09:00"}
    report = launcher.invoke(load_event(name), config, platform=platform, activation_id="act-1")  # type: ignore[arg-type]
    assert not report.keep or failures, f"{name} would raise: {report.result}"
    result: Mapping[str, Any] = report.result
    received = [(r.path.split("?")[0].split("/")[4], dict(r.query), r.json) for r in emulator.posts]
    assert all(r.verdict == "ok" for r in emulator.received)
    wanted = []
    for job_id, query, parameters in executions:
        body: dict[str, Any] = {"parameters": parameters}
        if job_id == "gqigvH123456":
            body["jobCondition"] = CONDITION
        if name == "direct-job.json":
            body["jobCondition"] = {"numWorker": 2, "timeout": 60}
        wanted.append((job_id, {key: [value] for key, value in query.items()}, body))
    # Submissions of one invocation run concurrently: compare what arrived, not in which order.
    assert sorted(map(repr, received)) == sorted(map(repr, wanted))
    assert [entry["reason"] for entry in result["skipped"]] == skips
    assert len(result["failed"]) == failures
    assert all(entry["jobExecutionId"] for entry in result["submitted"])
    if sqs_failures is None:
        assert "batchItemFailures" not in result
    else:
        assert len(result["batchItemFailures"]) == sqs_failures


def test_sqs_failure_names_exactly_the_bad_message(launcher: Launcher, config: dict[str, str]) -> None:
    event = load_event("sqs-s3.json")
    report = launcher.invoke(event, config, platform="aws")
    assert not report.keep
    result = report.result
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][1]["messageId"]}]
    [failed] = result["failed"]
    assert failed["error"].startswith("bad-event: SQS record body is not JSON")
    assert failed["source"] == {"kind": "unknown", "messageId": event["Records"][1]["messageId"]}


def test_sqs_submission_failure_is_reported_per_message_without_raising(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    from emulator.server import Fault

    event = load_event("sns-sqs-s3.json")
    emulator.inject(Fault(status=400))
    report = launcher.invoke(event, config, platform="aws")
    assert not report.keep
    result = report.result
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]


def test_sample_files_are_valid_json_objects() -> None:
    for path in EVENTS.glob("*.json"):
        assert isinstance(json.loads(Path(path).read_text(encoding="utf-8")), dict), path.name
