"""`make demo`: every sample event through the real handlers against the emulator on loopback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from emulator.lambda_context import LambdaContextStub
from emulator.server import Emulator

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
ACCESS_KEY, SECRET_KEY = "DEMOACCESSKEY", "demo-secret-key"
# Executions each sample must start with the demo routes; any shortfall fails the demo.
EXPECTED_SUBMISSIONS = {
    "s3-put.json": 2,
    "s3-multi-record.json": 3,
    "s3-delete.json": 0,
    "sqs-s3.json": 2,
    "sqs-s3-test-event.json": 0,
    "sns-s3.json": 2,
    "sns-sqs-s3.json": 2,
    "eventbridge-s3-object-created.json": 2,
    "schedule-classic.json": 1,
    "scheduler-input.json": 1,
    "direct-backfill.json": 1,
    "direct-job.json": 1,
    "ncp-object-storage.json": 2,
    "ncp-object-storage-flat.json": 2,
    "ncp-cron.json": 1,
}


def run_sample(path: Path) -> dict[str, Any]:
    from handler import app, ncp
    from handler.errors import InvocationFailedError

    event = json.loads(path.read_text(encoding="utf-8"))
    try:
        if path.name.startswith("ncp-"):
            return ncp.main(event)
        return app.lambda_handler(
            event, LambdaContextStub(function_name="dataflow-launcher-demo", aws_request_id=f"demo-{path.stem}")
        )
    except InvocationFailedError as exc:
        return exc.result


def main() -> int:
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
        shortfalls = []
        for path in sorted(EVENTS.glob("*.json")):
            print(f"\n=== {path.name} (emulator at {api.url})", flush=True)
            result = run_sample(path)
            print(json.dumps(result, indent=2, ensure_ascii=False), flush=True)
            started = [entry for entry in result["submitted"] if entry.get("jobExecutionId")]
            wanted = EXPECTED_SUBMISSIONS.get(path.name, 0)
            if len(started) < wanted:
                shortfalls.append(f"{path.name}: {len(started)} of {wanted} executions started")
        executions = api.all_executions()
    print(f"\n=== the emulator holds {len(executions)} executions:")
    for execution in executions:
        print(f"  {execution['jobId']} {execution['jobExecutionId']} {json.dumps(execution['parsedParameters'])}")
    if shortfalls:
        print("\nDEMO FAILED:\n  " + "\n  ".join(shortfalls), file=sys.stderr)
        return 1
    print(f"\ndemo OK: {len(EXPECTED_SUBMISSIONS)} samples, {len(executions)} executions started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
