"""A local Lambda Runtime API on loopback, and the handler run under the real Runtime Interface Client.

What `sam local invoke` does in Docker, without Docker: the handler string is the template's, the
process is `python -m awslambdaric HANDLER` (the client AWS's Python base images run), and the
invocation goes through the same HTTP API the Lambda service serves, so what the runtime does with
a result and with a raised exception is what Lambda does.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from emulator.server import QuietServer

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/2018-06-01/runtime"
_HANDLER = re.compile(r"^\s+Handler:\s*(?P<handler>\S+)\s*$", re.MULTILINE)


def template_handler(template: Path = ROOT / "template.yaml") -> str:
    """The function's Handler in the SAM template (there is one function)."""
    found = _HANDLER.search(template.read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{template} names no Handler")
    return found["handler"]


@dataclass(frozen=True)
class Invocation:
    """What the runtime posted for one event: a response, or an error with its type."""

    request_id: str
    kind: str  # "response" or "error"
    body: Any
    error_type: str | None = None


class RuntimeAPI:
    """The Runtime API's invocation endpoints: `next` hands out queued events, `response`/`error` answer them."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self.answers: dict[str, queue.Queue[Invocation]] = {}
        self.init_errors: list[Any] = []
        self.lock = threading.Lock()
        self.server = QuietServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> RuntimeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, event: Any, *, timeout_s: float = 30.0, wait_s: float = 60.0) -> Invocation:
        """Queues one event with `timeout_s` of function time, and waits for what the runtime posts."""
        request_id = str(uuid.uuid4())
        answer: queue.Queue[Invocation] = queue.Queue()
        with self.lock:
            self.answers[request_id] = answer
        self.events.put((request_id, json.dumps(event).encode(), time.time() + timeout_s))
        return answer.get(timeout=wait_s)

    def _answered(self, request_id: str, invocation: Invocation) -> None:
        with self.lock:
            answer = self.answers.pop(request_id, None)
        if answer is not None:
            answer.put(invocation)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(_Handler):
            runtime = api

        return Handler


class _Handler(BaseHTTPRequestHandler):
    runtime: RuntimeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(404, b'{"errorMessage": "no such path"}')
            return
        request_id, body, deadline = self.runtime.events.get()  # blocks as the service does until an event comes
        self._reply(
            200,
            body,
            {
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(int(deadline * 1000)),
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:ap-northeast-2:123456789012:function:launcher",
                "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
            },
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        parts = self.path.removeprefix(f"{PREFIX}/").split("/")
        if parts == ["init", "error"]:
            self.runtime.init_errors.append(_json(payload))
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") if parts[2] == "error" else None
            self.runtime._answered(parts[1], Invocation(parts[1], parts[2], _json(payload), error_type))
        else:
            self._reply(404, b'{"errorMessage": "no such path"}')
            return
        self._reply(202, b'{"status": "OK"}')

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload or b"null")
    except ValueError:
        return payload.decode("utf-8", "replace")


class LambdaRuntime:
    """The handler in a process of its own under awslambdaric, polling a local Runtime API."""

    def __init__(self, environ: dict[str, str], *, code: Path = ROOT, handler: str | None = None) -> None:
        self.environ = environ
        self.code = code
        self.handler = handler or template_handler()
        self.api = RuntimeAPI()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LambdaRuntime:
        self.api.__enter__()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(self.code),
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "launcher",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": "ap-northeast-2",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            **self.environ,
        }
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, the runtime client's module
            [sys.executable, "-m", "awslambdaric", self.handler],
            cwd=self.code,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    def invoke(self, event: Any, *, timeout_s: float = 30.0) -> Invocation:
        return self.api.invoke(event, timeout_s=timeout_s)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()  # as the service ends a container: no shutdown hook of the function runs
            self.output = self.process.communicate(timeout=10)[0].decode("utf-8", "replace")
        self.api.__exit__()
