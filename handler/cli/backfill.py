"""`backfill`: a route run once per step of a time range, through the same path as a real event."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, tzinfo
from typing import Any

from handler.cli.common import CommandError, configuration, emit, out, reach, settings, span
from handler.errors import EventError, RequestError
from handler.events import RouteInvocation, parse_time
from handler.exactly_once import CLOCK_TOLERANCE
from handler.launcher import Launcher
from handler.planning import PlannedExecution, planned
from handler.routes import Route
from handler.runs.reader import Runs, source
from handler.runs.view import Found, Identity, Unknown
from handler.wiring import Wiring

MAX_STEPS = 10_000
BAR_WIDTH = 30


def steps(start: str, end: str, every: str, zone: tzinfo) -> list[datetime]:
    """Every time from `start` to `end` (both included) `every` apart; times without an offset are in `zone`."""
    step = span(every, "--every", "1d, 6h, 30m")
    if not step:
        raise CommandError(f"--every takes a number and d, h or m (1d, 6h, 30m), got {every!r}")
    try:
        first, last = parse_time(start, "--from", zone), parse_time(end, "--to", zone)
    except EventError as exc:
        raise CommandError(str(exc)) from exc
    if last < first:
        raise CommandError(f"--to ({end}) is before --from ({start})")
    count = int((last - first) / step) + 1
    if count > MAX_STEPS:
        raise CommandError(f"{count} steps: at most {MAX_STEPS} in one backfill; split the range")
    return [first + index * step for index in range(count)]


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


def one_step(launcher: Launcher, config: Mapping[str, str], route: str, when: datetime) -> tuple[str, str, str]:
    """(outcome, jobExecutionId or "", error or "") of one step, as a direct call of the route at `when`."""
    report = launcher.invoke({"route": route, "time": when.isoformat()}, config, platform="aws")
    result = report.result
    if result["submitted"]:
        entry = result["submitted"][0]
        return ("dry-run" if result["dryRun"] else "submitted"), entry["jobExecutionId"] or "", ""
    if result["skipped"]:
        return "skipped", result["skipped"][0].get("jobExecutionId") or "", result["skipped"][0]["reason"]
    failed = result["failed"][0]
    return "failed", "", failed["error"]


def failed_steps(route: Route, times: list[datetime], zone: tzinfo) -> list[datetime]:
    """The steps whose newest run FAILED (or was CANCELED): those, and only those, are run again. The job's
    runs are read back to the first step, through the one reader; a step it cannot tell is an error."""
    from handler.cli.runs import reader

    _, client = reader(route.job.job_id)
    runs, job_source = Runs(time.monotonic), source(client, route.job.job_id)
    since, asked = times[0] - CLOCK_TOLERANCE, runs.asked(route.job.job_id)  # one read serves every step
    chosen, unsure = [], []
    for when in times:
        step = planned(route, RouteInvocation(route.name, when), {}, zone)
        if not isinstance(step, PlannedExecution):
            continue
        identity = Identity(step.parameters, step.job.job_condition, step.dedup_parameter, since)
        lookup = runs.find(job_source, identity, asked, since)
        if isinstance(lookup, Found) and lookup.candidates[0][1] in ("FAILED", "CANCELED"):
            chosen.append(when)
        elif isinstance(lookup, Unknown):
            unsure.append(f"{when.isoformat()}: {lookup.reason}")
    if unsure:
        raise CommandError("cannot tell the newest run of every step: " + "; ".join(unsure[:3]))
    return chosen


def backfill(args: argparse.Namespace) -> int:
    config = configuration() | ({"DATAFLOW_DRY_RUN": "true"} if args.dry_run else {})
    loaded = settings(config)
    route = next((route for route in loaded.routes if route.name == args.route), None)
    if route is None:
        known = ", ".join(route.name for route in loaded.routes)
        raise CommandError(f"no route is named {args.route!r} (routes: {known})")
    times = steps(args.start, args.end, args.every, loaded.zone)
    # The duplicate check reads back as far as the first step (it is not an event of the last day).
    config = reach(config, times[0], loaded.dedup_window)
    if args.rerun_failed:
        try:
            times = failed_steps(route, times, loaded.zone)
        except RequestError as exc:
            raise CommandError(f"cannot list the job's runs to find the failed steps: {exc}") from exc
        # Their runs exist (failed), and any check would take them for the step's run: none looks (a lost
        # answer then fails as unknown-outcome, never resent).
        config = config | {"DATAFLOW_DEDUP_CHECK": "off"}
    rows = _run(Launcher(Wiring()), config, route.name, times, args.concurrency)
    _summary(rows, len(times), args.json)
    return 130 if len(rows) < len(times) else 1 if any(row[1] == "failed" for row in rows) else 0


def _run(
    launcher: Launcher, config: Mapping[str, str], route: str, times: list[datetime], concurrency: int
) -> list[tuple[datetime, str, str, str]]:
    """Runs the steps, at most `concurrency` at once; Ctrl-C lets the in-flight ones finish and starts no more."""
    progress = Progress(len(times))
    rows: list[tuple[datetime, str, str, str]] = []
    stopping = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stopping.set())
    pending: dict[Future[tuple[str, str, str]], datetime] = {}
    queue: Iterator[datetime] = iter(times)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        try:
            _fill(pool, pending, queue, concurrency, stopping, lambda when: one_step(launcher, config, route, when))
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    when = pending.pop(future)
                    outcome, execution_id, detail = future.result()
                    rows.append((when, outcome, execution_id, detail))
                    progress.step(when, outcome, execution_id or detail)
                _fill(pool, pending, queue, concurrency, stopping, lambda when: one_step(launcher, config, route, when))
        finally:
            signal.signal(signal.SIGINT, previous)
            progress.stop()
    return sorted(rows)


def _fill(
    pool: ThreadPoolExecutor,
    pending: dict[Future[tuple[str, str, str]], datetime],
    queue: Iterator[datetime],
    concurrency: int,
    stopping: threading.Event,
    work: Callable[[datetime], tuple[str, str, str]],
) -> None:
    while len(pending) < concurrency and not stopping.is_set():
        upcoming = next(queue, None)
        if upcoming is None:
            return
        pending[pool.submit(work, upcoming)] = upcoming


def _summary(rows: list[tuple[datetime, str, str, str]], total: int, as_json: bool) -> None:
    if as_json:
        emit(
            {
                "steps": total,
                "done": len(rows),
                "rows": [
                    {"time": when.isoformat(), "outcome": o, "jobExecutionId": e, "detail": d} for when, o, e, d in rows
                ],
            }
        )
        return
    tally = Counter(outcome for _, outcome, _, _ in rows)
    stopped = f"; stopped after {len(rows)} of {total} (Ctrl-C): run it again to go on" if len(rows) < total else ""
    out(f"{'TIME':32} {'OUTCOME':10} {'RUN':14} DETAIL")
    for when, outcome, execution_id, detail in rows:
        out(f"{when.isoformat():32} {outcome:10} {execution_id or '-':14} {detail}")
    out(", ".join(f"{count} {name}" for name, count in sorted(tally.items())) + stopped)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "backfill",
        help="run a route once per step of a time range (same dedup keys as real events: a rerun skips what started)",
    )
    command.add_argument("--route", required=True, help="the route's name")
    command.add_argument(
        "--from", dest="start", required=True, help="first time, ISO 8601 (no offset: DATAFLOW_TIMEZONE)"
    )
    command.add_argument("--to", dest="end", required=True, help="last time, included")
    command.add_argument("--every", default="1d", help="step: 1d, 6h, 30m (default 1d)")
    command.add_argument("--dry-run", action="store_true", help="build and sign each request, send nothing")
    command.add_argument("--concurrency", type=int, default=4, choices=range(1, 33), metavar="1-32")
    command.add_argument("--rerun-failed", action="store_true", help="only the steps whose run FAILED or was CANCELED")
    command.add_argument("--json", action="store_true", help="the summary as JSON")
    command.set_defaults(func=backfill)
