"""`doctor`: read-only checks against the configured endpoint, each failure with its fix."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from handler.cli.common import CommandError, add_parameters_option, emit, out, settings, with_parameters
from handler.clocks import Clocks
from handler.dataflow.client import Answer, DataflowClient, error_from_body, json_object
from handler.errors import RequestError
from handler.exactly_once import guarantee_in
from handler.records import Record
from handler.routes import Route
from handler.runs.execution import echo_of, parse
from handler.runs.listing import order_of
from handler.settings import Settings

Verdict = Literal["ok", "warning", "failed"]
PROBE_LIMIT = 100
OWN_PAGE_READING = (
    "the list echoes no parameters, a run's own page does ({reading}): the duplicate check reads the own page of "
    "each run it cannot tell apart (at most 20 a lookup, each once per container)"
)
# The gateway refuses a signature more than 5 minutes off its clock; past a minute, the host's clock drifts.
SKEW_FAILS_S = 300.0
SKEW_WARNS_S = 60.0
# Reading the job's own settings is a side question: it never holds doctor longer than this.
JOB_READ_S = 15.0


class Check(Record):
    __slots__ = ("verdict", "what", "fix")

    def __init__(self, verdict: Verdict, what: str, fix: str = "") -> None:
        self.verdict: Final = verdict
        self.what: Final = what
        self.fix: Final = fix


def doctor(args: argparse.Namespace) -> int:
    loaded = settings(with_parameters(args))
    if loaded.credentials.placeholder or loaded.dry_run:
        raise CommandError("doctor asks the service: set NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY, and no dry run")
    client = DataflowClient(loaded.endpoint, loaded.credentials, connect_timeout=5, read_timeout=10, clocks=Clocks())
    checks = [_zones(loaded, datetime.now(UTC))]
    for index, job_id in enumerate(dict.fromkeys(route.job.job_id for route in loaded.routes)):
        routes = [route for route in loaded.routes if route.job.job_id == job_id]
        job_checks = _job(client, job_id, routes, loaded, clock=index == 0)
        checks += job_checks
        if all(check.verdict != "failed" for check in job_checks):  # a job it cannot list, it cannot read
            checks += _concurrency(client, job_id, routes)
    failed = [check for check in checks if check.verdict == "failed"]
    if args.json:
        emit({"endpoint": loaded.endpoint, "checks": [_shown(check) for check in checks], "ok": not failed})
    else:
        out(f"doctor: {loaded.endpoint}")
        for check in checks:
            out(f"  {check.verdict:7}  {check.what}" + (f"\n           fix: {check.fix}" if check.fix else ""))
    return 1 if failed else 0


def _zones(loaded: Settings, now: datetime) -> Check:
    """The wall time in UTC and in DATAFLOW_TIMEZONE: a schedule's placeholders render in the latter, whatever zone
    the trigger (an NCP crontab, an EventBridge rule) fires in."""
    local = now.astimezone(loaded.zone)
    return Check(
        "ok",
        f"now {now:%Y-%m-%d %H:%M} UTC is {local:%Y-%m-%d %H:%M} in DATAFLOW_TIMEZONE ({loaded.zone}):"
        " placeholders such as {time:%Y-%m-%d} render there, whatever zone a schedule fires in",
    )


def _shown(check: Check) -> dict[str, str]:
    return {"verdict": check.verdict, "what": check.what, **({"fix": check.fix} if check.fix else {})}


def _job(client: DataflowClient, job_id: str, routes: Sequence[Route], loaded: Settings, *, clock: bool) -> list[Check]:
    """The job's checks from one listing; `clock`: also the clock offset (said once, from the first job)."""
    names = ", ".join(route.name for route in routes)
    try:
        started = time.monotonic()
        answer, offset = client.probe(job_id, PROBE_LIMIT)
        took = time.monotonic() - started
    except RequestError as exc:
        return [Check("failed", f"cannot reach {loaded.endpoint} ({exc})", "check DATAFLOW_ENDPOINT and the network")]
    checks = [_clock(offset, took)] if clock else []
    refused = _refusal(answer, offset, job_id, names)
    if refused is not None:
        return [*checks, refused]
    listing = json_object(answer)
    if listing is None or not isinstance(listing.get("list"), list):
        return [*checks, Check("failed", f"job {job_id}: the listing is not a JSON object with a list", "")]
    items = [item for item in listing["list"] if isinstance(item, dict)]
    reading = _echo(items)
    checks.append(Check("ok", f"credentials accepted; job {job_id} ({names}) reachable, {len(items)} runs listed"))
    checks.append(Check("ok", f"job {job_id}: {_paging(listing, items)}"))
    page = _own_page(client, job_id, items) if reading == "none" else None
    if page is not None:  # the list echoes nothing, a run's own page does: the check reads those pages
        reading, items = _echo([page]), [page]
        checks.append(Check("ok", f"job {job_id}: {OWN_PAGE_READING.format(reading=reading)}"))
    else:
        checks.append(_echo_check(job_id, reading))
    for route in routes:
        checks += _route(route, items, reading, loaded)
    return checks


def _own_page(client: DataflowClient, job_id: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A listed run's own page (getJobExecution) where it echoes parameters the list leaves out."""
    execution_id = items[0].get("jobExecutionId") if items else None
    if not isinstance(execution_id, str):
        return None
    try:
        page = client.get_execution(job_id, execution_id)
    except RequestError:
        return None
    return page if _echo([page]) in ("object", "items") else None


def _clock(offset: float | None, took: float) -> Check:
    """The clock offset the answer's Date shows. The gateway stamped it somewhere within the `took` seconds
    the request and its answer travelled: the offset lies between the one read on arrival and that plus
    `took`, and only what is off in every part of that span is the host's clock."""
    if offset is None:
        return Check("warning", "the gateway's answer has no usable Date header: clock offset unknown")
    low, high = offset, offset + took
    least = 0.0 if low <= 0 <= high else min(abs(low), abs(high))
    said = f"the host's clock is {offset:+.1f} s off the gateway's"
    if took > 1:
        said = (
            f"the host's clock is between {low:+.1f} and {high:+.1f} s off the gateway's (the answer took {took:.1f} s)"
        )
    if least > SKEW_FAILS_S:
        return Check("failed", said, "synchronise the host's clock (NTP); the gateway refuses signatures 5 min off")
    if least > SKEW_WARNS_S:
        return Check("warning", said + " (the handler corrects it, one refused request per container)")
    return Check("ok", said)


def _refusal(answer: Answer, offset: float | None, job_id: str, names: str) -> Check | None:
    if 200 <= answer.status < 300:
        return None
    code, message = error_from_body(answer.status, answer.reason, answer.text)
    said = f"job {job_id} ({names}): {code}: {message}"
    if answer.status == 401 and offset is not None and abs(offset) > SKEW_FAILS_S:
        return Check("failed", said, "synchronise the host's clock (NTP)")
    fixes = {
        401: "check NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY (an API key of the account, not a password)",
        403: "give the key's sub account permission to use Data Flow",
        404: f"check the jobId of route(s) {names}: the job {job_id} does not exist in this account or region",
    }
    return Check("failed", said, fixes.get(answer.status, "see docs/results.md for this code"))


def _paging(listing: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> str:
    said_limit, count = listing.get("limit"), listing.get("count")
    parts = []
    if isinstance(said_limit, int) and said_limit < PROBE_LIMIT:
        parts.append(f"caps limit at {said_limit}")
    if count is None:
        parts.append("no count")
    elif not isinstance(count, int) or isinstance(count, bool):
        parts.append(f"count as {type(count).__name__} {count!r}")
    elif count == len(items) and len(items) == (said_limit or PROBE_LIMIT):
        parts.append(f"count {count} may be the page's length or the total")
    else:
        parts.append(f"count {count} (the total)" if count > len(items) else f"count {count}")
    runs = [parse(item) for item in items]
    order = order_of([runs])
    if order is not None:
        parts.append("newest first" if order else "oldest first")
    elif len(runs) < 2:
        parts.append(f"order unknown ({'no runs' if not runs else 'one run'} to tell)")
    else:
        parts.append("order unknown (the runs listed do not show one)")
    return "lists " + ", ".join(parts)


def _echo(items: Sequence[Mapping[str, Any]]) -> str:
    return echo_of([parse(item) for item in items])


def _echo_check(job_id: str, reading: str) -> Check:
    if reading == "none":
        return Check(
            "warning",
            f"job {job_id}: runs echo no parameters: duplicate checks cannot identify runs",
            "declare the route's parameters in the job, or set DATAFLOW_DEDUP_UNVERIFIABLE=fail (delivery-guarantees)",
        )
    if reading == "unknown":
        return Check("warning", f"job {job_id}: no runs yet, so how it echoes parameters is not known")
    return Check("ok", f"job {job_id}: runs echo their parameters ({reading})")


def _route(route: Route, items: Sequence[Mapping[str, Any]], reading: str, loaded: Settings) -> list[Check]:
    checks = []
    identifies = reading in ("object", "items")
    if route.dedup_parameter is not None and items:
        identifies = any(route.dedup_parameter in (parse(item).parameters or {}) for item in items)
        verdict: Verdict = "ok" if identifies else "warning"
        said = "comes back" if identifies else "does not come back in any listed run"
        checks.append(Check(verdict, f"route {route.name}: dedupParameter {route.dedup_parameter} {said}"))
    if not items:
        checks.append(
            Check(
                "warning",
                f"route {route.name}: its guarantee depends on how runs echo; run doctor again"
                " once the job has a run (validate lists the guarantee in each reading)",
            )
        )
        return checks
    unechoed = _unechoed(route, items) if identifies and route.dedup_parameter is None else []
    if unechoed:
        checks.append(_unechoed_check(route, unechoed))
    guarantee = guarantee_in(route, loaded.dedup_check, loaded.dedup_unverifiable, identifies and not unechoed)
    checks.append(Check("warning" if unechoed else "ok", f"route {route.name}: {guarantee}"))
    return checks


def _unechoed(route: Route, items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The route's own parameter names no listed run echoes: a service echoes only the names its job declares,
    and a run echoing fewer names than its route sends cannot be told from another's (a redelivery doubles)."""
    echoed = {name for item in items for name in parse(item).parameters or {}}
    return [name for name, _ in route.parameters if name not in echoed]


def _unechoed_check(route: Route, names: Sequence[str]) -> Check:
    listed = ", ".join(names)
    return Check(
        "warning",
        f"route {route.name}: no listed run echoes {listed}: the service echoes only the parameters its job declares,"
        " so a redelivery of this route cannot be matched to its run",
        f"declare {listed} in job {route.job.job_id}, or give the route a dedupParameter the job declares"
        " (run doctor again once the route has a run, if it has none yet)",
    )


def _concurrency(client: DataflowClient, job_id: str, routes: Sequence[Route]) -> list[Check]:
    """The job's own maxConcurrentRuns (GET /api/v1/jobs/{jobId}) against each route's maxRunning."""
    try:
        job = client.get_job(job_id, deadline=client.clocks.monotonic() + JOB_READ_S)
    except RequestError as exc:
        if exc.status == 404:  # the job was listed a moment ago: it is the reading that is missing
            return [Check("ok", f"job {job_id}: maxConcurrentRuns not available (this API does not answer the job)")]
        return [Check("warning", f"job {job_id}: maxConcurrentRuns not available, the job could not be read ({exc})")]
    if "maxConcurrentRuns" not in job:
        return [Check("ok", f"job {job_id}: maxConcurrentRuns not available (a service before September 2026)")]
    limit = job["maxConcurrentRuns"]
    if limit is None or limit == 0:
        return [Check("ok", f"job {job_id}: no maxConcurrentRuns set; Data Flow does not limit its concurrent runs")]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        return [Check("warning", f"job {job_id}: maxConcurrentRuns is {limit!r}, not a count: its limit is unknown")]
    said = f"job {job_id}: maxConcurrentRuns {limit} (Data Flow runs at most {limit} of its executions at once)"
    return [Check("ok", said), *(_route_limit(route, limit) for route in routes)]


def _route_limit(route: Route, limit: int) -> Check:
    """A route's maxRunning against the job's own limit: the guard should defer before the service refuses."""
    if route.max_running is None:
        return Check(
            "ok",
            f"route {route.name}: no maxRunning; a create past the job's maxConcurrentRuns {limit} is refused by Data"
            " Flow and deferred (kept, retried later), or held READY by it",
        )
    if route.max_running > limit:
        return Check(
            "warning",
            f"route {route.name}: maxRunning {route.max_running} is above the job's maxConcurrentRuns {limit}:"
            f" past {limit} runs the service refuses (deferred) or queues a run before the launcher's guard does",
            f"set the route's maxRunning to {limit} or less, or raise the job's maxConcurrentRuns",
        )
    return Check(
        "ok", f"route {route.name}: maxRunning {route.max_running} is within the job's maxConcurrentRuns {limit}"
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "doctor",
        help="check the configured endpoint read-only: credentials, clock, jobs, how it pages and echoes, guarantees,"
        " each job's maxConcurrentRuns against the routes' maxRunning",
    )
    command.add_argument("--json", action="store_true", help="JSON instead of lines")
    add_parameters_option(command)
    command.set_defaults(func=doctor)
