"""`runs`: a job's recent executions, newest first, with the parameters and event they carry."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from handler.cli.common import CommandError, configuration, emit, out, say, settings, span
from handler.errors import RequestError
from handler.jobs import is_id
from handler.runs.execution import Execution
from handler.runs.reader import Runs, source
from handler.settings import Settings
from handler.wiring import Wiring

if TYPE_CHECKING:
    from handler.wiring import Submitter


def reader(job_id: str) -> tuple[Settings, Submitter]:
    """Settings and a client that reads the service: credentials required, routes optional."""
    config = configuration()
    if not config.get("DATAFLOW_ROUTES") and not config.get("DATAFLOW_JOB_ID"):
        config["DATAFLOW_JOB_ID"] = job_id  # reading needs no route, but the settings need one
    loaded = settings(config)
    if loaded.credentials.placeholder:
        raise CommandError("reading the service needs NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY (and no dry run)")
    return loaded, Wiring().submitter(loaded)


def runs(args: argparse.Namespace) -> int:
    job_id = args.job if args.route is None else _job_of(args.route)
    if not is_id(job_id):
        raise CommandError(f"--job must be 1-64 letters, digits, '-' or '_', got {job_id!r}")
    loaded, client = reader(job_id)
    since = datetime.now(UTC) - span(args.since, "--since", "2h, 30m, 1d")
    try:
        listed, short = Runs(time.monotonic).between(source(client, job_id), since)
    except RequestError as exc:
        raise CommandError(f"the service refused the listing: {exc}") from exc
    if short is not None:
        say(f"warning: not every run since {since.isoformat()} could be read: {short}")
    keys = {route.dedup_parameter for route in loaded.routes if route.dedup_parameter}
    rows = [_row(run, keys) for run in listed]
    if args.json:
        emit({"jobId": job_id, "since": since.isoformat(), "runs": rows})
    else:
        out(_table(job_id, since.astimezone(loaded.zone), rows))
    return 1 if any(row["status"] == "FAILED" for row in rows) and args.fail_on_failed else 0


def _job_of(name: str) -> str:
    """The job of the configured route `name` (a typo is said with the routes there are)."""
    loaded = settings()
    route = next((route for route in loaded.routes if route.name == name), None)
    if route is None:
        known = ", ".join(route.name for route in loaded.routes)
        raise CommandError(f"no route named {name!r} in DATAFLOW_ROUTES (routes: {known})")
    return route.job.job_id


def _row(run: Execution, dedup_parameters: set[str]) -> dict[str, Any]:
    echoed = None if run.parameters is None else dict(run.parameters)
    key = next((echoed[name] for name in sorted(dedup_parameters) if echoed and name in echoed), None)
    return {
        "jobExecutionId": run.execution_id,
        "status": run.status,
        "created": run.created.isoformat() if run.created else "",
        "runningMinutes": run.minutes,
        "parameters": echoed,
        "dedupKey": key,
    }


def _table(job_id: str, since: datetime, rows: Sequence[Mapping[str, Any]]) -> str:
    """The runs as lines, every time in `since`'s zone (DATAFLOW_TIMEZONE), the header's and the rows' alike."""
    tally = Counter(row["status"] for row in rows)
    lines = [
        f"{job_id}: {len(rows)} runs since {since.isoformat(timespec='minutes')} ({since.tzinfo})"
        + ("".join(f", {count} {status}" for status, count in sorted(tally.items())) if rows else ""),
        f"{'':2}{'STATUS':10} {'CREATED':26} {'MIN':>5}  {'ID':14} {'DEDUP KEY':32}  PARAMETERS",
    ]
    for row in rows:
        mark = "!!" if row["status"] == "FAILED" else ""
        parameters = (
            "(not echoed)"
            if row["parameters"] is None
            else ", ".join(f"{name}={value}" for name, value in sorted(row["parameters"].items()))
        )
        minutes = "" if row["runningMinutes"] is None else str(row["runningMinutes"])
        created = datetime.fromisoformat(row["created"]).astimezone(since.tzinfo).isoformat() if row["created"] else ""
        lines.append(
            f"{mark:2}{row['status']:10} {created:26} {minutes:>5}  {row['jobExecutionId'] or '?':14} "
            f"{row['dedupKey'] or '-':32}  {parameters}"
        )
    return "\n".join(lines)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser("runs", help="a job's recent executions, newest first (failed ones marked !!)")
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", help="the Data Flow job id")
    which.add_argument("--route", help="a route of DATAFLOW_ROUTES: its job's runs")
    command.add_argument("--since", default="24h", help="how far back: 30m, 2h, 1d (default 24h)")
    command.add_argument("--json", action="store_true", help="JSON instead of a table")
    command.add_argument("--fail-on-failed", action="store_true", help="exit 1 when a run in the span FAILED")
    command.set_defaults(func=runs)
