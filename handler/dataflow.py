"""Data Flow API client: one session, explicit timeouts, a retry classifier and typed errors."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from handler.errors import SubmitError
from handler.jobs import JobSpec
from handler.signing import Credentials, NcpSignatureV2, masked

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503})
# 504 (gateway code 510, endpoint timeout) means the backend may have run the request.
UNKNOWN_OUTCOME_STATUSES = frozenset({504})
SKEW_CODE = "200"  # gateway: authentication failed, which includes a timestamp out of window
SKEW_TOLERANCE_S = 60.0
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0
# An attempt is not started with less time than this left: it could not finish usefully.
MIN_ATTEMPT_S = 0.25


@dataclass(frozen=True)
class ExecutionRequest:
    job: JobSpec
    parameters: Mapping[str, str]

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"parameters": dict(self.parameters)}
        if self.job.job_condition is not None:
            body["jobCondition"] = dict(self.job.job_condition)
        return body


@dataclass(frozen=True)
class Submitted:
    """The answer to a create call; `execution` is empty for a 2xx without a JSON body."""

    execution: Mapping[str, Any]
    attempts: int
    dry_run: bool = False

    @property
    def execution_id(self) -> str | None:
        value = self.execution.get("jobExecutionId")
        return value if isinstance(value, str) else None

    @property
    def status(self) -> str | None:
        value = self.execution.get("status")
        return value if isinstance(value, str) else None


@dataclass
class Clocks:
    """Time sources, injectable so tests never sleep: wall clock for signing, monotonic for deadlines."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = field(default=random.random)


def error_from_response(response: requests.Response) -> tuple[str, str]:
    """(code, message) from either documented error body, else the status and the body's start."""
    text = response.text or ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        nested = body.get("error")
        if isinstance(nested, dict) and nested.get("errorCode") is not None:
            message = nested.get("message") or ""
            details = nested.get("details")
            return str(nested["errorCode"]), f"{message} ({details})" if details else str(message)
        if body.get("errorType") is not None:
            return str(body["errorType"]), str(body.get("detail") or body.get("message") or "")
    snippet = " ".join(text[:300].split())
    return str(response.status_code), snippet or (response.reason or f"HTTP {response.status_code}")


def _may_have_been_sent(exc: requests.ConnectionError) -> bool:
    """False only when the request surely never left: refused, unresolvable, or connect timeout."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    return not isinstance(inner, NewConnectionError | NameResolutionError)


class DataflowClient:
    """Creates and reads job executions; one instance (and one Session) per warm container."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        max_attempts: int = 4,
        clocks: Clocks | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.clocks = clocks or Clocks()
        self.auth = NcpSignatureV2(credentials, self.clocks.wall)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "dataflow-launcher"

    def prepare(self, request: ExecutionRequest) -> requests.PreparedRequest:
        """The exact signed request create_execution would send first (used by dry runs)."""
        return self.session.prepare_request(self._create_request(request))

    def _create_request(self, request: ExecutionRequest) -> requests.Request:
        return requests.Request(
            "POST",
            f"{self.endpoint}/api/v1/jobs/{request.job.job_id}/executions",
            params=request.job.query(),
            json=request.body(),
            auth=self.auth,
        )

    def create_execution(self, request: ExecutionRequest, *, deadline: float | None = None) -> Submitted:
        """POSTs one execution; retries only what surely did not run, and never past `deadline`."""
        response, attempts = self._send(self._create_request(request), deadline)
        try:
            execution = response.json() if response.content else {}
        except ValueError:
            execution = {}
        return Submitted(execution if isinstance(execution, dict) else {}, attempts)

    def list_executions(
        self, job_id: str, *, page: int = 0, limit: int = 20, deadline: float | None = None
    ) -> dict[str, Any]:
        url = f"{self.endpoint}/api/v1/jobs/{job_id}/executions"
        response, _ = self._send(
            requests.Request("GET", url, params={"page": page, "limit": limit}, auth=self.auth),
            deadline,
            idempotent=True,
        )
        return self._json_object(response)

    def get_execution(self, job_id: str, execution_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        url = f"{self.endpoint}/api/v1/jobs/{job_id}/executions/{execution_id}"
        response, _ = self._send(requests.Request("GET", url, auth=self.auth), deadline, idempotent=True)
        return self._json_object(response)

    @staticmethod
    def _json_object(response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise SubmitError(
                "bad-response", "the answer is not JSON", retryable=True, status=response.status_code
            ) from exc
        if not isinstance(body, dict):
            raise SubmitError(
                "bad-response", "the answer is not a JSON object", retryable=True, status=response.status_code
            )
        return body

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self.clocks.monotonic()

    def _send(
        self, request: requests.Request, deadline: float | None, *, idempotent: bool = False
    ) -> tuple[requests.Response, int]:
        attempt = 0
        resigned = False
        last_error: SubmitError | None = None
        while True:
            remaining = self._remaining(deadline)
            if remaining is not None and remaining < MIN_ATTEMPT_S:
                raise last_error or SubmitError(
                    "timeout", "no time left in the invocation to send the request", retryable=True, attempts=attempt
                )
            attempt += 1
            read_timeout = self.read_timeout if remaining is None else min(self.read_timeout, remaining)
            connect_timeout = self.connect_timeout if remaining is None else min(self.connect_timeout, remaining)
            # Prepared afresh each attempt so every attempt carries a fresh timestamp and signature.
            prepared = self.session.prepare_request(request)
            try:
                response = self.session.send(prepared, timeout=(connect_timeout, read_timeout), allow_redirects=False)
            except requests.ConnectionError as exc:
                if isinstance(exc, requests.exceptions.SSLError):
                    raise SubmitError(
                        "tls", f"TLS handshake with {self.endpoint} failed", retryable=False, attempts=attempt
                    ) from exc
                if _may_have_been_sent(exc) and not idempotent:
                    raise SubmitError(
                        "unknown-outcome",
                        "the connection dropped after the request was sent; the execution may exist",
                        retryable=False,
                        attempts=attempt,
                    ) from exc
                last_error = SubmitError(
                    "connection", f"could not connect to {self.endpoint}", retryable=True, attempts=attempt
                )
                self._pause(attempt, deadline, None, last_error)
                continue
            except requests.Timeout as exc:
                if idempotent:
                    last_error = SubmitError(
                        "timeout", "no answer within the read timeout", retryable=True, attempts=attempt
                    )
                    self._pause(attempt, deadline, None, last_error)
                    continue
                raise SubmitError(
                    "unknown-outcome",
                    f"no answer within {read_timeout:.2f}s; the execution may exist",
                    retryable=False,
                    attempts=attempt,
                ) from exc
            except requests.RequestException as exc:
                raise SubmitError(
                    "request", f"{type(exc).__name__} sending to {self.endpoint}", retryable=False, attempts=attempt
                ) from exc
            # Only 2xx is success: redirects are not followed, and a 3xx means nothing ran.
            if 200 <= response.status_code < 300:
                return response, attempt
            code, message = error_from_response(response)
            status = response.status_code
            if status in UNKNOWN_OUTCOME_STATUSES and not idempotent:
                raise SubmitError(
                    "unknown-outcome",
                    f"{status} {code}: {message}; the execution may exist",
                    retryable=False,
                    status=status,
                    attempts=attempt,
                )
            if status == 401 and code == SKEW_CODE and not resigned and self._correct_skew(response):
                resigned = True
                continue
            error = SubmitError(
                code,
                message,
                retryable=status in RETRY_STATUSES or status in UNKNOWN_OUTCOME_STATUSES,
                status=status,
                attempts=attempt,
            )
            if not error.retryable:
                raise error
            last_error = error
            self._pause(attempt, deadline, response, error)

    def _correct_skew(self, response: requests.Response) -> bool:
        """Adopts the gateway's clock when ours is off by more than a minute; True if it was."""
        date = response.headers.get("Date")
        if not date:
            return False
        try:
            gateway = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return False
        skew = gateway - self.clocks.wall()
        if abs(skew) < SKEW_TOLERANCE_S:
            return False
        log.warning("clock skew corrected", extra={"skewSeconds": round(skew, 1)})
        self.auth.skew = skew
        return True

    def _pause(
        self, attempt: int, deadline: float | None, response: requests.Response | None, error: SubmitError
    ) -> None:
        """Backs off with full jitter, or raises `error` when attempts or time have run out."""
        if attempt >= self.max_attempts:
            raise error
        delay = self.clocks.jitter() * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        retry_after = response.headers.get("Retry-After", "") if response is not None else ""
        if retry_after.isdigit():
            delay = max(delay, min(float(retry_after), BACKOFF_CAP_S))
        remaining = self._remaining(deadline)
        if remaining is not None and delay + MIN_ATTEMPT_S > remaining:
            raise error
        log.info("retrying", extra={"attempt": attempt, "error": str(error), "delayMs": round(delay * 1000)})
        self.clocks.sleep(delay)


def describe_prepared(prepared: requests.PreparedRequest) -> dict[str, Any]:
    """A loggable view of a signed request with the signature masked."""
    body = prepared.body.decode("utf-8") if isinstance(prepared.body, bytes) else prepared.body
    return {
        "method": prepared.method,
        "url": prepared.url,
        "headers": masked(dict(prepared.headers)),
        "body": json.loads(body) if body else None,
    }
