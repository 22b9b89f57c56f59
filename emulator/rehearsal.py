"""`emulate`'s options as the emulator's settings: how runs end, faults, readings, limits and a seeded history."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator.server import KST, STATUSES, Emulator, Ending, Fault, Received

ENDED = ("COMPLETED", "FAILED", "CANCELED")
_DURATION = re.compile(r"(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
FINISH_EXAMPLE = "--finish FAILED,after=30s,when=$date=2026-11-26 or --finish COMPLETED,every=2"
FAULT_EXAMPLE = "--fault 503,times=3,on=POST or --fault lost"
SEED_EXAMPLE = "--seed ReportJob1,runs=500,over=48h,status=COMPLETED"
# What each fault kind does to a request that meets it (a status from 400 to 599 answers with that status).
FAULTS: dict[str, Callable[[float], Fault]] = {
    "throttle": lambda _: Fault(status=429),  # the gateway's 429 "420 Rate Limited"
    "lost": lambda _: Fault(execute=True, drop=True),  # done, but the answer never arrives
    "drop": lambda _: Fault(drop=True),  # the connection closes before anything is done
    "cut": lambda _: Fault(cut=True),  # done, and half the answer arrives
    "timeout": lambda hold: Fault(hold=hold),  # answers only after `hold` (past the client's read timeout)
}


@dataclass(frozen=True, kw_only=True)
class Rehearsal:
    """What `emulate`'s options ask for, as typed; `emulator()` parses each once and says what is wrong, with a fix."""

    finish: Sequence[str] = ()
    fault: Sequence[str] = ()
    seed: Sequence[str] = ()
    history: str | None = None
    max_concurrent_runs: Sequence[str] = ()
    at_limit: str = "refuse"
    echo: str = "object"
    echo_only: str | None = None
    order: str = "newest"
    limit_cap: int | None = None
    count: str = "total"
    rate_limit: float | None = None

    def emulator(
        self,
        keys: dict[str, str],
        *,
        host: str,
        port: int,
        on_request: Callable[[Received], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Emulator:
        """The configured emulator, not started; a bad option is a ValueError (a busy port an OSError)."""
        endings = [ending(text) for text in self.finish]
        faults = [fault(text) for text in self.fault]
        runs = [*(history(self.history, clock()) if self.history else []), *seeded(self.seed, clock())]
        api = Emulator(
            keys,
            host=host,
            port=port,
            on_request=on_request,
            clock=clock,
            echo=self.echo,
            echo_only=frozenset(_names(self.echo_only)) if self.echo_only is not None else None,
            newest_first=self.order == "newest",
            limit_cap=_at_least_one(self.limit_cap, "--limit-cap"),
            count_means=self.count,
            rate_limit=self.rate_limit,
            max_concurrent_runs=dict(limit(text) for text in self.max_concurrent_runs),
            at_limit=self.at_limit,
            endings=endings,
        )
        api.inject(*faults)
        plant(api, runs)
        return api


def _spec(text: str, option: str, example: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """'HEAD,name=value,...' as its head and options; an option not in `names` is an error naming them."""
    head, *rest = (part.strip() for part in text.split(","))
    options: dict[str, str] = {}
    for part in rest:
        name, equals, value = part.partition("=")
        if not equals or name not in names:
            raise ValueError(
                f"{option} {text!r}: {part!r} is not one of {', '.join(n + '=' for n in names)} ({example})"
            )
        options[name] = value
    if not head:
        raise ValueError(f"{option} {text!r} names nothing first ({example})")
    return head, options


def duration(text: str, what: str) -> float:
    """'30s', '5m', '2h', '1d' (a bare number is seconds) as seconds."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{what} takes a number and s, m, h or d (30s, 5m, 2h, 1d), got {text!r}")
    return float(found["amount"]) * _SECONDS[found["unit"]]


def _whole(text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{what} takes a whole number of at least 1, got {text!r}")
    return int(text)


def _at_least_one(value: int | None, option: str) -> int | None:
    if value is not None and value < 1:
        raise ValueError(f"{option} takes a whole number of at least 1, got {value}")
    return value


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def ending(text: str) -> Ending:
    """`--finish STATUS[,after=DURATION][,when=NAME=VALUE][,every=N]` as an Ending."""
    status, options = _spec(text, "--finish", FINISH_EXAMPLE, ("after", "when", "every"))
    if status.upper() not in ENDED:
        raise ValueError(f"--finish {text!r}: a run ends {', '.join(ENDED)}, not {status!r} ({FINISH_EXAMPLE})")
    where = None
    if "when" in options:
        name, equals, value = options["when"].partition("=")
        if not equals or not name:
            raise ValueError(f"--finish {text!r}: when= takes a parameter and its value, e.g. when=$date=2026-11-26")
        where = (name, value)
    return Ending(
        status=status.upper(),
        after=duration(options.get("after", "0"), f"--finish {text!r}: after="),
        where=where,
        every=_whole(options["every"], f"--finish {text!r}: every=") if "every" in options else None,
    )


def fault(text: str) -> Fault:
    """`--fault KIND[,times=N][,on=POST|GET][,hold=DURATION]` as a Fault for the next matching requests."""
    kind, options = _spec(text, "--fault", FAULT_EXAMPLE, ("times", "on", "hold"))
    kind = kind.lower()
    if "hold" in options and kind != "timeout":
        raise ValueError(
            f"--fault {text!r}: hold= is how long a timeout holds its answer, e.g. --fault timeout,hold=20s"
        )
    hold = duration(options.get("hold", "15s"), f"--fault {text!r}: hold=")
    if kind in FAULTS:
        made = FAULTS[kind](hold)
    elif kind.isdigit() and 400 <= int(kind) <= 599:
        made = Fault(status=int(kind))
    else:
        kinds = ", ".join(FAULTS)
        raise ValueError(f"--fault {text!r}: the kind is {kinds} or an HTTP status 400-599 ({FAULT_EXAMPLE})")
    method = options.get("on", "").upper() or None
    if method not in (None, "POST", "GET"):
        raise ValueError(f"--fault {text!r}: on= is POST (creates) or GET (lookups), not {options['on']!r}")
    made.method = method
    made.times = _whole(options.get("times", "1"), f"--fault {text!r}: times=")
    return made


def limit(text: str) -> tuple[str, int]:
    """`--max-concurrent-runs JOB=N` as the job and its maxConcurrentRuns."""
    job, equals, count = text.partition("=")
    if not equals or not job.strip():
        raise ValueError(f"--max-concurrent-runs takes JOB=N, e.g. --max-concurrent-runs ReportJob1=2, got {text!r}")
    return job.strip(), _whole(count.strip(), f"--max-concurrent-runs {text!r}: N")


@dataclass(frozen=True, kw_only=True)
class Planted:
    """One run of the seeded history, as `Emulator.plant` takes it."""

    job_id: str
    at: float
    status: str
    parameters: dict[str, Any]
    execution_id: str | None = None
    condition: dict[str, Any] | None = None


def plant(api: Emulator, runs: Sequence[Planted]) -> None:
    """Stores the runs, each job's in creation order (the order the service lists them by)."""
    for run in runs:
        api.plant(
            run.job_id, run.at, run.status, run.parameters, execution_id=run.execution_id, condition=run.condition
        )
    with api.lock:
        for items in api.executions.values():
            items.sort(key=lambda item: datetime.fromisoformat(item["createdDate"]))


def seeded(specs: Sequence[str], now: float) -> list[Planted]:
    """`--seed JOB,runs=N[,over=DURATION][,status=S]`: N runs spread evenly over the span before now."""
    runs: list[Planted] = []
    for text in specs:
        job, options = _spec(text, "--seed", SEED_EXAMPLE, ("runs", "over", "status"))
        count = _whole(options.get("runs", ""), f"--seed {text!r}: runs=")
        span = duration(options.get("over", "24h"), f"--seed {text!r}: over=")
        status = _status(options.get("status", "COMPLETED"), f"--seed {text!r}: status=")
        # A parameter no route sends, so a seeded run never passes for the run of a real event.
        runs += [
            Planted(job_id=job, at=now - span + span * index / count, status=status, parameters={"$seeded": str(index)})
            for index in range(count)
        ]
    return runs


def _status(text: str, what: str) -> str:
    if text.upper() not in STATUSES:
        raise ValueError(f"{what} takes one of {', '.join(STATUSES)}, got {text!r}")
    return text.upper()


def history(path: str, now: float) -> list[Planted]:
    """`--history FILE`: runs as the API lists them (a JSON array, or a saved listing with its `list`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--history {path}: cannot read a JSON file there ({exc})") from exc
    items = data.get("list") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"--history {path}: give a JSON array of runs (or a listing answer with its 'list')")
    return [_planted(item, now, f"--history {path}: run {index}") for index, item in enumerate(items)]


def _planted(item: object, now: float, where: str) -> Planted:
    fix = 'e.g. {"jobId": "ReportJob1", "status": "FAILED", "ago": "2h", "parsedParameters": {"$date": "2026-11-26"}}'
    if not isinstance(item, dict) or not isinstance(item.get("jobId"), str):
        raise ValueError(f"{where}: each run is an object with at least jobId and status, {fix}")
    if "ago" in item:
        at = now - duration(str(item["ago"]), f"{where}: ago")
    elif isinstance(item.get("createdDate"), str):
        at = _instant(item["createdDate"], where)
    else:
        at = now
    parameters = item.get("parsedParameters", {})
    if isinstance(parameters, list):  # the key/value reading of a listing
        parameters = {entry.get("key"): entry.get("value") for entry in parameters if isinstance(entry, dict)}
    condition = item.get("jobCondition")
    if not isinstance(parameters, dict) or not (condition is None or isinstance(condition, dict)):
        raise ValueError(f"{where}: parsedParameters and jobCondition are objects, {fix}")
    identity = item.get("jobExecutionId")
    return Planted(
        job_id=item["jobId"],
        at=at,
        status=_status(str(item.get("status", "")), f"{where}: status"),
        parameters=parameters,
        execution_id=str(identity) if identity else None,
        condition=condition,
    )


def _instant(text: str, where: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{where}: createdDate {text!r} is not an ISO time such as 2026-11-27T02:00:05+09:00") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=KST)).timestamp()
