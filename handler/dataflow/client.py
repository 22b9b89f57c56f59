"""Data Flow API client: one session, deadline-bounded attempts, a failure classifier and typed errors."""

from __future__ import annotations

import json
import logging
import math
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

import requests
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NameResolutionError

from handler.clocks import Clocks
from handler.dataflow.retry import RetryPolicy
from handler.dataflow.signing import Credentials, NcpSignatureV2, masked
from handler.dataflow.transport import WATCHDOG, AttemptWatch, watched_session
from handler.errors import RequestError
from handler.jobs import JobSpec
from handler.records import Record

if TYPE_CHECKING:
    from handler.dataflow.pacing import RateLimit
    from handler.dataflow.retry import Operation

log = logging.getLogger(__name__)

SKEW_CODE = "200"  # gateway: authentication failed, which includes a timestamp out of window
# An attempt is not started with less time than this left: it could not finish usefully.
MIN_ATTEMPT_S = 0.25
USER_AGENT = "dataflow-launcher"
# Why a gateway answers 401 with code 200, for the log of an authentication failure.
AUTH_CAUSES = "wrong access key, wrong secret key, or a clock more than 5 minutes off the gateway's"
# A create's 400 bad-state is either a job at its own concurrency limit (maxConcurrentRuns), which a later
# delivery may pass, or a job that cannot run, which a later delivery meets alike. The service documents
# neither wording, so each is read liberally from the message (docs/results.md states the rule).
CONCURRENCY_WORDS = ("concurren", "maxconcurrentruns", "max_concurrent", "simultaneous", "parallel", "동시", "同時")
LIMIT_WORDS = ("limit", "maximum", "too many", "exceed")
RUNNING_WORDS = ("running", "in progress", "executions")
CANNOT_RUN_WORDS = ("runnable", "disabled", "stopped", "draft", "editing", "deleted", "not ready", "status")
LIMIT_HINT = (
    "if the job has a maxConcurrentRuns limit it may be at it: `python -m handler doctor` shows the limit, "
    "and the job's READY and RUNNING runs count against it"
)
# The HTTP method of each operation; the retry rules are keyed by the operation itself.
METHODS: Final[dict[Operation, str]] = {"create": "POST", "list": "GET", "get": "GET"}


class ExecutionRequest(Record):
    __slots__ = ("job", "parameters")

    def __init__(self, job: JobSpec, parameters: Mapping[str, str]) -> None:
        self.job: Final = job
        self.parameters: Final = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"parameters": dict(self.parameters)}
        if self.job.job_condition is not None:
            body["jobCondition"] = dict(self.job.job_condition)
        return body


class CreateAnswer(Record):
    """The answer to a create call; `execution` is empty for a 2xx without a readable JSON body."""

    __slots__ = ("execution", "attempts", "dry_run", "body_lost")

    def __init__(
        self, execution: Mapping[str, Any], attempts: int, dry_run: bool = False, body_lost: bool = False
    ) -> None:
        self.execution: Final = execution
        self.attempts: Final = attempts
        self.dry_run: Final = dry_run
        # The service answered 2xx but the body was cut off: the run exists, its id is unknown.
        self.body_lost: Final = body_lost

    @property
    def execution_id(self) -> str | None:
        value = self.execution.get("jobExecutionId")
        return value if isinstance(value, str) else None

    @property
    def status(self) -> str | None:
        value = self.execution.get("status")
        return value if isinstance(value, str) else None


class Answer(Record):
    """A response whose body was read in full (`content`) or cut off (`content` is None)."""

    __slots__ = ("status", "reason", "headers", "content")

    def __init__(self, status: int, reason: str, headers: Mapping[str, str], content: bytes | None) -> None:
        self.status: Final = status
        self.reason: Final = reason
        self.headers: Final = headers
        self.content: Final = content

    @property
    def text(self) -> str:
        return (self.content or b"").decode("utf-8", "replace")


def error_from_body(status: int, reason: str, text: str) -> tuple[str, str]:
    """(code, message) from either documented error body, else the status and the body's start.

    Gateway errors say both numbers, so that code 200 is never read as HTTP 200.
    """
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        nested = body.get("error")
        if isinstance(nested, dict) and nested.get("errorCode") is not None:
            code = _short(str(nested["errorCode"]))
            message = _short(str(nested.get("message") or reason or "error"))
            details = _short(str(nested.get("details") or ""))
            suffix = f"; {details}" if details else ""
            return code, f"HTTP {status} {message} (gateway code {code}{suffix})"
        if body.get("errorType") is not None:
            return _short(str(body["errorType"])), _short(str(body.get("detail") or body.get("message") or ""))
    snippet = _short(text)
    return str(status), snippet or (reason or f"HTTP {status}")


def bad_state_reading(message: str) -> str:
    """What a create's 400 bad-state says: "limit" (the job's concurrency limit), "cannot-run" or "unclear"."""
    said = message.lower()
    if any(word in said for word in CONCURRENCY_WORDS):
        return "limit"
    if any(word in said for word in LIMIT_WORDS) and any(word in said for word in RUNNING_WORDS):
        return "limit"
    return "cannot-run" if any(word in said for word in CANNOT_RUN_WORDS) else "unclear"


def refused_create(exc: RequestError) -> RequestError | None:
    """A create's bad-state in the words the caller acts on; None where `exc` already says it."""
    if exc.code != "bad-state" or exc.kind != "permanent":
        return None
    reading = bad_state_reading(exc.message)
    said = exc.message or "no detail given"
    if reading == "limit":
        # Nothing was created and the limit frees as runs end: kept, a later delivery submits it.
        message = f"the job is at Data Flow's own limit of concurrent runs (maxConcurrentRuns): {said}"
        return RequestError("deferred", message, kind="retryable", status=exc.status, attempts=exc.attempts)
    if reading == "unclear":
        message = f"{said}; {LIMIT_HINT}"
        return RequestError("bad-state", message, kind="permanent", status=exc.status, attempts=exc.attempts)
    return None


def _short(text: str) -> str:
    return " ".join(text[:300].split())


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (delta or HTTP date), or None when it is not a usable number."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return float(value)
    try:
        seconds = parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _causes(exc: BaseException) -> Iterator[object]:
    """The exception and what it wraps (requests and urllib3 nest the socket error a few deep)."""
    seen: list[object] = []
    pending: list[object] = [exc]
    while pending and len(seen) < 12:
        item = pending.pop()
        if item is None or any(item is other for other in seen):
            continue
        seen.append(item)
        yield item
        if isinstance(item, BaseException):
            pending.extend([item.__context__, item.__cause__, getattr(item, "reason", None)])
            pending.extend(arg for arg in item.args if isinstance(arg, BaseException))


def unsent_failure(exc: BaseException, watch: AttemptWatch, https: bool, spent: float) -> tuple[str, str]:
    """(code, message) for a request that surely never reached the service."""
    causes = list(_causes(exc))
    if any(isinstance(cause, NameResolutionError | socket.gaierror) for cause in causes):
        return "connection", f"the host name did not resolve ({spent:.2f}s)"
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection", f"the connection was refused ({spent:.2f}s)"
    timed_out = any(isinstance(cause, TimeoutError | requests.Timeout) for cause in causes)
    if https and watch.tcp_connected:
        what = "did not finish" if timed_out or watch.cut_off else "failed"
        return "tls", f"the TLS handshake {what} after {spent:.2f}s; nothing was sent"
    if any(isinstance(cause, ssl.SSLError | requests.exceptions.SSLError) for cause in causes):
        return "tls", f"the TLS handshake failed after {spent:.2f}s; nothing was sent"
    if timed_out or watch.cut_off:
        return "connection", f"the connection timed out after {spent:.2f}s"
    return "connection", f"the connection failed before the request was sent ({type(exc).__name__}, {spent:.2f}s)"


class DataflowClient:
    """Creates and lists a job's executions and reads the job; one instance (and Session) per container and thread.

    It sends and classifies; what is retried is the policy's word, and what a failure means for
    the event is its caller's (the way requests' raise_for_status leaves the meaning to the caller).
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        clocks: Clocks | None = None,
        auth: NcpSignatureV2 | None = None,
        pace: RateLimit | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.https = self.endpoint.startswith("https:")
        self.clocks = clocks or Clocks()
        # Clients of one container share their signer, so a clock offset learned by one serves all.
        self.auth = auth or NcpSignatureV2(credentials, self.clocks.wall)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.policy = policy or RetryPolicy()
        # The container's rate limit (DATAFLOW_RATE_LIMIT), shared by the clients of all its threads.
        self.pace = pace
        self.session, self.proxies = watched_session(self.endpoint)

    def prepare(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: object | None = None,
        headers: Mapping[str, str] | None = None,
        offset: float | None = None,
    ) -> requests.PreparedRequest:
        """The exact signed request that is sent (dry runs log it); signed afresh on every call."""
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = f"{self.endpoint}{path}" + (f"?{urlencode(query)}" if query else "")
        prepared.headers = CaseInsensitiveDict({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if headers:
            prepared.headers.update(headers)
        if body is not None:
            prepared.headers["Content-Type"] = "application/json"
            prepared.body = json.dumps(body, allow_nan=False).encode("ascii")
            prepared.headers["Content-Length"] = str(len(prepared.body))
        prepared.hooks = {"response": []}
        # requests reads the jar when a 3xx is answered; an empty one needs no Cookie header computed.
        prepared._cookies = RequestsCookieJar()  # type: ignore[attr-defined]
        return self.auth.sign(prepared, self.auth.offset if offset is None else offset)

    def prepare_create(
        self, request: ExecutionRequest, headers: Mapping[str, str] | None = None
    ) -> requests.PreparedRequest:
        return self.prepare("POST", _executions_path(request.job.job_id), request.job.query(), request.body(), headers)

    def prepare_list(
        self, job_id: str, page: int, limit: int, headers: Mapping[str, str] | None = None
    ) -> requests.PreparedRequest:
        return self.prepare("GET", _executions_path(job_id), _list_query(page, limit), None, headers)

    def create_execution(
        self, request: ExecutionRequest, *, deadline: float | None = None, headers: Mapping[str, str] | None = None
    ) -> CreateAnswer:
        """POSTs one execution; retries only what surely did not run, and never past `deadline`."""
        path = _executions_path(request.job.job_id)
        try:
            answer, attempts = self._send("create", path, request.job.query(), request.body(), deadline, headers)
        except RequestError as exc:
            refused = refused_create(exc)
            if refused is None:
                raise
            raise refused from exc
        if answer.content is None:
            return CreateAnswer({}, attempts, body_lost=True)
        if not answer.content.strip():
            return CreateAnswer({}, attempts)
        execution = json_object(answer)
        if execution is None:
            raise RequestError(
                "bad-response",
                f"HTTP {answer.status} answer is not a JSON object ({_short(answer.text)[:80]!r}); "
                "the execution may exist",
                kind="ambiguous",
                status=answer.status,
                attempts=attempts,
            )
        return CreateAnswer(execution, attempts)

    def list_executions(
        self,
        job_id: str,
        *,
        page: int,
        limit: int,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        answer, attempts = self._send(
            "list", _executions_path(job_id), _list_query(page, limit), None, deadline, headers
        )
        listing = json_object(answer) if answer.content is not None else None
        if listing is None:
            raise RequestError(
                "bad-response",
                "the list of executions is not a JSON object",
                kind="retryable",
                status=answer.status,
                attempts=attempts,
            )
        return listing

    def get_execution(
        self,
        job_id: str,
        execution_id: str,
        *,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One run's own page (getJobExecution), which documents its parameters where the list may not."""
        path = f"{_executions_path(job_id)}/{quote(execution_id, safe='')}"
        return self._read_object(path, deadline, headers, "the execution's page")

    def get_job(self, job_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        """The job (`GET /api/v1/jobs/{jobId}`): its status, maxConcurrentRuns and stored runCondition."""
        return self._read_object(f"/api/v1/jobs/{job_id}", deadline, None, "the job's answer")

    def _read_object(
        self, path: str, deadline: float | None, headers: Mapping[str, str] | None, what: str
    ) -> dict[str, Any]:
        answer, attempts = self._send("get", path, {}, None, deadline, headers)
        found = json_object(answer) if answer.content is not None else None
        if found is None:
            raise RequestError(
                "bad-response",
                f"{what} is not a JSON object",
                kind="retryable",
                status=answer.status,
                attempts=attempts,
            )
        return found

    def probe(self, job_id: str, limit: int) -> tuple[Answer, float | None]:
        """One list request as it is, no retry and no verdict, with the gateway's clock offset (for `doctor`)."""
        query = {"page": "0", "limit": str(limit)}
        answer = self._attempt(self.prepare("GET", _executions_path(job_id), query), None)
        return answer, self._gateway_offset(answer)

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self.clocks.monotonic()

    def _send(
        self,
        operation: Operation,
        path: str,
        query: Mapping[str, str],
        body: object | None,
        deadline: float | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[Answer, int]:
        attempt = 0
        resigned = False
        last_error: RequestError | None = None
        while True:
            remaining = self._remaining(deadline)
            if remaining is not None and remaining < MIN_ATTEMPT_S:
                raise last_error or RequestError(
                    "timeout", "no time left in the invocation to send the request", kind="retryable", attempts=attempt
                )
            attempt += 1
            offset = self.auth.offset
            try:
                if self.pace is not None:
                    self.pace.wait(deadline)
                answer = self._attempt(self.prepare(METHODS[operation], path, query, body, headers, offset), remaining)
            except RequestError as failure:
                # A new error: the transport's says what the attempt saw, this one what the policy makes of it.
                last_error = failure.but(kind=self.policy.transport_kind(operation, failure.kind), attempts=attempt)
                self._pause(attempt, deadline, None, last_error)
                continue
            if 200 <= answer.status < 300:
                return answer, attempt
            error = self._status_error(operation, answer, attempt)
            if answer.status == 401 and error.code == SKEW_CODE:
                if not resigned and self.auth.handle_date_mismatch(self._gateway_offset(answer), offset):
                    resigned = True
                    continue
                log.warning("authentication failed", extra={"likelyCauses": AUTH_CAUSES, **self._skew_facts(answer)})
            last_error = error
            self._pause(attempt, deadline, answer, error)

    def _status_error(self, operation: Operation, answer: Answer, attempt: int) -> RequestError:
        code, message = error_from_body(answer.status, answer.reason, answer.text)
        kind = self.policy.status_kind(operation, answer.status)
        if kind == "retryable" and not self.policy.retries_now(kind, answer.status, code):
            message += "; not retried in this invocation (it resets with the quota's day or month)"
        return RequestError(
            code,
            f"{message}; the execution may exist" if kind == "ambiguous" else message,
            kind=kind,
            status=answer.status,
            attempts=attempt,
        )

    def _attempt(self, prepared: requests.PreparedRequest, remaining: float | None) -> Answer:
        """One request, its whole answer read inside the time left (a dripping server is cut off)."""
        read_timeout = self.read_timeout if remaining is None else min(self.read_timeout, remaining)
        connect_timeout = self.connect_timeout if remaining is None else min(self.connect_timeout, remaining)
        started = time.monotonic()  # real time spent, for messages, whatever clock the deadline uses
        # The whole attempt (connect, send, every byte of the answer) ends by the deadline, and
        # without one (the command line) after the two timeouts: a dripping server holds nothing.
        limit = connect_timeout + read_timeout if remaining is None else remaining
        with WATCHDOG.attempt(limit) as watch:
            try:
                response = self.session.send(
                    prepared,
                    stream=True,
                    timeout=(connect_timeout, read_timeout),
                    allow_redirects=False,
                    proxies=self.proxies,
                )
            except requests.RequestException as exc:
                raise self._transport_error(exc, watch, time.monotonic() - started) from exc
            try:
                content: bytes | None = response.content
            except requests.RequestException:
                content = None
            if watch.cut_off:
                # Headers cut short read as a complete empty body: only the status line can be trusted.
                content = None
            if content is None:
                response.close()  # the status line is still the service's word; the body is lost
        return Answer(response.status_code, response.reason or "", response.headers, content)

    def _transport_error(self, exc: requests.RequestException, watch: AttemptWatch, spent: float) -> RequestError:
        # "Surely not sent" needs evidence: the watched connection saw the attempt and no full request
        # left, or the error itself says the connection never opened. Otherwise it may have run.
        unobserved = watch.connection is None and not isinstance(
            exc, requests.ConnectTimeout | requests.exceptions.SSLError
        )
        if unobserved and not any(
            isinstance(c, NameResolutionError | ConnectionRefusedError | socket.gaierror) for c in _causes(exc)
        ):
            return RequestError(
                "unknown-outcome",
                f"{type(exc).__name__} after {spent:.2f}s, on a connection this client could not observe; "
                "the execution may exist",
                kind="ambiguous",
            )
        if not watch.request_sent:
            code, message = unsent_failure(exc, watch, self.https, spent)
            return RequestError(code, message, kind="retryable")
        if watch.cut_off:
            message = f"no complete answer within {spent:.2f}s (the attempt's time limit)"
        elif isinstance(exc, requests.Timeout):
            message = f"no answer within {spent:.2f}s"
        else:
            message = f"the connection dropped after the request was sent ({spent:.2f}s)"
        return RequestError("unknown-outcome", f"{message}; the execution may exist", kind="ambiguous")

    def _gateway_offset(self, answer: Answer) -> float | None:
        """Gateway clock minus ours, from the answer's Date header, when it has a usable one."""
        try:
            gateway = parsedate_to_datetime(answer.headers.get("Date", "")).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return gateway - self.clocks.wall()

    def _skew_facts(self, answer: Answer) -> dict[str, float]:
        offset = self._gateway_offset(answer)
        return {} if offset is None else {"gatewayClockOffsetSeconds": round(offset, 1)}

    def _pause(self, attempt: int, deadline: float | None, answer: Answer | None, error: RequestError) -> None:
        """Backs off with full jitter, or raises `error` when the policy, attempts or time say stop."""
        if not self.policy.retries_now(error.kind, error.status, error.code) or self.policy.exhausted(attempt):
            raise error
        asked = retry_after_seconds(answer.headers.get("Retry-After"), self.clocks.wall()) if answer else None
        if asked is not None and asked > self.policy.retry_after_cap:
            # Asked to wait longer than an invocation should: retrying sooner would only spend quota.
            raise error.but(message=f"{error.message}; the gateway asked to retry after {asked:g} s")
        delay = self.policy.backoff(attempt, self.clocks.jitter, asked)
        remaining = self._remaining(deadline)
        if remaining is not None and delay + MIN_ATTEMPT_S > remaining:
            raise error
        log.info("retrying", extra={"attempt": attempt, "error": str(error), "delayMs": round(delay * 1000)})
        self.clocks.sleep(delay)


def _executions_path(job_id: str) -> str:
    return f"/api/v1/jobs/{job_id}/executions"


def _list_query(page: int, limit: int) -> dict[str, str]:
    return {"page": str(page), "limit": str(limit)}


def json_object(answer: Answer) -> dict[str, Any] | None:
    """An answer's body as a JSON object; None for anything else (a proxy's page, an array, nesting too deep)."""
    try:
        body = json.loads(answer.content or b"")
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def describe_prepared(prepared: requests.PreparedRequest) -> dict[str, Any]:
    """A loggable view of a signed request with the signature masked."""
    body = prepared.body.decode("utf-8") if isinstance(prepared.body, bytes) else prepared.body
    return {
        "method": prepared.method,
        "url": prepared.url,
        "headers": masked(dict(prepared.headers)),
        "body": json.loads(body) if body else None,
    }
