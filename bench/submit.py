"""`make bench`: every figure of the performance table, as ratios to its baseline measured interleaved in one run."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from emulator.lambda_context import LambdaContextStub
from emulator.server import Emulator
from handler import app
from handler.dataflow.signing import Credentials, signed_headers
from handler.launcher import Launcher
from handler.outcomes import Submitted

ROOT = Path(__file__).resolve().parent.parent
COLD = Path(__file__).resolve().parent / "cold.py"
ACCESS, SECRET, JOB = "BENCHACCESSKEY", "bench-secret", "gqigvH123456"
FLOOR_JOB = "BenchFloor1"
S3_EVENT = json.loads((ROOT / "events" / "s3-put.json").read_text())
NCP_EVENT = json.loads((ROOT / "events" / "ncp-object-storage.json").read_text())
PARAMETERS = '{"$input": "{bucket}/{key}", "$day": "{time:%Y-%m-%d}"}'


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full bench, or a smoke run that only proves every part works."""

    warm_rounds: int
    warm_calls: int
    batch_rounds: int
    answer_delay: float
    cold_runs: int


FULL = Plan(warm_rounds=11, warm_calls=200, batch_rounds=3, answer_delay=0.1, cold_runs=31)
SMOKE = Plan(warm_rounds=1, warm_calls=3, batch_rounds=1, answer_delay=0.01, cold_runs=1)


@dataclass
class Figure:
    name: str
    detail: str
    ratio: float | None
    target: float | None
    timed: bool = True  # a time, which a smoke run's few calls cannot judge; a peak memory it can

    @property
    def missed(self) -> bool:
        return self.target is not None and not (self.ratio is not None and self.ratio <= self.target)

    def line(self, judged: bool = True) -> str:
        ratio = "" if self.ratio is None else f"{self.ratio:5.2f}x"
        verdict = ""
        if self.target is not None:
            # A smoke run's few calls (and its 10 ms answers) say nothing about a time target.
            outcome = ("MISSED" if self.missed else "met") if judged else "not judged"
            verdict = f"target <= {self.target:.2f}x {outcome}"
        return f"  {self.name:<22} {ratio:>6}  {verdict:<26} {self.detail}"


def s3_event(index: int) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(json.dumps(S3_EVENT))
    record = event["Records"][0]
    # A new upload every time (new bytes, so a new ETag: the object's state), never a duplicate.
    record["s3"]["object"] |= {"sequencer": f"{index:018X}", "eTag": f"{index:032x}"}
    # Uploaded just now, as a live event is: a lookup then reads only the runs started since.
    record["eventTime"] = datetime.now(UTC).isoformat()
    return event


def sqs_batch(first: int, size: int) -> dict[str, Any]:
    records = []
    for index in range(first, first + size):
        records.append(
            {
                "messageId": f"bench-{index}",
                "body": json.dumps(s3_event(index)),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:ap-northeast-2:123456789012:dataflow-uploads",
                "awsRegion": "ap-northeast-2",
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764285005123"},
                "messageAttributes": {},
            }
        )
    return {"Records": records}


def config(url: str) -> dict[str, str]:
    return {
        "NCLOUD_ACCESS_KEY": ACCESS,
        "NCLOUD_SECRET_KEY": SECRET,
        "DATAFLOW_ENDPOINT": url,
        "DATAFLOW_JOB_ID": JOB,
        "DATAFLOW_PARAMETERS": PARAMETERS,
        # The raw baseline sends one POST; the default configuration's lookup before it is `history`'s.
        "DATAFLOW_DEDUP_CHECK": "off",
    }


@contextlib.contextmanager
def production_logging_to_devnull() -> Iterator[None]:
    # Production logging (Powertools JSON for every decision, EMF on stdout) is part of the cost; the terminal is not.
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        streams = [h for h in app.logger.handlers if isinstance(h, logging.StreamHandler)]
        previous = [h.setStream(sink) for h in streams]
        try:
            yield
        finally:
            for stream_handler, stream in zip(streams, previous, strict=True):
                if stream is not None:
                    stream_handler.setStream(stream)


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def next(self, count: int = 1) -> int:
        """The first of `count` fresh numbers."""
        self.value += count
        return self.value - count + 1


class Orders:
    """The variants in a new order each time, seeded so runs compare: over many rounds every variant
    runs in every position and after every other about equally (a rotation would keep one neighbour)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.shuffler = random.Random(len(names))

    def next(self) -> list[str]:
        self.shuffler.shuffle(self.names)
        return list(self.names)


def settle_heap(api: Emulator) -> None:
    """Leaves the collector a heap like a container's, where the service's history does not live.

    The emulator keeps every request it saw: left in place, each full collection would walk them,
    at a cost growing with the bench's length and falling on whichever variant allocates more.
    The modules stay in the heap, as they do in a container.
    """
    api.received.clear()
    api.executions.clear()
    gc.collect()


def warm(api: Emulator, plan: Plan, ids: Counter) -> list[Figure]:
    path = f"/api/v1/jobs/{JOB}/executions"
    headers = {
        **signed_headers(Credentials(ACCESS, SECRET), "POST", path, str(int(time.time() * 1000))),
        "Content-Type": "application/json",
    }
    body = json.dumps({"parameters": {"$input": "raw-data/incoming/orders/2026-11-28.csv"}}).encode()
    session = requests.Session()
    context = LambdaContextStub()
    settings = config(api.url)

    def raw(_: dict[str, Any]) -> object:
        answer = session.post(api.url + path, data=body, headers=headers, timeout=10)
        answer.raise_for_status()
        return answer

    def handler(event: dict[str, Any]) -> object:
        result = app.lambda_handler(event, context)
        assert len(result["submitted"]) == 1, result
        return result

    def core(event: dict[str, Any]) -> object:  # the same without Powertools' decorators, EMF and os.environ
        return app.launcher.invoke(event, settings, platform="aws", remaining_ms=30_000)

    operations: dict[str, Callable[[dict[str, Any]], object]] = {
        "raw": raw,
        "handler": handler,
        "core": core,
    }
    for operation in operations.values():  # warm-up: settings, session and connection of each
        operation(s3_event(ids.next()))
    samples: dict[str, list[float]] = {name: [] for name in operations}
    orders = Orders(list(operations))
    for _ in range(plan.warm_rounds):
        events = {name: [s3_event(ids.next()) for _ in range(plan.warm_calls)] for name in operations}
        settle_heap(api)
        for index in range(plan.warm_calls):
            # Interleaved call by call, so the machine's drift and bursts hit every variant alike, in
            # an order shuffled anew each time; the median per call is what a typical invocation
            # costs, as the figure asks.
            for name in orders.next():
                started = time.perf_counter()
                operations[name](events[name][index])
                samples[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in samples.items()}
    parts = warm_parts(plan)
    rest = (median["handler"] - median["raw"]) * 1e6 - sum(parts.values())
    return [
        Figure(
            "warm, where it goes",
            f"of {(median['handler'] - median['raw']) * 1e6:.0f} us over the bare POST: "
            + ", ".join(f"{name} {cost:.0f} us" for name, cost in parts.items())
            + f"; the core's own work (events, routing, signing, the watched send) against the bare POST's"
            f" requests.Session machinery: {rest:+.0f} us",
            None,
            None,
        ),
        Figure(
            "warm overhead",
            f"DATAFLOW_DEDUP_CHECK=off: lambda_handler {median['handler'] * 1e6:.0f} us / bare POST "
            f"{median['raw'] * 1e6:.0f} us (Launcher.invoke alone {median['core'] * 1e6:.0f} us, "
            f"{median['core'] / median['raw']:.2f}x)",
            median["handler"] / median["raw"],
            1.15,
        ),
    ]


def unique_event(index: int) -> dict[str, Any]:
    """An upload of a key of its own: the default check's lookup must not take another upload's run for it."""
    event = s3_event(index)
    event["Records"][0]["s3"]["object"]["key"] = f"incoming/orders/{index}.csv"
    return event


def plant_history(api: Emulator, job: str, count: int) -> None:
    """`count` runs of other uploads, created in the last two seconds: all inside a new upload's lookup window."""
    now = time.time() - 2
    for index in range(count):
        api.plant(job, now + index * 1e-4, "COMPLETED", {"$input": f"raw-data/history/{index}.csv", "$day": "x"})


def history(api: Emulator, plan: Plan, ids: Counter) -> list[Figure]:
    """The default configuration (a lookup before every POST) against a job with a full first page, and
    against 10,000 runs in the window, beside its floor: one GET of a page and the POST, bare."""
    query = "?page=0&limit=100"
    listing, creating = f"/api/v1/jobs/{FLOOR_JOB}/executions", f"/api/v1/jobs/{FLOOR_JOB}/executions"
    stamp = str(int(time.time() * 1000))
    get_headers = signed_headers(Credentials(ACCESS, SECRET), "GET", listing + query, stamp)
    post_headers = {
        **signed_headers(Credentials(ACCESS, SECRET), "POST", creating, stamp),
        "Content-Type": "application/json",
    }
    body = json.dumps({"parameters": {"$input": "raw-data/incoming/orders/2026-11-28.csv"}}).encode()
    session = requests.Session()

    def floor(_: dict[str, Any]) -> object:
        session.get(api.url + listing + query, headers=get_headers, timeout=10).raise_for_status()
        answer = session.post(api.url + creating, data=body, headers=post_headers, timeout=10)
        answer.raise_for_status()
        return answer

    def checked(count: int) -> Callable[[dict[str, Any]], object]:
        container, settings = (
            Launcher(),
            config(api.url) | {"DATAFLOW_DEDUP_CHECK": "always", "DATAFLOW_JOB_ID": f"BenchHistory{count}"},
        )

        def call(event: dict[str, Any]) -> object:
            result = container.invoke(event, settings, platform="aws", remaining_ms=30_000).result
            assert len(result["submitted"]) == 1, result
            return result

        return call

    operations = {"floor": floor, "page": checked(100), "busy": checked(10_000)}
    samples = _interleaved(
        api, plan, ids, operations, {FLOOR_JOB: 100, "BenchHistory100": 100, "BenchHistory10000": 10_000}
    )
    median = {name: statistics.median(values) for name, values in samples.items()}
    return [
        Figure(
            "default, full page",
            f"Launcher.invoke with the default duplicate check, a job with 100 runs in the window "
            f"{median['page'] * 1e6:.0f} us / its floor, one bare GET of a page and the POST "
            f"{median['floor'] * 1e6:.0f} us",
            median["page"] / median["floor"],
            None,
        ),
        Figure(
            "default, 10,000 runs",
            f"the same with 10,000 runs in the window {median['busy'] * 1e6:.0f} us / "
            f"with 100 {median['page'] * 1e6:.0f} us",
            median["busy"] / median["page"],
            1.5,
        ),
    ]


def _interleaved(
    api: Emulator,
    plan: Plan,
    ids: Counter,
    operations: dict[str, Callable[[dict[str, Any]], object]],
    histories: dict[str, int],
) -> dict[str, list[float]]:
    """Each operation's seconds per call, call by call in a shuffled order; each job's history planted anew
    every round."""
    samples: dict[str, list[float]] = {name: [] for name in operations}
    orders = Orders(list(operations))
    for round_index in range(plan.warm_rounds + 1):  # round 0 warms up: settings, sessions, each container's read
        settle_heap(api)
        for job, count in histories.items():
            plant_history(api, job, count)
        events = {name: [unique_event(ids.next()) for _ in range(plan.warm_calls)] for name in operations}
        for index in range(plan.warm_calls):
            for name in orders.next():
                started = time.perf_counter()
                operations[name](events[name][index])
                if round_index:
                    samples[name].append(time.perf_counter() - started)
    return samples


def warm_parts(plan: Plan) -> dict[str, float]:
    """Microseconds per call of what lambda_handler adds around the core, each measured alone, no network."""
    context = LambdaContextStub()
    decisions = logging.getLogger("handler.results")
    one_submitted = [
        Submitted("default", JOB, "06f9646c29ea", "READY", dedup_key="2ec03d74835d1ca13e442f75653a08bf", source={})
    ]
    details = {  # the fields of a real `submitted` record
        "route": "default",
        "jobId": JOB,
        "jobExecutionId": "06f9646c29ea",
        "status": "READY",
        "dedupKey": "2ec03d74835d1ca13e442f75653a08bf",
        "sourceKind": "object",
        "bucket": "raw-data",
        "key": "incoming/orders/2026-11-27 batch+1.csv",
        "eventName": "ObjectCreated:Put",
        "attempts": 1,
        "dryRun": False,
        "elapsedMs": 2.1,
    }

    @app.metrics.log_metrics
    @app.logger.inject_lambda_context(clear_state=True)
    def wrapped(_: dict[str, Any], __: LambdaContextStub) -> None:
        app.record_metrics(one_submitted)

    parts: dict[str, Callable[[], object]] = {
        "the decision's log record": lambda: decisions.info("submitted", extra=details),
        "Powertools context and EMF metrics": lambda: wrapped({}, context),
        "configuration from os.environ": app.configuration,
    }
    calls = max(plan.warm_calls * 5, 10)
    costs: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(plan.warm_rounds):
        for name, part in parts.items():
            started = time.perf_counter()
            for _ in range(calls):
                part()
            costs[name].append((time.perf_counter() - started) / calls * 1e6)
    return {name: statistics.median(values) for name, values in costs.items()}


def batch(api: Emulator, plan: Plan, ids: Counter) -> list[Figure]:
    context = LambdaContextStub()
    api.answer_delay = plan.answer_delay
    try:
        one: list[float] = []
        ten: list[float] = []
        for _ in range(plan.batch_rounds):
            for size, samples in ((1, one), (10, ten)):
                event = sqs_batch(ids.next(size), size)
                started = time.perf_counter()
                result = app.lambda_handler(event, context)
                samples.append(time.perf_counter() - started)
                assert len(result["submitted"]) == size, result
    finally:
        api.answer_delay = 0.0
    single, many = statistics.median(one), statistics.median(ten)
    return [
        Figure(
            "batch",
            f"SQS batch of 10 {many * 1000:.0f} ms / one message {single * 1000:.0f} ms"
            f" (API answers after {plan.answer_delay * 1000:.0f} ms)",
            many / single,
            2.0,
        )
    ]


@dataclass
class Run:
    served: float  # spawn to the result written: what the caller of a cold start waits for
    exited: float  # spawn to the process gone, teardown included
    peak_kb: int


def cold_run(command: list[str], env: dict[str, str]) -> Run:
    served_read, served_write = os.pipe()
    started = time.perf_counter()
    with subprocess.Popen(
        command,
        env={**env, "BENCH_SERVED_FD": str(served_write)},
        pass_fds=(served_write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        os.close(served_write)
        with os.fdopen(served_read, "rb") as served_pipe:
            said = served_pipe.readline()  # the child's line, or EOF if it failed first
        served = time.perf_counter() - started
        _, error_bytes = process.communicate()
    exited = time.perf_counter() - started
    error = error_bytes.decode()
    if process.returncode != 0 or said != b"served\n":
        raise SystemExit(f"cold run {command} failed: {error}")
    # The child reports its own high-water mark: a parent's rusage would count the forked copy of the bench.
    return Run(served, exited, int(error.rsplit("peak-rss-kb=", 1)[1]))


def cold(api: Emulator, plan: Plan, ncp_zip: Path | None, lambda_dir: Path | None) -> list[Figure]:
    # Every cold process is the same bare interpreter with -S, so no site-packages but the ones
    # meant for it are visible: the venv's for the reference and the checkout, the artifact's own otherwise.
    python = getattr(sys, "_base_executable", sys.executable)
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DATAFLOW_", "NCLOUD_", "POWERTOOLS_"))},
        **config(api.url),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    venv_env = {**base_env, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    # A cold process is a fresh container: its duplicate memory is empty, so one event serves every run.
    s3, ncp = json.dumps(s3_event(0)), json.dumps(NCP_EVENT)
    modes: dict[str, tuple[list[str], dict[str, str]]] = {
        "reference": ([python, "-S", str(COLD), "reference"], {**venv_env, "BENCH_EVENT": s3}),
        "checkout": ([python, "-S", str(COLD), "checkout", str(ROOT)], {**venv_env, "BENCH_EVENT": s3}),
    }
    runtime = sys.version_info[:2] == (3, 13)
    with contextlib.ExitStack() as stack:
        if ncp_zip is not None and runtime:
            unpacked = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ncp-action-")))
            with zipfile.ZipFile(ncp_zip) as archive:
                archive.extractall(unpacked)
            modes["ncp zip"] = ([python, "-S", str(COLD), "ncp", str(unpacked)], {**base_env, "BENCH_EVENT": ncp})
        if lambda_dir is not None and runtime:
            modes["sam build"] = ([python, "-S", str(COLD), "lambda", str(lambda_dir)], {**base_env, "BENCH_EVENT": s3})
        runs: dict[str, list[Run]] = {name: [] for name in modes}

        def run(name: str) -> Run:
            return cold_run(*modes[name])

        # Warm-up: the disk cache fills, and the checkout writes its bytecode once (as after any first
        # run); an artifact never does, as on the platforms, whose code directories are read-only.
        for name, (command, env) in modes.items():
            writes = name in ("reference", "checkout")
            cold_run(command, {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE" or not writes})
        orders = Orders(list(modes))
        for _ in range(plan.cold_runs):
            for name in orders.next():  # a round runs every mode once
                runs[name].append(run(name))
    median = {name: statistics.median(r.served for r in values) for name, values in runs.items()}
    peak = {name: max(r.peak_kb for r in values) for name, values in runs.items()}
    ref_kb = peak["reference"]

    def ratio(name: str, moment: Callable[[Run], float]) -> float:
        # Each run against the reference of its own round: the machine's drift over the minutes of
        # the bench falls on both sides of every ratio instead of on whichever mode it happens to hit.
        pairs = zip(runs[name], runs["reference"], strict=True)
        return statistics.median(moment(mine) / moment(theirs) for mine, theirs in pairs)

    figures = []
    for name, label in (("checkout", "cold, checkout"), ("ncp zip", "cold, ncp zip"), ("sam build", "cold, sam build")):
        if name in median:
            detail = (
                f"{median[name] * 1000:.0f} ms / reference {median['reference'] * 1000:.0f} ms to the result"
                f" (to the exit: {ratio(name, lambda each: each.exited):.2f}x)"
            )
            figures.append(Figure(label, detail, ratio(name, lambda each: each.served), 1.10))
        elif runtime:
            figures.append(Figure(label, "not measured: `make bench` builds the artifacts", None, None))
        else:
            figures.append(Figure(label, "not applicable: the artifacts are built for Python 3.13 only", None, None))
    for name in median:
        if name == "reference":
            continue
        figures.append(
            Figure(
                f"memory, {name}",
                f"peak RSS {peak[name] / 1024:.1f} MB / reference {ref_kb / 1024:.1f} MB",
                peak[name] / ref_kb,
                1.10,
                timed=False,
            )
        )
    return figures


def largest(sizes: dict[str, int], count: int = 5) -> str:
    top = sorted(sizes.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {size / 1e3:.0f} kB" for name, size in top)


def component(parts: tuple[str, ...]) -> str:
    inner = [part for part in parts if part not in ("virtualenv", "lib", "python3.13", "site-packages")]
    return inner[0] if len(inner) > 1 else "(top-level files)"


def sizes(ncp_zip: Path | None, lambda_dir: Path | None) -> list[Figure]:
    figures = []
    if ncp_zip is not None:
        with zipfile.ZipFile(ncp_zip) as archive:
            packed: dict[str, int] = {}
            for info in archive.infolist():
                key = component(tuple(info.filename.split("/")))
                packed[key] = packed.get(key, 0) + info.compress_size
            unpacked = sum(info.file_size for info in archive.infolist())
            pyc = sum(info.compress_size for info in archive.infolist() if info.filename.endswith(".pyc"))
        figures.append(
            Figure(
                "size, ncp zip",
                f"{ncp_zip.stat().st_size / 1e6:.2f} MB zipped ({unpacked / 1e6:.2f} MB unpacked, bytecode"
                f" {pyc / 1e6:.2f} MB zipped); largest: {largest(packed)}",
                None,
                None,
            )
        )
    if lambda_dir is not None:
        on_disk: dict[str, int] = {}
        pyc_total = 0
        for path in lambda_dir.rglob("*"):
            if path.is_file():
                key = component(path.relative_to(lambda_dir).parts)
                on_disk[key] = on_disk.get(key, 0) + path.stat().st_size
                pyc_total += path.stat().st_size if path.suffix == ".pyc" else 0
        figures.append(
            Figure(
                "size, sam build",
                f"{sum(on_disk.values()) / 1e6:.2f} MB unpacked (bytecode {pyc_total / 1e6:.2f} MB);"
                f" largest: {largest(on_disk)}",
                None,
                None,
            )
        )
    return figures


def smoke_report(figures: list[Figure], *, table: bool) -> int:
    """A smoke run proves every part runs: one line when all did, the table when asked or a judged target missed.

    Its few calls judge no time (a CI log would show noise, such as a negative cost, as figures), so `make test`
    prints the table only when a peak memory, which needs no repetitions, missed its target.
    """
    missed = [figure.name for figure in figures if not figure.timed and figure.missed]
    if table or missed:
        for figure in figures:
            print(figure.line(judged=not figure.timed))
    if missed:
        print(f"bench smoke on Python {sys.version.split()[0]}: MISSED its target: {', '.join(missed)}")
        return 1
    print(
        f"bench smoke on Python {sys.version.split()[0]}: every part ran ({len(figures)} figures; "
        "`make bench` measures and judges the timings)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few calls of each part: proves the bench runs")
    parser.add_argument("--table", action="store_true", help="with --smoke: print every figure, as the bench does")
    parser.add_argument("--ncp-zip", type=Path, help="dist/ncp-action.zip from `make package-ncp`")
    parser.add_argument("--lambda-dir", type=Path, help="a `make build-LauncherFunction ARTIFACTS_DIR=...` output")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    ids = Counter()
    if not args.smoke:
        print(f"Python {sys.version.split()[0]}: bench, loopback emulator", flush=True)
    with Emulator({ACCESS: SECRET}) as api:
        # lambda_handler reads its configuration from the environment, as on Lambda.
        os.environ.update(config(api.url))
        with production_logging_to_devnull():
            figures = warm(api, plan, ids) + history(api, plan, ids) + batch(api, plan, ids)
        figures += cold(api, plan, args.ncp_zip, args.lambda_dir)
    figures += sizes(args.ncp_zip, args.lambda_dir)
    if args.smoke:
        return smoke_report(figures, table=args.table)
    for figure in figures:
        print(figure.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
