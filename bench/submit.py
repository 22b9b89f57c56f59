"""`make bench`: the handler's cost per submission against a bare signed POST, side by side in one run."""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

from emulator.server import Emulator
from handler import app
from handler.dataflow import DataflowClient, ExecutionRequest
from handler.events import normalise
from handler.jobs import JobSpec
from handler.routing import plan
from handler.service import Launcher
from handler.settings import parse_settings
from handler.signing import Credentials, signed_headers

ROOT = Path(__file__).resolve().parent.parent
ACCESS, SECRET = "BENCHACCESSKEY", "bench-secret"
ROUNDS, PER_ROUND = 5, 200
S3_EVENT = json.loads((ROOT / "events" / "s3-put.json").read_text())


def timed(operation: Callable[[int], object], count: int, offset: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        operation(offset + index)
    return (time.perf_counter() - started) / count


def event_for(index: int) -> dict[str, object]:
    event = json.loads(json.dumps(S3_EVENT))
    event["Records"][0]["s3"]["object"]["sequencer"] = f"{index:018X}"  # a new upload each time, never a duplicate
    return event


def import_seconds(module: str) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)
        runs.append(time.perf_counter() - started)
    return min(runs)


def main() -> None:
    # Production logging (Powertools JSON for every decision) is part of the cost; only the terminal is not.
    with open(os.devnull, "w", encoding="utf-8") as sink:
        for log_handler in app.logger.handlers:
            if isinstance(log_handler, logging.StreamHandler):
                log_handler.setStream(sink)
        measure()


def measure() -> None:
    with Emulator({ACCESS: SECRET}) as api:
        url = f"{api.url}/api/v1/jobs/gqigvH123456/executions"
        path = "/api/v1/jobs/gqigvH123456/executions"
        headers = {
            **signed_headers(Credentials(ACCESS, SECRET), "POST", path, str(int(time.time() * 1000))),
            "Content-Type": "application/json",
        }
        body = json.dumps({"parameters": {"$table_name": "orders"}}).encode()
        session = requests.Session()
        client = DataflowClient(api.url, Credentials(ACCESS, SECRET))
        request = ExecutionRequest(JobSpec("gqigvH123456"), {"$table_name": "orders"})
        config = {
            "NCLOUD_ACCESS_KEY": ACCESS,
            "NCLOUD_SECRET_KEY": SECRET,
            "DATAFLOW_ENDPOINT": api.url,
            "DATAFLOW_JOB_ID": "gqigvH123456",
            "DATAFLOW_PARAMETERS": '{"$input": "{bucket}/{key}", "$day": "{time:%Y-%m-%d}"}',
        }
        launcher = Launcher()  # a warm container of its own, logging like app.launcher
        settings = parse_settings(config)
        launcher.invoke(event_for(0), config, platform="aws")  # warm-up: settings, session, connection

        def raw(_: int) -> object:
            return session.post(url, data=body, headers=headers, timeout=10).raise_for_status()

        def client_call(_: int) -> object:
            return client.create_execution(request)

        def handler_call(index: int) -> object:
            return launcher.invoke(event_for(index), config, platform="aws")

        def core_only(index: int) -> object:
            batch = normalise(event_for(index), platform="aws", now=datetime.now(UTC))
            return [plan(trigger, settings.routes, settings.zone) for d in batch.deliveries for trigger in d.triggers]

        samples: dict[str, list[float]] = {"raw": [], "client": [], "handler": [], "core": []}
        operations = {"raw": raw, "client": client_call, "handler": handler_call, "core": core_only}
        for round_index in range(ROUNDS):  # interleaved rounds so drift hits every variant alike
            for name, operation in operations.items():
                samples[name].append(timed(operation, PER_ROUND, (round_index + 1) * 10_000))
        executions = len(api.all_executions())

    labels = {
        "raw": "bare requests POST, precomputed headers",
        "client": "DataflowClient.create_execution (signs)",
        "handler": "Launcher.invoke, S3 event -> submission",
        "core": "normalise + route + render (no network)",
    }
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"loopback emulator, {ROUNDS} interleaved rounds x {PER_ROUND} calls, median per call")
    print(f"({executions} executions created):")
    for name, label in labels.items():
        print(f"  {label:<42} {median[name] * 1e6:8.0f} us  {median[name] / median['raw']:5.2f}x")
    base = import_seconds("requests")
    full = import_seconds("handler.app")
    print(
        f"cold import, best of 5: 'import requests' {base * 1000:.0f} ms; 'import handler.app' {full * 1000:.0f} ms"
        f" ({full / base:.2f}x)"
    )


if __name__ == "__main__":
    main()
