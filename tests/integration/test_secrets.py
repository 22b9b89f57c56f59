"""NCP keys from Secrets Manager through a loopback fake of the Parameters and Secrets extension."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from emulator.server import Emulator
from handler import app
from handler.clocks import Clocks
from handler.errors import ConfigError
from handler.launcher import Launcher
from handler.secrets import SecretReader
from handler.wiring import Wiring
from tests.conftest import ACCESS_KEY, SECRET_KEY, JsonLines, LambdaContextStub, load_event

SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:ncp-keys-AbCdEf"
TOKEN = "session-token-from-lambda"


@dataclass
class FakeExtension:
    """Answers like the extension: the GetSecretValue JSON for a known id with the right token."""

    secret_string: str = json.dumps({"NCLOUD_ACCESS_KEY": ACCESS_KEY, "NCLOUD_SECRET_KEY": SECRET_KEY})
    not_ready: int = 0  # answer "not ready" this many times first, as during a cold start
    requests: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, secret_id: str, token: str | None) -> tuple[int, bytes]:
        self.requests.append({"secretId": secret_id, "token": token})
        if self.not_ready:
            self.not_ready -= 1
            return 400, b"not ready to serve traffic, please wait"
        if token != TOKEN:
            return 401, b"unauthorized"
        if secret_id != SECRET_ARN:
            return 404, b'{"__type": "ResourceNotFoundException", "message": "Secrets Manager can\'t find the secret"}'
        body = {"ARN": SECRET_ARN, "Name": "ncp-keys", "SecretString": self.secret_string, "VersionId": "v1"}
        return 200, json.dumps(body).encode()


@pytest.fixture
def extension() -> Iterator[tuple[FakeExtension, int]]:
    fake = FakeExtension()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            status, body = fake.answer(query["secretId"][0], self.headers.get("X-Aws-Parameters-Secrets-Token"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake, server.server_port
    server.shutdown()
    server.server_close()


def reader(port: int, sleeps: list[float] | None = None) -> SecretReader:
    environ = {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), "AWS_SESSION_TOKEN": TOKEN}
    return SecretReader(environ, sleep=(sleeps if sleeps is not None else []).append)


def test_keys_come_from_the_secret_once_per_container_and_never_show(
    extension: tuple[FakeExtension, int], monkeypatch: pytest.MonkeyPatch, logs: JsonLines
) -> None:
    fake, port = extension
    fake.not_ready = 2
    sleeps: list[float] = []
    monkeypatch.setattr(app, "secrets", reader(port, sleeps))
    monkeypatch.setattr(app, "launcher", Launcher(Wiring(Clocks(sleep=lambda _: None))))
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:
        for name in ("NCLOUD_ACCESS_KEY", "NCLOUD_SECRET_KEY", "DATAFLOW_ROUTES"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NCLOUD_CREDENTIALS_SECRET", SECRET_ARN)
        monkeypatch.setenv("DATAFLOW_ENDPOINT", api.url)
        monkeypatch.setenv("DATAFLOW_JOB_ID", "gqigvH123456")
        # Three events, three runs: with equal parameters, a run created after an event covers it.
        monkeypatch.setenv("DATAFLOW_PARAMETERS", '{"$event": "{key}{schedule}"}')
        results = [
            app.lambda_handler(load_event(name), LambdaContextStub())
            for name in ("s3-put.json", "schedule-classic.json", "scheduler-input.json")
        ]
        # A lookup and a create per event, all signed with the secret's keys.
        assert [request.verdict for request in api.received] == ["ok"] * 6
    assert [request["token"] for request in fake.requests] == [TOKEN] * 3  # two "not ready", then the answer
    assert sleeps == [0.1, 0.2]
    assert all(result["submitted"] for result in results)
    assert SECRET_KEY not in logs.text + json.dumps(results)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secret_id": "arn:aws:secretsmanager:ap-northeast-2:1:secret:other"}, "the extension answered HTTP 404"),
        ({"token": ""}, "the extension answered HTTP 401"),
        ({"secret_string": "plain text"}, "its SecretString is not a JSON object"),
        ({"secret_string": json.dumps({"NCLOUD_ACCESS_KEY": ACCESS_KEY})}, "its SecretString has no NCLOUD_SECRET_KEY"),
        ({"secret_string": json.dumps([SECRET_KEY])}, "its SecretString is not a JSON object"),
    ],
)
def test_secret_problems_are_configuration_errors_naming_the_id_not_the_value(
    extension: tuple[FakeExtension, int], change: dict[str, str], reason: str
) -> None:
    fake, port = extension
    fake.secret_string = change.get("secret_string", fake.secret_string)
    environ = {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port), "AWS_SESSION_TOKEN": change.get("token", TOKEN)}
    secret_id = change.get("secret_id", SECRET_ARN)
    with pytest.raises(ConfigError) as caught:
        SecretReader(environ, sleep=lambda _: None).keys(secret_id)
    [problem] = caught.value.problems
    assert problem.where == "NCLOUD_CREDENTIALS_SECRET"
    assert problem.reason.startswith(f"cannot read secret {secret_id!r}: {reason}")
    assert SECRET_KEY not in str(caught.value)
    assert len(fake.requests) == 1  # refused for good: not retried


def test_an_extension_that_never_answers_is_named_after_its_retries() -> None:
    sleeps: list[float] = []
    with pytest.raises(ConfigError) as caught:
        reader(1, sleeps).keys(SECRET_ARN)  # nothing listens on port 1
    assert "the extension on localhost:1 did not answer" in str(caught.value)
    assert SECRET_ARN in str(caught.value)
    assert sleeps == [0.1, 0.2, 0.4, 0.8]


def test_a_secret_and_keys_together_are_one_configuration_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCLOUD_CREDENTIALS_SECRET", SECRET_ARN)
    monkeypatch.setenv("NCLOUD_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("NCLOUD_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("DATAFLOW_JOB_ID", "J1")
    monkeypatch.delenv("DATAFLOW_ROUTES", raising=False)
    with pytest.raises(ConfigError) as caught:
        app.lambda_handler(load_event("s3-put.json"), LambdaContextStub())
    assert [problem.where for problem in caught.value.problems] == ["NCLOUD_CREDENTIALS_SECRET"]
    assert SECRET_KEY not in str(caught.value)
