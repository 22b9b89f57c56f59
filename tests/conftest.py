"""Shared fixtures: sample events, a controllable clock, the loopback emulator and a launcher."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import pytest
from aws_lambda_powertools import Logger
from hypothesis import settings

from emulator.lambda_context import LambdaContextStub
from emulator.s3_server import S3Server
from emulator.server import Emulator, Fault, Received
from handler import app, ncp
from handler.clocks import Clocks
from handler.launcher import Launcher
from handler.settings import CONFIG_NAMES
from handler.wiring import Wiring

if TYPE_CHECKING:
    from handler.events import Platform

__all__ = ["LambdaContextStub"]

# CI replays the same examples every run, so a red build always reproduces; locally each run explores anew.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
ACCESS_KEY = "TESTACCESSKEY"
SECRET_KEY = "test-secret-key-never-logged"
# 2026-11-28T00:00:00Z: a fixed "now" so rendered times are exact.
NOW = 1_795_824_000.0


# Figures a test reports (the soak's counts), printed at the end of the run whatever the verbosity.
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)


def fresh_python(code: str) -> str:
    """What `code` prints in a fresh interpreter started in the project root, as a cold start sees it."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def result_of(
    launcher: Launcher,
    config: Mapping[str, str],
    event: Any,
    *,
    platform: Platform = "aws",
    remaining_ms: float | None = 30_000,
    **options: Any,
) -> dict[str, Any]:
    """The invocation's result, whether or not an adapter would raise to keep the event."""
    report = launcher.invoke(event, config, platform=platform, remaining_ms=remaining_ms, **options)
    return dict(report.result)


def lambda_result(
    launcher: Launcher, config: Mapping[str, str], event: Any, remaining_ms: int = 30_000
) -> dict[str, Any]:
    """Calls the real Lambda entry point with `config` as its environment and `launcher` as its container."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CONFIG_NAMES:
            patch.delenv(name, raising=False)
        for name, value in config.items():
            patch.setenv(name, value)
        patch.setattr(app, "launcher", launcher)
        return dict(app.lambda_handler(event, LambdaContextStub(remaining_ms=remaining_ms)))


def kept_result(launcher: Launcher, config: Mapping[str, str], event: Any, **options: Any) -> dict[str, Any]:
    """The result of an invocation that an adapter raises for, so that the platform keeps the event."""
    report = launcher.invoke(event, config, platform=options.pop("platform", "aws"), **options)
    assert report.keep, report.result
    return dict(report.result)


def cli(*args: str, env: Mapping[str, str], cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m handler ARGS` in a fresh process, with only `env`'s DATAFLOW_/NCLOUD_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NCLOUD_", "DATAFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "handler", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_on_terminal(*args: str, env: Mapping[str, str], timeout: float = 60) -> tuple[int, str]:
    """`cli`, with stdout on a pseudo-terminal (as a person runs it): the exit status and what it printed there."""
    import pty

    leader, follower = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NCLOUD_", "DATAFLOW_"))}
    with subprocess.Popen(
        [sys.executable, "-m", "handler", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env},
        stdout=follower,
        stderr=subprocess.DEVNULL,
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        status = process.wait(timeout=timeout)
    os.close(leader)
    return status, b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def connected(endpoint: str, **settings: str) -> dict[str, str]:
    """The test credentials and `endpoint` (an emulator's URL), with the other settings a test needs."""
    return {"NCLOUD_ACCESS_KEY": ACCESS_KEY, "NCLOUD_SECRET_KEY": SECRET_KEY, "DATAFLOW_ENDPOINT": endpoint, **settings}


def lose_the_answer_and_the_lookup(api: Emulator, lookup: Fault | None = None, *, execute: bool = True) -> None:
    """The next create runs (unless not `execute`) but its answer is lost, and `lookup` (by default 503, four
    times) answers what follows."""
    api.inject(Fault(drop=True, execute=execute, method="POST"))
    then = lookup or Fault(status=503, method="GET", times=4)

    def after_the_create(request: Received) -> None:
        if request.method == "POST":
            api.inject(then)
            api.on_request = None

    api.on_request = after_the_create


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def upload(key: str, *, at: float | None = None, etag: str = "", sequencer: str = "") -> dict[str, Any]:
    """An S3 put of `key` (URL-encoded as S3 does), stamped `at` epoch seconds, one version of the object."""
    event: dict[str, Any] = load_event("s3-put.json")
    record = event["Records"][0]
    if at is not None:
        record["eventTime"] = datetime.fromtimestamp(at, UTC).isoformat()
    record["s3"]["object"] |= {"key": quote_plus(key, safe="/"), "eTag": etag or f"etag-{key}"}
    record["s3"]["object"]["sequencer"] = sequencer or record["s3"]["object"]["sequencer"]
    return event


def sqs_batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The events as one SQS batch, message ids m0, m1, ..."""
    template = load_event("sqs-s3.json")["Records"][0]
    return {
        "Records": [
            template | {"messageId": f"m{index}", "body": json.dumps(event)} for index, event in enumerate(events)
        ]
    }


def container(clock: FakeClock) -> Launcher:
    """A fresh warm container (a new process on the platform): its own memory, client and signer."""
    return Launcher(Wiring(clock.clocks()))


def runs_of(api: Emulator, parameter: str = "$input") -> list[str]:
    """The value of `parameter` in every execution the emulator holds, oldest first."""
    return [str(execution["parsedParameters"].get(parameter)) for execution in api.all_executions()]


@dataclass
class FakeClock:
    """Wall and monotonic time that move only when the code sleeps or a test advances them."""

    wall_now: float = NOW
    mono_now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def wall(self) -> float:
        return self.wall_now

    def monotonic(self) -> float:
        return self.mono_now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono_now += seconds

    def clocks(self) -> Clocks:
        return Clocks(wall=self.wall, monotonic=self.monotonic, sleep=self.sleep, jitter=lambda: 1.0)


class SleeplessClock:
    """The real wall clock (a live emulator checks signatures against it) that a sleep moves on at once.

    Without it, retries with a no-op sleeper happen within one millisecond and sign alike.
    """

    def __init__(self) -> None:
        self.slept = 0.0

    def wall(self) -> float:
        return time.time() + self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += max(seconds, 0.001)

    def clocks(self) -> Clocks:
        return Clocks(wall=self.wall, sleep=self.sleep)


class JsonLines(logging.Handler):
    """Keeps every record exactly as Powertools formats it for the platform's log stream."""

    def __init__(self, logger: Logger) -> None:
        super().__init__()
        self.setFormatter(logger.registered_formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[JsonLines]:
    capture = JsonLines(app.logger)
    targets = [logging.getLogger("handler"), logging.getLogger(app.logger.name), logging.getLogger(ncp.logger.name)]
    for target in targets:
        target.addHandler(capture)
    yield capture
    for target in targets:
        target.removeHandler(capture)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        yield api


@pytest.fixture
def launcher(clock: FakeClock) -> Launcher:
    return Launcher(Wiring(clock.clocks()))


@pytest.fixture
def config(emulator: Emulator) -> dict[str, str]:
    return connected(emulator.url, DATAFLOW_JOB_ID="gqigvH123456")


@pytest.fixture(autouse=True)
def _handler_logs_at_info() -> Iterator[None]:
    # Every test sees the decision records at INFO, whatever an earlier test or Powertools set.
    logger = logging.getLogger("handler")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()
