"""NAVER Cloud simulation: one activation per upload, 100 at once, 5% failing for good, a sweep every 5 minutes."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from emulator.s3_faults import S3FaultProxy
from emulator.s3_server import S3Server
from emulator.server import Emulator, Fault
from handler.clocks import Clocks
from handler.launcher import Launcher
from handler.wiring import Wiring
from tests.conftest import lose_the_answer_and_the_lookup

JOB = "NcpSimJob1"
CONCURRENCY = 100  # Cloud Functions' default limit of activations at once per namespace
SWEEP_EVERY_S = 300.0
QUIET_S = 120
ACTIVATION_MS = 60_000  # the action's timeout, as remaining time of each activation
# Of every hundred activations: dropped before they run, lost answer after the run was created, Data Flow 5xx.
DROPPED, LOST_ANSWER, SERVER_ERROR = 3, 1, 1

Fate = Literal["runs", "dropped", "lost-answer", "server-error"]
FATES: tuple[Fate, ...] = ("runs", "dropped", "lost-answer", "server-error")


@dataclass(frozen=True)
class Scenario:
    name: str
    coalesce: int | None  # maxObjects, or a per-file route
    trigger: bool  # an Object Storage trigger starts one activation per upload


@dataclass(frozen=True)
class Scale:
    files: int
    bursts: int  # the files land in this many bursts of equal size...
    apart_s: float  # ...this many simulated seconds apart; larger than CONCURRENCY, so activations queue


FULL = Scale(files=3_000, bursts=15, apart_s=60.0)
SHORT = Scale(files=450, bursts=3, apart_s=150.0)
SCENARIOS = (
    Scenario("per-file route, trigger and sweep", None, trigger=True),
    Scenario("coalescing route (maxObjects 100), sweep alone", 100, trigger=False),
)


class SimulatedTime:
    """Real time as it passes while requests are served, plus the spans skipped: the idle time between bursts,
    and every backoff, which moves the time on at once (a sleep of one container is time passing for all)."""

    def __init__(self, start: float) -> None:
        self.offset = start - time.time()
        self.lock = threading.Lock()

    def wall(self) -> float:
        return time.time() + self.offset

    def skip_to(self, moment: float) -> None:
        self.sleep(moment - self.wall())

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.offset += max(seconds, 0.0)

    def clocks(self) -> Clocks:
        return Clocks(wall=self.wall, monotonic=self.wall, sleep=self.sleep, jitter=lambda: 1.0)


@dataclass
class Fleet:
    """The namespace's containers: at most CONCURRENCY activations at once, each in a warm container."""

    sim: SimulatedTime
    config: dict[str, str]
    idle: list[Launcher] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    busy: int = 0
    peak: int = 0
    activations: int = 0
    failed: int = 0

    def activate(self, event: dict[str, Any]) -> dict[str, Any]:
        """One activation: the event through the NCP entry point's launcher; a failure is only counted."""
        with self.lock:
            launcher = self.idle.pop() if self.idle else Launcher(Wiring(self.sim.clocks(), environ={}))
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            self.activations += 1
        try:
            report = launcher.invoke(event, self.config, platform="ncp", remaining_ms=ACTIVATION_MS)
        finally:
            with self.lock:
                self.busy -= 1
                self.idle.append(launcher)
        if report.keep:
            with self.lock:
                self.failed += 1
        return dict(report.result)


@dataclass
class Figures:
    scenario: Scenario
    files: int
    activations: int
    dropped: int
    failed: int
    sweeps: int
    swept: int  # files in the runs the sweeps started
    runs: int
    lost: int
    duplicates: int
    dataflow_requests: int
    creates: int
    s3_requests: int
    peak: int
    wall_s: float


def key(index: int) -> str:
    return f"landing/clicks/part-{index:05d}.csv"


def route(bucket: str, scenario: Scenario) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "clicks",
        "match": {"bucket": bucket, "prefix": "landing/clicks/"},
        "jobId": JOB,
        "sweep": {"quietSeconds": QUIET_S},
    }
    if scenario.coalesce is None:
        return spec | {"parameters": {"$path": "{key}"}}
    return spec | {"coalesce": {"parameter": "$paths", "maxObjects": scenario.coalesce}}


def flat_upload(bucket: str, name: str) -> dict[str, Any]:
    """NCP's flat Object Storage payload, without a time of its own: the object's state is read (HeadObject)."""
    return {"bucketName": bucket, "objectName": name, "eventType": "ObjectCreated:PUT", "size": 64}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Thousands of activations' decision records, and moto's request lines, are not the figures."""
    loggers = [logging.getLogger(name) for name in ("handler", "werkzeug")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def simulate(scenario: Scenario, scale: Scale, s3: S3Server, seed: int = 24) -> Figures:
    """One scenario in one run: a bucket of its own, the emulator as Data Flow, the S3 API behind a counter."""
    sim = SimulatedTime(time.time())
    bucket = s3.bucket(f"ncp-sim-{uuid.uuid4().hex[:12]}")
    with Emulator({s3.access_key: s3.secret_key}, clock=sim.wall) as api, S3FaultProxy(s3.url) as storage:
        config = {
            "NCLOUD_ACCESS_KEY": s3.access_key,
            "NCLOUD_SECRET_KEY": s3.secret_key,
            "DATAFLOW_ENDPOINT": api.url,
            "DATAFLOW_STORAGE_ENDPOINT": storage.url,
            "DATAFLOW_ROUTES": json.dumps([route(bucket, scenario)]),
        }
        platform = Platform(scenario, s3, api, Fleet(sim, config), bucket, random.Random(seed))
        started = time.monotonic()
        with quiet():
            platform.run(scale)
        wall = time.monotonic() - started
        named = _named(api, scenario)
        return Figures(
            scenario=scenario,
            files=scale.files,
            activations=platform.fleet.activations + platform.dropped,
            dropped=platform.dropped,
            failed=platform.fleet.failed,
            sweeps=platform.sweeps,
            swept=platform.swept,
            runs=len(api.all_executions()),
            lost=sum(1 for index in range(scale.files) if key(index) not in named),
            duplicates=sum(1 for count in named.values() if count > 1),
            dataflow_requests=len(api.received),
            creates=len(api.posts),
            s3_requests=len(storage.seen),
            peak=platform.fleet.peak,
            wall_s=wall,
        )


@dataclass
class Platform:
    """Cloud Functions as a bucket's uploads meet it: a trigger's activations, a cron trigger's sweeps."""

    scenario: Scenario
    s3: S3Server
    api: Emulator
    fleet: Fleet
    bucket: str
    chance: random.Random
    sweeps: int = 0
    swept: int = 0
    dropped: int = 0

    def run(self, scale: Scale) -> None:
        """Bursts of uploads, a sweep every SWEEP_EVERY_S (alongside a burst's activations where they meet),
        until a sweep after the last upload's quiet period has run and not failed."""
        sim, per_burst = self.fleet.sim, -(-scale.files // scale.bursts)
        start = sim.wall()
        next_sweep = start + SWEEP_EVERY_S
        with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="activation") as pool:
            for burst in range(scale.bursts):
                sim.skip_to(start + burst * scale.apart_s)
                indexes = range(burst * per_burst, min(scale.files, (burst + 1) * per_burst))
                for index in indexes:
                    self.s3.put(self.bucket, key(index), f"click {index}\n".encode(), modified=sim.wall())
                due = sim.wall() >= next_sweep
                sweep = pool.submit(self.sweep) if due else None
                next_sweep += SWEEP_EVERY_S if due else 0.0
                doomed = self.notify(pool, indexes) if self.scenario.trigger else []
                if sweep is not None:
                    sweep.result()
                for event, fate in doomed:
                    self.failing(event, fate)
            last_upload = sim.wall()
            while True:
                sim.skip_to(next_sweep)
                next_sweep += SWEEP_EVERY_S
                past_the_quiet = sim.wall() - QUIET_S > last_upload
                if not self.sweep() and past_the_quiet:
                    return

    def notify(self, pool: ThreadPoolExecutor, indexes: range) -> list[tuple[dict[str, Any], Fate]]:
        """One activation per upload, at most CONCURRENCY at once; returns those doomed to fail mid-way, to run
        after the burst one at a time, so that the fault injected hits them alone."""
        fates = zip(indexes, self.fates(indexes), strict=True)
        events = [(flat_upload(self.bucket, key(index)), fate) for index, fate in fates]
        list(pool.map(self.fleet.activate, [event for event, fate in events if fate == "runs"]))
        self.dropped += sum(1 for _, fate in events if fate == "dropped")
        return [(event, fate) for event, fate in events if fate in ("lost-answer", "server-error")]

    def fates(self, indexes: range) -> list[Fate]:
        weights = [100 - DROPPED - LOST_ANSWER - SERVER_ERROR, DROPPED, LOST_ANSWER, SERVER_ERROR]
        return self.chance.choices(FATES, weights, k=len(indexes))

    def failing(self, event: dict[str, Any], fate: Fate) -> dict[str, Any]:
        """An activation that fails mid-way: its run created but the answer lost, or every request answered 503."""
        if fate == "lost-answer":
            lose_the_answer_and_the_lookup(self.api)
        else:
            self.api.inject(Fault(status=503, times=1_000))
        try:
            return self.fleet.activate(event)
        finally:
            self.api.on_request = None
            with self.api.lock:
                self.api.faults.clear()

    def sweep(self) -> bool:
        """The cron trigger's activation, {"sweep": "*"}; True when it failed. Without a trigger the second one
        fails mid-way: sweeps are the only activations there, too few for 5% of them to fail by chance."""
        self.sweeps += 1
        before = self.fleet.failed
        if not self.scenario.trigger and self.sweeps == 2:
            result = self.failing({"sweep": "*"}, "lost-answer")
        else:
            result = self.fleet.activate({"sweep": "*"})
        self.swept += sum(account["started"] for account in result.get("sweeps", []))
        return self.fleet.failed > before


def _named(api: Emulator, scenario: Scenario) -> Counter[str]:
    """How many runs name each file."""
    parameter = "$path" if scenario.coalesce is None else "$paths"
    return Counter(path for run in api.all_executions() for path in run["parsedParameters"][parameter].split(","))


def report(figures: Figures) -> list[str]:
    """The figures, and each target met or MISSED."""
    scenario = figures.scenario
    lines = [
        f"{scenario.name}: {figures.files} files, {figures.activations} activations (at most {figures.peak} at "
        f"once; {figures.dropped + figures.failed} failed, not retried: {figures.dropped} dropped before they ran, "
        f"{figures.failed} failed mid-way), {figures.sweeps} sweeps (starting {figures.swept} files) -> "
        f"{figures.runs} runs, lost {figures.lost}, "
        f"duplicates {figures.duplicates}; {figures.dataflow_requests} requests to Data Flow ({figures.creates} "
        f"POSTs), {figures.s3_requests} to object storage; {figures.wall_s:.1f} s"
    ]
    targets = [
        ("files lost 0, duplicate runs 0", figures.lost == 0 and figures.duplicates == 0),
        (f"activations at once {figures.peak} <= {CONCURRENCY}", figures.peak <= CONCURRENCY),
    ]
    if scenario.coalesce is not None:
        bound = figures.files / scenario.coalesce + figures.sweeps
        targets.append(
            (f"runs {figures.runs} <= files / {scenario.coalesce} + sweeps = {bound:.0f}", figures.runs <= bound)
        )
    lines += [f"  target {name}: {'met' if met else 'MISSED'}" for name, met in targets]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="a few bursts: proves the simulation runs")
    args = parser.parse_args(argv)
    scale = SHORT if args.short else FULL
    print(
        f"ncp: {scale.files} uploads in {scale.bursts} bursts {scale.apart_s:g} s apart, one activation per upload, "
        f"at most {CONCURRENCY} at once, {DROPPED + LOST_ANSWER + SERVER_ERROR}% failing for good, a sweep every "
        f"{SWEEP_EVERY_S / 60:g} min (quiet {QUIET_S} s); simulated time"
    )
    s3 = S3Server().start()
    missed = False
    try:
        for scenario in SCENARIOS:
            lines = report(simulate(scenario, scale, s3))
            missed = missed or any(line.endswith("MISSED") for line in lines)
            print("\n".join(lines), flush=True)
    finally:
        s3.stop()
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
