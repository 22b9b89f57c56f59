"""`backfill`: a route run once per step of a time range, through the same path as a real event."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, tzinfo
from typing import Any, Final

from handler.cli.common import (
    CommandError,
    add_parameters_option,
    emit,
    out,
    reach,
    say,
    settings,
    span,
    with_parameters,
)
from handler.cli.object_backfill import object_backfill
from handler.cli.reprocess import BEHAVIOURS, Decided, Launch, reprocess
from handler.errors import EventError, RequestError
from handler.events import EARLIEST_EVENT_TIME, LATEST_EVENT_TIME, parse_time
from handler.launcher import Launcher
from handler.planning import absent_placeholders
from handler.records import Record
from handler.routes import Route
from handler.wiring import Wiring

MAX_STEPS = 10_000
# More steps than this are asked about on a terminal, and need --yes elsewhere (an --every 1h meant as 1d).
CONFIRM_ABOVE = 100
BAR_WIDTH = 30


def steps(start: str, end: str, every: str, zone: tzinfo) -> list[datetime]:
    """Every time from `start` to `end` (both included) `every` apart; times without an offset are in `zone`."""
    step = span(every, "--every", "1d, 6h, 30m")
    if not step:
        raise CommandError(f"--every takes a number and d, h or m (1d, 6h, 30m), got {every!r}")
    first, last = bounds(start, end, zone)
    count = int((last - first) / step) + 1
    if count > MAX_STEPS:
        raise CommandError(f"{count} steps: at most {MAX_STEPS} in one backfill; split the range")
    return [first + index * step for index in range(count)]


def bounds(start: str, end: str, zone: tzinfo) -> tuple[datetime, datetime]:
    """--from and --to as times (without an offset, in `zone`), in order and within an event's range."""
    try:
        first, last = parse_time(start, "--from", zone), parse_time(end, "--to", zone)
    except EventError as exc:
        raise CommandError(str(exc)) from exc
    if last < first:
        raise CommandError(f"--to ({end}) is before --from ({start})")
    for given, name, when in ((start, "--from", first), (end, "--to", last)):
        # Every step is a direct call at its time: one outside an event's range would fail each as bad-event.
        if not EARLIEST_EVENT_TIME < when < LATEST_EVENT_TIME:
            raise CommandError(
                f"{name} {given} is out of range: a step's time, like an event's, lies after "
                f"{EARLIEST_EVENT_TIME.date()} and before {LATEST_EVENT_TIME.year}"
            )
    return first, last


class Progress:
    """A bar redrawn in place on a terminal; one plain line per step anywhere else (a log, CI)."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.tally: Counter[str] = Counter()
        self.lock = threading.Lock()

    def step(self, when: datetime, outcome: str, detail: str) -> None:
        with self.lock:
            self.tally[outcome] += 1
            done = sum(self.tally.values())
            if self.tty:
                filled = BAR_WIDTH * done // max(self.total, 1)
                counts = " ".join(f"{name} {count}" for name, count in sorted(self.tally.items()))
                self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {counts}")
                if done == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(f"{done}/{self.total} {when.isoformat()} {outcome} {detail}\n")
            self.stream.flush()

    def stop(self) -> None:
        if self.tty and sum(self.tally.values()) < self.total:
            self.stream.write("\n")


class Row(Record):
    """One step's line in the summary: what happened, the run, why, and what the step sent (or would)."""

    __slots__ = ("when", "outcome", "execution_id", "detail", "parameters", "source")

    def __init__(
        self,
        when: datetime,
        outcome: str,
        execution_id: str,
        detail: str,
        *,
        parameters: Mapping[str, str] | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> None:
        self.when: Final = when
        self.outcome: Final = outcome
        self.execution_id: Final = execution_id
        self.detail: Final = detail
        self.parameters: Final = parameters
        # The result entry's source: a re-run names the run it re-runs, a direct call its empty placeholders.
        self.source: Final = source or {}


def one_step(launcher: Launcher, config: Mapping[str, str], route: str, step: Launch) -> Row:
    """One step's row, as a direct call of the route at its time (a re-run names the run it re-runs)."""
    event = {"route": route, "time": step.when.isoformat()}
    if step.rerun_of is not None:
        event["rerunOf"] = step.rerun_of
    result = launcher.invoke(event, config, platform="aws").result
    if result["submitted"]:
        entry = result["submitted"][0]
        outcome = "dry-run" if result["dryRun"] else "submitted"
        sent = (entry.get("request") or {}).get("parameters")
        said = _said(entry["source"])
        return Row(step.when, outcome, entry["jobExecutionId"] or "", said, parameters=sent, source=entry["source"])
    if result["skipped"]:
        skip = result["skipped"][0]
        detail = " ".join(filter(None, (skip["reason"], _said(skip["source"]))))
        return Row(step.when, "skipped", skip.get("jobExecutionId") or "", detail, source=skip["source"])
    failed = result["failed"][0]
    return Row(step.when, "failed", "", failed["error"], source=failed["source"])


def _said(source: Mapping[str, Any]) -> str:
    """What a row says of its source: the run it re-runs, the placeholders that rendered empty."""
    parts = [f"re-run of {source['rerunOf']}"] if "rerunOf" in source else []
    if source.get("emptyPlaceholders"):
        parts.append("empty: " + ", ".join(source["emptyPlaceholders"]))
    return "; ".join(parts)


def backfill(args: argparse.Namespace) -> int:
    config = with_parameters(args) | ({"DATAFLOW_DRY_RUN": "true"} if args.dry_run else {})
    loaded = settings(config)
    route = next((route for route in loaded.routes if route.name == args.route), None)
    if route is None:
        known = ", ".join(route.name for route in loaded.routes)
        raise CommandError(f"no route is named {args.route!r} (routes: {known})")
    if args.rerun_failed and args.reprocess_behavior != "none":
        raise CommandError("--rerun-failed and --reprocess-behavior ask two things: give one")
    if route.match.source == "object" and not args.allow_empty_placeholders:
        return object_backfill(args, route, config, list(bounds(args.start, args.end, loaded.zone)))
    _refuse_empty(route, args.allow_empty_placeholders)
    times = steps(args.start, args.end, args.every, loaded.zone)
    # The duplicate check reads back as far as the first step (it is not an event of the last day).
    config = reach(config, times[0], loaded.dedup_window)
    try:
        planned_steps = reprocess(route, times, loaded.zone, args.reprocess_behavior, only_failed=args.rerun_failed)
    except RequestError as exc:
        raise CommandError(f"cannot list the job's runs to tell which steps ran: {exc}") from exc
    launches = [step for step in planned_steps if isinstance(step, Launch)]
    if not args.dry_run:
        confirm(len(launches), f"route {route.name} (job {route.job.job_id})", yes=args.yes)
    decided = [Row(s.when, s.outcome, s.execution_id, s.detail) for s in planned_steps if isinstance(s, Decided)]
    rows = sorted(decided + _run(Launcher(Wiring()), config, route.name, launches, args.concurrency), key=_when)
    _summary(rows, len(planned_steps), args.json, args.dry_run)
    broken = any(row.outcome in ("failed", "refused") for row in rows)
    return 130 if len(rows) < len(planned_steps) else 1 if broken else 0


def _when(row: Row) -> datetime:
    return row.when


def _refuse_empty(route: Route, allowed: bool) -> None:
    """A backfill calls the route directly, by time: placeholders only an event has would render empty."""
    empty = absent_placeholders(route, {"event_id": "", "route": route.name}, {})
    if not empty or allowed:
        return
    names = ", ".join(empty)
    raise CommandError(
        f"a backfill of route {route.name!r} has no value for {names}: they would render empty. "
        "Add --allow-empty-placeholders to run it anyway"
    )


def confirm(
    count: int,
    what: str,
    *,
    yes: bool,
    terminal: Callable[[], bool] = sys.stdin.isatty,
    answer: Callable[[], str] = sys.stdin.readline,
) -> None:
    """Above CONFIRM_ABOVE steps: asked on a terminal; elsewhere (a script, CI) only --yes lets them start."""
    if count <= CONFIRM_ABOVE or yes:
        return
    if not terminal():
        raise CommandError(f"{count} steps would start up to {count} runs of {what}: add --yes to go on")
    say(f"{count} steps will start up to {count} runs of {what}. Go on? [y/N] ", end="")
    if answer().strip().lower() not in ("y", "yes"):
        raise CommandError("nothing started (not confirmed)")


def _run(
    launcher: Launcher, config: Mapping[str, str], route: str, launches: list[Launch], concurrency: int
) -> list[Row]:
    """Runs the steps, at most `concurrency` at once; Ctrl-C lets the in-flight ones finish and starts no more."""
    progress = Progress(len(launches))
    rows: list[Row] = []
    stopping = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stopping.set())
    pending: dict[Future[Row], Launch] = {}
    queue: Iterator[Launch] = iter(launches)

    def work(step: Launch) -> Row:
        return one_step(launcher, config, route, step)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        try:
            _fill(pool, pending, queue, concurrency, stopping, work)
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    pending.pop(future)
                    row = future.result()
                    rows.append(row)
                    progress.step(row.when, row.outcome, row.execution_id or row.detail)
                _fill(pool, pending, queue, concurrency, stopping, work)
        finally:
            signal.signal(signal.SIGINT, previous)
            progress.stop()
    return rows


def _fill(
    pool: ThreadPoolExecutor,
    pending: dict[Future[Row], Launch],
    queue: Iterator[Launch],
    concurrency: int,
    stopping: threading.Event,
    work: Callable[[Launch], Row],
) -> None:
    while len(pending) < concurrency and not stopping.is_set():
        upcoming = next(queue, None)
        if upcoming is None:
            return
        pending[pool.submit(work, upcoming)] = upcoming


def _summary(rows: list[Row], total: int, as_json: bool, dry_run: bool) -> None:
    if as_json:
        emit({"steps": total, "done": len(rows), "rows": [_json_row(row) for row in rows]})
        return
    tally = Counter(row.outcome for row in rows)
    stopped = f"; stopped after {len(rows)} of {total} (Ctrl-C): run it again to go on" if len(rows) < total else ""
    # A dry run shows what each step would send, so the date arithmetic can be checked before anything runs.
    out(f"{'TIME':32} {'OUTCOME':10} {'RUN':14} " + ("PARAMETERS  DETAIL" if dry_run else "DETAIL"))
    for row in rows:
        sent = " ".join(f"{name}={value}" for name, value in (row.parameters or {}).items())
        detail = f"{sent}  {row.detail}".strip() if dry_run else row.detail
        out(f"{row.when.isoformat():32} {row.outcome:10} {row.execution_id or '-':14} {detail}")
    said = ", ".join(f"{count} {name}" for name, count in sorted(tally.items())) or "no step to run"
    out(said + stopped)


def _json_row(row: Row) -> dict[str, Any]:
    data: dict[str, Any] = {
        "time": row.when.isoformat(),
        "outcome": row.outcome,
        "jobExecutionId": row.execution_id,
        "detail": row.detail,
    }
    if row.parameters is not None:
        data["parameters"] = dict(row.parameters)
    for name in ("rerunOf", "emptyPlaceholders"):
        if name in row.source:
            data[name] = row.source[name]
    return data


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "backfill",
        help="run a route once per step of a time range (same dedup keys as real events: a rerun skips what started)",
    )
    command.add_argument("--route", required=True, help="the route's name")
    command.add_argument(
        "--from",
        dest="start",
        required=True,
        help="first step: the schedule's fire time, ISO 8601 (no offset: DATAFLOW_TIMEZONE); "
        "{time-1d} renders the day before it",
    )
    command.add_argument("--to", dest="end", required=True, help="last step's fire time, included")
    command.add_argument("--every", default="1d", help="step: 1d, 6h, 30m (default 1d)")
    command.add_argument("--dry-run", action="store_true", help="show what each step would send; send nothing")
    command.add_argument("--concurrency", type=int, default=4, choices=range(1, 33), metavar="1-32")
    command.add_argument(
        "--reprocess-behavior",
        choices=BEHAVIOURS,
        default="none",
        help="none: only steps without a run (default); failed: also run again the steps whose run FAILED or was "
        "CANCELED; completed: run every step again, once (never while its run is READY or RUNNING)",
    )
    command.add_argument(
        "--rerun-failed", action="store_true", help="only the steps whose run FAILED or was CANCELED, nothing else"
    )
    _add_guards(command)
    command.set_defaults(func=backfill)


def _add_guards(command: argparse.ArgumentParser) -> None:
    """The options that guard a backfill: confirmation, empty placeholders, where objects are, the output."""
    command.add_argument(
        "--yes", action="store_true", help=f"start more than {CONFIRM_ABOVE} steps without asking (scripts, CI)"
    )
    command.add_argument(
        "--allow-empty-placeholders",
        action="store_true",
        help="run a route whose parameters use placeholders a call by time has no value for (they render empty)",
    )
    command.add_argument(
        "--platform",
        choices=("aws", "ncp"),
        default="aws",
        help="an object route's storage: AWS S3 with the AWS_* keys, or NCP Object Storage with the NCLOUD keys",
    )
    command.add_argument("--json", action="store_true", help="the summary as JSON")
    add_parameters_option(command)
