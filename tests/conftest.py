"""Shared fixtures: sample events, a controllable clock, the loopback emulator and a launcher."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
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


class S3Server:
    """moto's S3 API on loopback with request authentication ON: a wrong signature is refused with 403."""

    def __init__(self) -> None:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.iam.models import iam_backends
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.s3.models import s3_backends

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.access_key = ""
        self.secret_key = ""

    @property
    def url(self) -> str:
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> S3Server:
        from moto import settings as moto_settings
        from moto.core.authorization import ActionAuthenticatorMixin

        self.server.start()
        # A user allowed every S3 action; its keys are the only ones the server then accepts.
        user = f"launcher-{id(self)}"
        self.iam.create_user("us-east-1", user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        self.iam.put_user_policy(user, "s3", json.dumps(policy))
        key = self.iam.create_access_key(user)
        self.access_key, self.secret_key = key.access_key_id, key.secret_access_key
        # moto's documented switch: authenticate every request from now on (the default is never).
        self.previous_no_auth_count = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        return self

    def stop(self) -> None:
        from moto import settings as moto_settings

        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = self.previous_no_auth_count
        self.server.stop()

    def role_credentials(self) -> tuple[str, str, str]:
        """(key, secret, session token) of a role session allowed every S3 action, as Lambda's role gets them."""
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.sts.models import sts_backends

        name = f"launcher-role-{uuid.uuid4().hex[:8]}"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = self.iam.create_role(name, json.dumps(trust), "/", None, "", [], None)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        self.iam.put_role_policy(name, "s3", json.dumps(policy))
        session = sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assume_role("us-east-1", "launcher", role.arn, "", 900, "")
        return session.access_key_id, session.secret_access_key, session.session_token

    def put(self, bucket: str, key: str, body: bytes, *, modified: float | None = None) -> None:
        """An object as an upload leaves it; `modified` sets its LastModified (epoch seconds), as a multipart
        upload's start or a test's fake clock would have it."""
        stored = self.s3.put_object(bucket, key, body)
        if modified is not None:
            stored.last_modified = datetime.fromtimestamp(modified, UTC).replace(tzinfo=None)

    def environ(self) -> dict[str, str]:
        """The AWS environment a Lambda function signs with: this server's keys."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def bucket(self, name: str, keys: Mapping[str, bytes] | None = None) -> str:
        """A fresh bucket (named for the test, so no test sees another's) holding `keys`."""
        self.s3.create_bucket(name, "us-east-1")
        for key, body in (keys or {}).items():
            self.s3.put_object(name, key, body)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()
