"""A loopback HTTP server that behaves like the Data Flow API behind the NCP API Gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WINDOW_MS = 5 * 60 * 1000
KST = timezone(timedelta(hours=9))
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CREATE = re.compile(r"/api/v1/jobs/(?P<job>[^/]+)/executions")
_ONE = re.compile(r"/api/v1/jobs/(?P<job>[^/]+)/executions/(?P<execution>[^/]+)")
_JOB = re.compile(r"/api/v1/jobs/(?P<job>[^/]+)")
_CONDITION_FIELDS = {"workerType", "numWorker", "timeout", "nrn", "scriptPath", "logPath"}
STATUSES = ("READY", "RUNNING", "COMPLETED", "FAILED", "CANCELED")
GOING = ("READY", "RUNNING")  # the statuses of an execution that is still going
COUNT_READINGS = ("total", "page", "missing", "string")
_RATE_MESSAGES = {"410": "Throttle Limited", "420": "Rate Limited"}
AT_LIMIT_READINGS = ("refuse", "queue")
JOB_READINGS = ("current", "legacy", "none")
# Job statuses under which a create is accepted: the newer pages say READY, the older RUNNABLE, and a job
# whose own status is RUNNING (an execution in progress) still takes more.
RUNNABLE = ("READY", "RUNNABLE", "RUNNING")
LIMIT_DETAIL = (
    "job {job} has reached its maximum number of concurrent executions (maxConcurrentRuns {limit}): "
    "{going} executions are READY or RUNNING"
)
NOT_RUNNABLE_DETAIL = "job {job} is not runnable in its current status ({status})"


@dataclass
class Fault:
    """What to do to the next `times` authenticated requests (optionally only one method)."""

    status: int | None = None
    body: dict[str, Any] | None = None
    execute: bool = False  # run the request before answering with `status` or dropping
    drop: bool = False  # close the connection without any answer
    hold: float = 0.0  # wait this long (or until release) before answering
    times: int = 1
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # send exactly these bytes as the body (b"" for an empty 2xx)
    drip: float = 0.0  # send the whole answer one byte at a time, this many seconds apart
    cut: bool = False  # announce the full body, send half of it, then close the connection


@dataclass(frozen=True)
class Ending:
    """How a created run ends: `status`, `after` seconds on the emulator's clock, for the runs it picks.

    It picks every run, or (`where`) those whose parameter has that value, or (`every`) the job's Nth, 2Nth...
    created run; the first ending that picks a run decides it, and a run none picks stays READY.
    """

    status: str
    after: float = 0.0
    where: tuple[str, str] | None = None
    every: int | None = None

    def picks(self, parameters: dict[str, Any], ordinal: int) -> bool:
        if self.where is not None and parameters.get(self.where[0]) != self.where[1]:
            return False
        return self.every is None or ordinal % self.every == 0


class QuietServer(ThreadingHTTPServer):
    """A threading server for which a peer that hangs up is traffic, not a fault."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a deadline cut, a timeout, a runtime process that ends while
        # it waits for the next event) resets its connection: nothing to report.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: str
    verdict: str = "ok"
    status: int | None = None
    expected_string_to_sign: str | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def expected_signature(secret: str, method: str, path: str, timestamp: str, access_key: str) -> str:
    # Written independently of handler.signing so one bug cannot hide itself on both sides.
    message = "\n".join([f"{method} {path}", timestamp, access_key]).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def gateway_error(code: str, message: str, details: str = "") -> dict[str, Any]:
    return {"error": {"errorCode": code, "message": message, "details": details}}


def dataflow_error(error_type: str, detail: str) -> dict[str, Any]:
    return {"errorType": error_type, "detail": detail}


class Emulator:
    """Start with `with Emulator() as api:`; inspect `received` and `executions` afterwards.

    Every keyword option below is also an attribute of the same name that a test may change while
    the emulator runs; each default is the emulator's original behaviour.

    Parameter echo (what the public docs leave open):
      `echo` -- how executions show their parameters: "object", "list" (key/value items) or "none".
      `echo_only` -- limit the echo to those names (a job that declares only some).
      `normalise_echo` -- answers (list, get and create) show `jobCondition.workerType` upper-cased,
        `scriptPath`/`logPath` without a trailing "/", and a parameter value "true"/"false" as JSON
        true/false. The stored execution (`executions`) keeps what was sent.
      `create_echo` -- False: the create answer shows `parsedParameters: []` (the seed page's own
        example) while list and get still echo in the configured reading.

    Listing shapes, `GET /api/v1/jobs/{job}/executions?page=&limit=`:
      `newest_first` -- True: newest execution first; False: oldest first.
      `count_means` -- what `count` is: "total" (all the job's executions), "page" (the items in this
        answer, the reference's "number of response results"), "missing" (no `count` key) or
        "string" (the total as a decimal string).
      `limit_cap` -- the service serves at most this many items a page and says the capped value in
        the answer's `limit` (pages are cut at the capped size). With a cap any limit >= 1 is
        accepted; without one a limit outside 1-1000 is a bad parameter, as before.
      `prune_after_page` / `prune_count` -- retention running between page requests: every time
        page `prune_after_page` of a job is served, the `prune_count` oldest executions of that job
        are deleted (after the page is cut, before the answer leaves; they are kept in `pruned`).
        `prune(job_id, count)` does the same on demand, e.g. from `on_request`.
      `omit_list` -- a 200 listing answer without a `list` key (count, page and limit stay).
      `list_echo` -- the list's own echo reading ("object", "list" or "none") where it differs from a
        run's own page (`GET .../executions/{id}`, which keeps `echo`): the reference documents
        `parsedParameters` on the run's page and describes the list's items only by reference.
      `flip_top` -- newest first, a run of an earlier second sorts above the newest second (a 1 s flip at
        a second's boundary in a burst): the newest run of the second below the top's is listed first.
      `vanish_after_page` -- the first time that page of a job is served, the job's newest run leaves
        the listing (kept in `vanished`): every later page shifts up by one.
      `hide(job, id)` / `reveal(job, id)` -- a run that exists but is not listed yet (a late run: its
        create committed after newer runs were listed); hidden runs count in no total either.

    Gateway limits, applied to every authenticated request before a fault is taken or the request
    executes (a request refused here consumes no fault and creates nothing):
      `quota` -- after this many accepted requests, every further one is answered 429 with
        errorCode "400" "Quota Exceeded".
      `rate_limit` / `burst` -- a token bucket on the injected `clock`: `burst` tokens at first,
        refilled at `rate_limit` per second up to `burst`; each accepted request takes one. A request
        finding no token is answered 429 with errorCode `rate_limit_code` ("420" "Rate Limited" or
        "410" "Throttle Limited").
      `retry_after` -- seconds sent as a `Retry-After` header on the rate limit's 429s (not on
        quota's); None sends no header, as the gateway documents none.
      `throttled` counts every 429 the limits answered (rate and quota), `quota_refused` the quota
        ones; `accepted` counts the requests the limits let through.

    The job itself, `GET /api/v1/jobs/{job}` and the create's 400 `bad-state` (the reference pages of
    getJob, September 2026 and later, list jobId, name, type, status and maxConcurrentRuns; the rest
    of the answer and the refusals' wording are assumed):
      `max_concurrent_runs` -- job id -> its `maxConcurrentRuns`; a job not named has no limit (its
        answer says `maxConcurrentRuns: null`). Runs READY or RUNNING count against the limit.
      `at_limit` -- what a create meets with the job's limit already going: "refuse" (400 `bad-state`,
        detail `limit_detail` formatted with job, limit and going; nothing is created) or "queue"
        (accepted, answered and kept READY like any create: the service would hold it READY until a run of
        the job ends).
      `job_status` -- job id -> its status (default "READY"). A status outside RUNNABLE (DRAFT,
        STOPPED, EDITING, DELETED, a disabled job) refuses every create with 400 `bad-state`, detail
        `NOT_RUNNABLE_DETAIL`: the other bad-state, one a later delivery would meet alike.
      `job_reading` -- "current": the job answer with `maxConcurrentRuns`; "legacy": without that key
        (a service before the September 2026 release); "none": no such endpoint, 404 gateway "300".
        The answer: jobId, name ("job-" + id), type "SCRIPT", status, maxConcurrentRuns,
        lastExecutionStatus (of its newest run, or null), createdDate, updatedDate and runCondition
        (the stored workerType, numWorker and timeout a create without jobCondition uses).

    Runs that end (the service runs a job; this emulator only keeps its runs, READY until something ends them):
      `endings` -- `Ending`s deciding, when a run is created, whether and when it ends: at `after` seconds
        on the injected `clock` it takes the ending's status (seen by the next request). Runs planted as
        history, and runs no ending picks, keep their status until `finish` or `set_status`.

    Latency:
      `answer_delay` -- seconds every request waits (real time, `time.sleep`) before it is read and
        served, like a distant API (the bench); a float, or a callable returning the seconds for
        each request (e.g. `lambda: random.uniform(0.05, 0.1)`). 0 (the default) never sleeps.

    The test's hook:
      `on_request` -- called with each request before its answer leaves. An exception it raises
        drops that connection (no answer leaves) and is raised again by `stop()`, so by the end of
        the `with` block, unless the test took it with `take_hook_errors()`.
    """

    def __init__(
        self,
        keys: dict[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        jobs: set[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[Received], None] | None = None,
        echo: str = "object",
        echo_only: frozenset[str] | None = None,
        newest_first: bool = True,
        normalise_echo: bool = False,
        create_echo: bool = True,
        count_means: str = "total",
        limit_cap: int | None = None,
        prune_after_page: int | None = None,
        prune_count: int = 1,
        omit_list: bool = False,
        list_echo: str | None = None,
        flip_top: bool = False,
        vanish_after_page: int | None = None,
        rate_limit: float | None = None,
        burst: int = 1,
        rate_limit_code: str = "420",
        retry_after: float | None = None,
        quota: int | None = None,
        answer_delay: float | Callable[[], float] = 0.0,
        max_concurrent_runs: dict[str, int] | None = None,
        at_limit: str = "refuse",
        limit_detail: str = LIMIT_DETAIL,
        job_status: dict[str, str] | None = None,
        job_reading: str = "current",
        endings: Sequence[Ending] = (),
    ) -> None:
        if count_means not in COUNT_READINGS:
            raise ValueError(f"count_means must be one of {COUNT_READINGS}, not {count_means!r}")
        if at_limit not in AT_LIMIT_READINGS:
            raise ValueError(f"at_limit must be one of {AT_LIMIT_READINGS}, not {at_limit!r}")
        if job_reading not in JOB_READINGS:
            raise ValueError(f"job_reading must be one of {JOB_READINGS}, not {job_reading!r}")
        if rate_limit_code not in _RATE_MESSAGES:
            raise ValueError(f"rate_limit_code must be one of {tuple(_RATE_MESSAGES)}, not {rate_limit_code!r}")
        self.keys = dict(keys or {"DEMOACCESSKEY": "demo-secret-key"})
        self.echo = echo
        self.echo_only = echo_only
        self.newest_first = newest_first
        self.normalise_echo = normalise_echo
        self.create_echo = create_echo
        self.count_means = count_means
        self.limit_cap = limit_cap
        self.prune_after_page = prune_after_page
        self.prune_count = prune_count
        self.omit_list = omit_list
        self._listing_quirks(list_echo, flip_top, vanish_after_page)
        self.rate_limit = rate_limit
        self.burst = burst
        self.rate_limit_code = rate_limit_code
        self.retry_after = retry_after
        self.quota = quota
        self.max_concurrent_runs = dict(max_concurrent_runs or {})
        self.at_limit = at_limit
        self.limit_detail = limit_detail
        self.job_status = dict(job_status or {})
        self.job_reading = job_reading
        self._runs_end(endings)
        self.throttled = 0
        self.quota_refused = 0
        self.accepted = 0
        self._bucket: tuple[float, float] | None = None  # (tokens, clock reading) once the first request came
        self.clock = clock
        self.jobs = jobs
        self.received: list[Received] = []
        self.executions: dict[str, list[dict[str, Any]]] = {}
        self.pruned: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.answer_delay = answer_delay
        self.on_request = on_request
        # What on_request raised, in the server's threads: stop() raises the first into the test.
        self.hook_errors: list[Exception] = []
        self.lock = threading.Lock()
        self.creating = threading.Lock()
        self.released = threading.Event()
        self.host = host
        self.server = QuietServer((host, port), self._handler_class())
        self.thread: threading.Thread | None = None

    def _listing_quirks(self, list_echo: str | None, flip_top: bool, vanish_after_page: int | None) -> None:
        self.list_echo = list_echo
        self.flip_top = flip_top
        self.vanish_after_page = vanish_after_page
        self.vanished: list[dict[str, Any]] = []
        self.hidden: set[str] = set()

    def _runs_end(self, endings: Sequence[Ending]) -> None:
        for ending in endings:
            if ending.status not in STATUSES:
                raise ValueError(f"an ending's status must be one of {STATUSES}, not {ending.status!r}")
        self.endings = list(endings)
        self._created: dict[str, int] = {}  # job -> runs created so far, for `Ending.every`
        self._ends: list[tuple[float, Ending, dict[str, Any]]] = []  # (clock reading, ending, run) still to come

    def _schedule_end(self, execution: dict[str, Any]) -> None:
        """Decides, as a run is created, whether and when it ends (the first ending that picks it)."""
        with self.lock:
            ordinal = self._created[execution["jobId"]] = self._created.get(execution["jobId"], 0) + 1
            for ending in self.endings:
                if ending.picks(execution["parsedParameters"], ordinal):
                    self._ends.append((self.clock() + ending.after, ending, execution))
                    return

    def settle(self) -> None:
        """Ends every run whose time has come on the clock (requests call it before they are served)."""
        with self.lock:
            now = self.clock()
            for _, ending, run in (end for end in self._ends if end[0] <= now):
                if run["status"] in GOING:  # a run a test finished or cancelled meanwhile keeps that status
                    run["status"] = ending.status
                    run["runningTime"] = int(ending.after // 60)  # minutes, as the service counts them
            self._ends = [end for end in self._ends if end[0] > now]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_port}"

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    @property
    def posts(self) -> list[Received]:
        """The requests that asked to create an execution (lookups are GETs)."""
        with self.lock:
            return [request for request in self.received if request.method == "POST"]

    def all_executions(self) -> list[dict[str, Any]]:
        self.settle()
        with self.lock:
            return [item for items in self.executions.values() for item in items]

    def set_status(self, job_id: str, execution_id: str | None, status: str) -> list[dict[str, Any]]:
        """Set one execution's status, or (execution_id None) that of every READY/RUNNING execution
        of the job; returns the executions changed. An unknown execution id raises KeyError."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        with self.lock:
            items = self.executions.get(job_id, [])
            if execution_id is None:
                chosen = [item for item in items if item["status"] in GOING]
            else:
                chosen = [item for item in items if item["jobExecutionId"] == execution_id]
                if not chosen:
                    raise KeyError(f"job {job_id} has no execution {execution_id}")
            for item in chosen:
                item["status"] = status
            return chosen

    def finish(self, job_id: str, execution_id: str | None = None, status: str = "COMPLETED") -> list[dict[str, Any]]:
        """End one execution, or every READY/RUNNING execution of the job, with `status`."""
        return self.set_status(job_id, execution_id, status)

    def plant(
        self,
        job_id: str,
        at: float | None,
        status: str,
        parameters: dict[str, Any],
        *,
        execution_id: str | None = None,
        condition: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store an execution created at `at` (epoch seconds; None: now, as a create does), or as history a test
        needs. A create's time is taken under the lock: the listing is in creation order, as a database sorts it."""
        execution = {
            "jobExecutionId": execution_id or uuid.uuid4().hex[:12],
            "jobId": job_id,
            "jobCondition": {"workerType": "DEFAULT", "numWorker": 2, "timeout": 360, **(condition or {})},
            "status": status,
            "runningTime": 0,
            "parsedParameters": parameters,
            "type": "JOB",
        }
        with self.lock:
            created = datetime.fromtimestamp(self.clock() if at is None else at, KST).isoformat(timespec="seconds")
            execution["startDate"] = execution["createdDate"] = created
            self.executions.setdefault(job_id, []).append(execution)
        return execution

    def going(self, job_id: str) -> list[dict[str, Any]]:
        """The job's executions still READY or RUNNING, oldest first."""
        self.settle()
        with self.lock:
            return [item for item in self.executions.get(job_id, []) if item["status"] in GOING]

    def prune(self, job_id: str, count: int) -> list[dict[str, Any]]:
        """Retention: delete the job's `count` oldest executions; returns them (also added to `pruned`)."""
        with self.lock:
            items = self.executions.get(job_id, [])
            removed, items[:] = items[:count], items[count:]
            self.pruned.extend(removed)
            return removed

    def delay(self) -> float:
        """The seconds this request waits before it is served (`answer_delay`, called when callable)."""
        delay = self.answer_delay
        return float(delay() if callable(delay) else delay)

    def start(self) -> Emulator:
        # A short poll interval keeps stop() (and so every test's teardown) fast.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="dataflow-emulator", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stops serving; raises the first exception `on_request` raised that no test took."""
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        errors = self.take_hook_errors()
        if errors:
            # Raised in a server thread, the hook's failure would only drop that connection, and a
            # client that retries could still pass the test by another path: the test fails instead.
            if len(errors) > 1:
                errors[0].add_note(f"on_request raised {len(errors) - 1} more after this one")
            raise errors[0]

    def take_hook_errors(self) -> list[Exception]:
        """The exceptions `on_request` raised so far, which stop() then no longer raises."""
        with self.lock:
            errors, self.hook_errors = self.hook_errors, []
        return errors

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take_fault(self, method: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method in (None, method) and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(_Handler):
            api = emulator

        return Handler

    # The API itself -------------------------------------------------------------------------

    def usage_plan(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """The gateway's usage plan: None lets the request through, else (status, body, headers)."""
        with self.lock:
            if self.quota is not None and self.accepted >= self.quota:
                self.throttled += 1
                self.quota_refused += 1
                return 429, gateway_error("400", "Quota Exceeded", f"quota of {self.quota} requests used"), {}
            if self.rate_limit is not None:
                now = self.clock()
                tokens, then = self._bucket if self._bucket is not None else (float(self.burst), now)
                tokens = min(float(self.burst), tokens + max(0.0, now - then) * self.rate_limit)
                if tokens < 1.0:
                    self._bucket = (tokens, now)
                    self.throttled += 1
                    code = self.rate_limit_code
                    details = f"over {self.rate_limit:g} requests per second (burst {self.burst})"
                    headers = {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}
                    return 429, gateway_error(code, _RATE_MESSAGES[code], details), headers
                self._bucket = (tokens - 1.0, now)
            self.accepted += 1
        return None

    def authenticate(self, request: Received) -> tuple[int, dict[str, Any]] | None:
        headers = request.headers
        timestamp = headers.get("x-ncp-apigw-timestamp", "")
        access_key = headers.get("x-ncp-iam-access-key", "")
        given = headers.get("x-ncp-apigw-signature-v2", "")
        if not (timestamp and access_key and given):
            return 401, gateway_error("200", "Authentication Failed", "missing signature headers")
        secret = self.keys.get(access_key)
        if secret is None:
            return 401, gateway_error("200", "Authentication Failed", "unknown access key")
        if not timestamp.isdigit() or abs(int(timestamp) - int(self.clock() * 1000)) > WINDOW_MS:
            return 401, gateway_error("200", "Authentication Failed", "timestamp outside the 5 minute window")
        expected = expected_signature(secret, request.method, request.path, timestamp, access_key)
        if not hmac.compare_digest(expected.encode(), given.encode()):
            # What a user most needs to compare with their own: the message, never the key or signature.
            request.expected_string_to_sign = f"{request.method} {request.path}\n{timestamp}\n{access_key}"
            return 401, gateway_error("200", "Authentication Failed", "signature mismatch")
        return None

    def execute(self, request: Received) -> tuple[int, Any]:
        self.settle()
        parts = urlsplit(request.path)
        one = _ONE.fullmatch(parts.path)
        create = _CREATE.fullmatch(parts.path)
        job = _JOB.fullmatch(parts.path) if self.job_reading != "none" else None
        match = one or create or job
        if match is None:
            return 404, gateway_error("300", "Not Found", f"no API at {parts.path}")
        job_id = match["job"]
        if not _ID.fullmatch(job_id) or (self.jobs is not None and job_id not in self.jobs):
            return 404, dataflow_error("not-found", f"job {job_id} does not exist")
        if job and request.method == "GET":
            return 200, self.job(job_id)
        if one and request.method == "GET":
            for item in self.executions.get(job_id, []):
                if item["jobExecutionId"] == one["execution"]:
                    return 200, self.shown(item)
            return 404, dataflow_error("not-found", f"execution {one['execution']} does not exist")
        if create and request.method == "GET":
            return self._list(job_id, request.query)
        if create and request.method == "POST":
            return self._create(job_id, request)
        return 405, gateway_error("300", "Method Not Allowed", request.method)

    def _list(self, job_id: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            page = int(query.get("page", ["0"])[0])
            limit = int(query.get("limit", ["20"])[0])
        except ValueError:
            return 400, dataflow_error("bad-parameter", "page and limit must be integers")
        cap = self.limit_cap
        if cap is None and (page < 0 or not 1 <= limit <= 1000):
            return 400, dataflow_error("bad-parameter", "page must be >= 0 and limit 1-1000")
        if cap is not None:
            if page < 0 or limit < 1:
                return 400, dataflow_error("bad-parameter", "page must be >= 0 and limit >= 1")
            limit = min(limit, cap)
        total, chunk = self._page_of(job_id, page, limit)
        answer: dict[str, Any] = {"list": chunk, "count": total, "page": page, "limit": limit}
        if self.count_means == "page":
            answer["count"] = len(chunk)
        elif self.count_means == "string":
            answer["count"] = str(total)
        elif self.count_means == "missing":
            del answer["count"]
        if self.omit_list:
            del answer["list"]
        if self.prune_after_page is not None and page == self.prune_after_page:
            self.prune(job_id, self.prune_count)
        if self.vanish_after_page is not None and page == self.vanish_after_page:
            self.vanish_after_page = None  # once: the listing then holds still
            with self.lock:
                if self.executions.get(job_id):
                    self.vanished.append(self.executions[job_id].pop())
        return 200, answer

    def _page_of(self, job_id: str, page: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """The job's listed total and one page of it, as shown; a plain listing is sliced where it lies (a
        job's long history costs a page, as a database's index makes it)."""
        with self.lock:
            stored = self.executions.get(job_id, [])
            if self.hidden or self.flip_top or not self.newest_first:
                items = [item for item in stored if item["jobExecutionId"] not in self.hidden]
                if self.newest_first:
                    items.reverse()
                    if self.flip_top:
                        _flip(items)
                cut = items[page * limit : (page + 1) * limit]
                total = len(items)
            else:
                total = len(stored)
                end = max(total - page * limit, 0)
                cut = stored[max(end - limit, 0) : end][::-1]
        return total, [self.shown(item, self.list_echo) for item in cut]

    def hide(self, job_id: str, execution_id: str) -> None:
        """Leave a run out of every listing until `reveal` (a late run)."""
        with self.lock:
            if all(item["jobExecutionId"] != execution_id for item in self.executions.get(job_id, [])):
                raise KeyError(f"job {job_id} has no execution {execution_id}")
            self.hidden.add(execution_id)

    def reveal(self, job_id: str, execution_id: str) -> None:
        with self.lock:
            self.hidden.discard(execution_id)

    def shown(self, execution: dict[str, Any], echo_reading: str | None = None) -> dict[str, Any]:
        """An execution as the API answers it, parameters echoed in the configured reading (or `echo_reading`)."""
        parameters: dict[str, Any] = {
            name: value
            for name, value in execution["parsedParameters"].items()
            if self.echo_only is None or name in self.echo_only
        }
        condition = dict(execution["jobCondition"])
        if self.normalise_echo:
            parameters = {name: _normalised_value(value) for name, value in parameters.items()}
            if isinstance(condition.get("workerType"), str):
                condition["workerType"] = condition["workerType"].upper()
            for name in ("scriptPath", "logPath"):
                if isinstance(condition.get(name), str):
                    condition[name] = condition[name].rstrip("/")
        echo: Any = parameters
        reading = echo_reading or self.echo
        if reading == "list":
            echo = [{"key": name, "value": value} for name, value in parameters.items()]
        elif reading == "none":
            echo = []
        return {**execution, "jobCondition": condition, "parsedParameters": echo}

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as `GET /api/v1/jobs/{job}` answers it, in the configured `job_reading`."""
        with self.lock:
            items = list(self.executions.get(job_id, []))
        created = datetime.fromtimestamp(self.clock() - 30 * 86400, KST).isoformat(timespec="seconds")
        answer: dict[str, Any] = {
            "jobId": job_id,
            "name": f"job-{job_id}",
            "type": "SCRIPT",
            "status": self.job_status.get(job_id, "READY"),
            "maxConcurrentRuns": self.max_concurrent_runs.get(job_id),
            "lastExecutionStatus": items[-1]["status"] if items else None,
            "createdDate": created,
            "updatedDate": created,
            "runCondition": {"workerType": "DEFAULT", "numWorker": 2, "timeout": 360},
        }
        if self.job_reading == "legacy":
            del answer["maxConcurrentRuns"]
        return answer

    def _refusal(self, job_id: str) -> str | None:
        """The detail of a create's 400 bad-state, or None when the job takes the run."""
        status = self.job_status.get(job_id, "READY")
        if status not in RUNNABLE:
            return NOT_RUNNABLE_DETAIL.format(job=job_id, status=status)
        limit = self.max_concurrent_runs.get(job_id)
        if limit is None or self.at_limit == "queue":
            return None
        with self.lock:
            going = sum(1 for item in self.executions.get(job_id, []) if item["status"] in GOING)
        return self.limit_detail.format(job=job_id, limit=limit, going=going) if going >= limit else None

    def _create(self, job_id: str, request: Received) -> tuple[int, Any]:
        problems = check_create(request)
        if problems:
            return 400, dataflow_error("bad-parameter", "; ".join(problems))
        body = request.json or {}
        # The count and the run it admits are one step, or two concurrent creates could both pass the limit.
        with self.creating:
            refused = self._refusal(job_id)
            if refused is not None:
                return 400, dataflow_error("bad-state", refused)
            execution = self.plant(
                job_id, None, "READY", dict(body.get("parameters", {})), condition=body.get("jobCondition", {})
            )
            self._schedule_end(execution)
        answer = self.shown(execution)
        if not self.create_echo:
            answer["parsedParameters"] = []
        return 200, answer


def _flip(newest_first: list[dict[str, Any]]) -> None:
    """Moves the newest run of the second below the top's to the top (the listing's one flip)."""
    if not newest_first:
        return
    top = newest_first[0]["createdDate"]
    below = next((index for index, item in enumerate(newest_first) if item["createdDate"] < top), None)
    if below is not None:
        newest_first.insert(0, newest_first.pop(below))


def _normalised_value(value: Any) -> Any:
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


def check_create(request: Received) -> list[str]:
    """The createJobExecution body and query rules, as documented."""
    problems: list[str] = []
    for name, values in request.query.items():
        if name not in ("triggerId", "workflowId"):
            problems.append(f"unknown query parameter {name}")
        elif len(values) != 1 or not _ID.fullmatch(values[0]):
            problems.append(f"{name} must be 1-64 letters, digits, '-' or '_'")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        problems.append("Content-Type must be application/json")
    try:
        body = json.loads(request.body) if request.body else {}
    except ValueError:
        return [*problems, "body is not JSON"]
    if not isinstance(body, dict):
        return [*problems, "body must be a JSON object"]
    problems += [f"unknown body field {name}" for name in body if name not in ("jobCondition", "parameters")]
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in parameters.items()
    ):
        problems.append("parameters must map names to strings")
    if "jobCondition" in body:
        problems += _check_condition(body["jobCondition"])
    return problems


def _check_condition(condition: object) -> list[str]:
    if not isinstance(condition, dict):
        return ["jobCondition must be an object"]
    problems = [f"unknown jobCondition field {name}" for name in condition if name not in _CONDITION_FIELDS]
    for name, low, high in (("numWorker", 2, 10), ("timeout", 1, 1440)):
        value = condition.get(name, low)
        if type(value) is not int or not low <= value <= high:
            problems.append(f"jobCondition.{name} must be an integer {low}-{high}")
    paths = [name for name in ("nrn", "scriptPath", "logPath") if name in condition]
    if paths and len(paths) != 3:
        problems.append("jobCondition.nrn, scriptPath and logPath must be given together")
    problems += [
        f"jobCondition.{name} must be a non-empty string"
        for name in paths
        if not (isinstance(condition[name], str) and condition[name])
    ]
    return problems


class _Handler(BaseHTTPRequestHandler):
    api: Emulator
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answers go out in two writes; Nagle would delay the second
    server_version = "DataflowEmulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        """Quiet: requests are recorded in Emulator.received instead."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(self.api.clock() if timestamp is None else timestamp, usegmt=True)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        delay = self.api.delay()
        if delay > 0:
            time.sleep(delay)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        request = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.api.lock:
            self.api.received.append(request)
        rejected = self.api.authenticate(request)
        if rejected:
            request.verdict, request.status = f"rejected: {rejected[1]['error']['details']}", rejected[0]
            self._notify(request)
            self._answer(*rejected)
            return
        limited = self.api.usage_plan()
        if limited:
            status, limit_body, limit_headers = limited
            error = limit_body["error"]
            request.verdict, request.status = f"limited: {error['errorCode']} {error['message']}", status
            self._notify(request)
            self._answer(status, limit_body, limit_headers)
            return
        fault = self.api._take_fault(self.command)
        if fault is None:
            request.status, answer = self.api.execute(request)
            self._notify(request)
            self._answer(request.status, answer)
            return
        request.verdict = f"fault: {fault}"
        executed = self.api.execute(request) if fault.execute else None
        if fault.hold:
            self.api.released.wait(fault.hold)
        if fault.drop:
            self._notify(request)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.status is not None:
            request.status = fault.status
            fault_body = fault.body if fault.body is not None else _default_fault_body(fault.status)
            self._notify(request)
            self._answer(fault.status, fault_body, fault.headers, fault)
        else:
            request.status, answer = executed or self.api.execute(request)
            self._notify(request)
            self._answer(request.status, answer, fault.headers, fault)

    def _notify(self, request: Received) -> None:
        # Before the answer leaves: whatever a test does here happens before the client reads it.
        if self.api.on_request is not None:
            try:
                self.api.on_request(request)
            except Exception as exc:
                with self.api.lock:
                    self.api.hook_errors.append(exc)
                raise  # no answer leaves: the client sees the connection drop

    def _answer(
        self, status: int, body: Any, headers: dict[str, str] | None = None, fault: Fault | None = None
    ) -> None:
        data = fault.raw if fault is not None and fault.raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if fault is not None and (fault.drip or fault.cut):
            self._send_faulty(data, fault)
            return
        self.end_headers()
        self.wfile.write(data)

    def _send_faulty(self, data: bytes, fault: Fault) -> None:
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        head = b"".join(buffered) + b"\r\n"
        buffered.clear()
        self.close_connection = True
        if fault.cut:
            self.wfile.write(head + data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        for index in range(len(head + data)):
            if self.api.released.wait(fault.drip):
                return
            try:
                self.wfile.write((head + data)[index : index + 1])
                self.wfile.flush()
            except OSError:
                return  # the client gave up, as it should


def _default_fault_body(status: int) -> dict[str, Any]:
    codes = {
        429: ("420", "Rate Limited"),
        500: ("900", "Unexpected Error"),
        502: ("900", "Bad Gateway"),
        503: ("500", "Endpoint Error"),
        504: ("510", "Endpoint Timeout"),
    }
    code, message = codes.get(status, (str(status), "Injected Fault"))
    return gateway_error(code, message)
