"""`make demo`: every sample event through the real handlers against the emulator on loopback."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.lambda_context import LambdaContextStub
from emulator.server import Emulator

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
ACCESS_KEY, SECRET_KEY = "DEMOACCESSKEY", "demo-secret-key"
# Settings a user may have exported that would change what the demo does: the demo clears them.
OWN_PREFIXES = ("DATAFLOW_", "NCLOUD_", "POWERTOOLS_")


@dataclass(frozen=True)
class Sample:
    shows: str
    started: int
    skipped: int = 0
    failed: int = 0
    broken: bool = False  # deliberately broken, to show how a failure is reported


# What each file in events/ shows with emulator/demo-routes.json; a file missing here fails the demo.
SAMPLES = {
    "s3-put.json": Sample("S3 upload fans out to two routes", 2),
    "s3-multi-record.json": Sample("three records; a folder marker is skipped", 3, 1),
    "s3-delete.json": Sample("a delete starts nothing unless a route asks", 0, 1),
    "sqs-s3.json": Sample("S3 via SQS; its 2nd message is not JSON", 2, 0, 1, broken=True),
    "sqs-s3-test-event.json": Sample("the s3:TestEvent is skipped", 0, 1),
    "sns-s3.json": Sample("S3 via SNS", 2),
    "sns-sqs-s3.json": Sample("S3 via SNS then SQS", 2),
    "eventbridge-s3-object-created.json": Sample("EventBridge Object Created", 2),
    "schedule-classic.json": Sample("EventBridge rule 'nightly'", 1),
    "scheduler-input.json": Sample("EventBridge Scheduler input", 1),
    "direct-backfill.json": Sample("direct call replays route 'backfill'", 1),
    "direct-job.json": Sample("direct call with literal job values", 1),
    "ncp-object-storage.json": Sample("NCP Object Storage, S3-style", 2),
    "ncp-object-storage-flat.json": Sample("NCP Object Storage, flat payload", 2),
    "ncp-cron.json": Sample("NCP cron trigger run", 1),
    "lambda-destination-record.json": Sample("replay of a Lambda on-failure record", 0, 2),
}


def clean_environment() -> list[str]:
    """Removes every exported setting, so the demo runs in its own configuration; returns the names."""
    cleared = sorted(name for name in os.environ if name.startswith(OWN_PREFIXES))
    for name in cleared:
        del os.environ[name]
    return cleared


def run_sample(path: Path) -> dict[str, Any]:
    from handler import app, ncp
    from handler.errors import InvocationFailedError

    event = json.loads(path.read_text(encoding="utf-8"))
    try:
        if path.name.startswith("ncp-"):
            return dict(ncp.main(event))
        context = LambdaContextStub(function_name="dataflow-launcher-demo", aws_request_id=f"demo-{path.stem}")
        return dict(app.lambda_handler(event, context))
    except InvocationFailedError as exc:
        return exc.result


def counts(result: dict[str, Any]) -> tuple[int, int, int]:
    started = sum(1 for entry in result["submitted"] if entry.get("jobExecutionId"))
    return started, len(result["skipped"]), len(result["failed"])


def main() -> int:
    verbose = os.environ.get("VERBOSE", "") not in ("", "0")
    cleared = clean_environment()
    missing = sorted(path.name for path in EVENTS.glob("*.json") if path.name not in SAMPLES)
    if missing:
        print(f"DEMO FAILED: no expectation in emulator/demo.py for {', '.join(missing)}", file=sys.stderr)
        return 1
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:
        os.environ.update(
            {
                "NCLOUD_ACCESS_KEY": ACCESS_KEY,
                "NCLOUD_SECRET_KEY": SECRET_KEY,
                "DATAFLOW_ENDPOINT": api.url,
                "DATAFLOW_ROUTES": json.dumps(json.loads((ROOT / "emulator" / "demo-routes.json").read_text())),
                "DATAFLOW_TIMEZONE": "+09:00",
                "POWERTOOLS_SERVICE_NAME": "dataflow-launcher-demo",
            }
        )
        print(f"make demo: each file in events/ through the real handlers, against the Data Flow emulator at {api.url}")
        print("Configuration: the demo's own (demo keys, emulator/demo-routes.json, DATAFLOW_TIMEZONE=+09:00).")
        if cleared:
            print(f"Ignored from your shell for this run: {', '.join(cleared)}")
        if not verbose:
            # The structured records are the product's output on a platform; here a table says more.
            logging.getLogger("handler").setLevel(logging.CRITICAL)
            logging.getLogger("dataflow-launcher-demo").setLevel(logging.CRITICAL)
        print()
        print(f"{'sample':37} {'what it shows':44} {'started':>8} {'skipped':>8} {'failed':>7}")
        wrong = []
        for name, sample in SAMPLES.items():
            path = EVENTS / name
            captured = io.StringIO()
            with contextlib.redirect_stdout(sys.stdout if verbose else captured):  # EMF metric blobs
                if verbose:
                    print(f"\n=== {name}")
                result = run_sample(path)
                if verbose:
                    print(json.dumps(result, indent=2, ensure_ascii=False))
            got = counts(result)
            wanted = (sample.started, sample.skipped, sample.failed)
            cells = [f"{value}/{expected}" for value, expected in zip(got, wanted, strict=True)]
            label = f"{name} (broken on purpose)" if sample.broken else name
            verdict = "" if got == wanted else "  <- not as expected"
            print(f"{label[:37]:37} {sample.shows[:44]:44} {cells[0]:>8} {cells[1]:>8} {cells[2]:>7}{verdict}")
            if got != wanted:
                wrong.append(name)
        executions = api.all_executions()
    print()
    print("Cells read got/expected. Failures above are deliberate: they show what a failed entry looks like.")
    if wrong:
        print(f"DEMO FAILED: {', '.join(wrong)} did not do what the table expects", file=sys.stderr)
        return 1
    print(f"demo OK: {len(SAMPLES)} samples, {len(executions)} executions in the emulator.")
    if not verbose:
        print("`make demo VERBOSE=1` prints every structured log record and result.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
