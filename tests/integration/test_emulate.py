"""`emulate` from the shell: runs that end, faults, readings, limits, a seeded history, one line per request."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator.rehearsal import Rehearsal
from emulator.server import Emulator
from handler.cli import basics
from handler.dataflow.signing import Credentials, signed_headers
from handler.launcher import Launcher
from tests.conftest import ACCESS_KEY, ROOT, SECRET_KEY, FakeClock, cli, connected, result_of

JOB = "ReportJob1"


@pytest.fixture
def rehearse(clock: FakeClock) -> Iterator[Any]:
    """Starts the emulator `emulate` would build from these options, on the test's clock."""
    started: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        api = Rehearsal(**options).emulator({ACCESS_KEY: SECRET_KEY}, host="127.0.0.1", port=0, clock=clock.wall)
        started.append(api.start())
        return api

    yield start
    for api in started:
        api.stop()


def get(api: Emulator, path: str, clock: FakeClock) -> Any:
    """A signed GET, as the handler's client sends it, answered by the emulator."""
    headers = signed_headers(Credentials(ACCESS_KEY, SECRET_KEY), "GET", path, str(int(clock.wall() * 1000)))
    return requests.get(api.url + path, headers=headers, timeout=5).json()


def statuses(api: Emulator, clock: FakeClock) -> list[str]:
    """The job's runs as the service lists them, oldest first."""
    listing = get(api, f"/api/v1/jobs/{JOB}/executions?page=0&limit=100", clock)
    return [f"{run['parsedParameters'].get('$date')} {run['status']}" for run in reversed(listing["list"])]


def run_now(launcher: Launcher, api: Emulator, date: str, **routes: Any) -> dict[str, Any]:
    """A direct call of a route (maxRunning and the like from `routes`) that sends $date."""
    route = {"name": "nightly", "match": {"source": "direct"}, "jobId": JOB, "parameters": {"$date": date}, **routes}
    config = connected(api.url, DATAFLOW_ROUTES=json.dumps([route]))
    return result_of(launcher, config, {"route": "nightly", "time": f"{date}T17:00:00Z"})


def test_runs_end_by_rule_after_their_delay_on_the_clock(rehearse: Any, launcher: Launcher, clock: FakeClock) -> None:
    api = rehearse(finish=["FAILED,after=30s,when=$date=2026-11-26", "COMPLETED,after=60s"])
    for date in ("2026-11-25", "2026-11-26"):
        run_now(launcher, api, date)
    assert statuses(api, clock) == ["2026-11-25 READY", "2026-11-26 READY"]
    clock.advance(30)
    assert statuses(api, clock) == ["2026-11-25 READY", "2026-11-26 FAILED"]
    clock.advance(30)
    assert statuses(api, clock) == ["2026-11-25 COMPLETED", "2026-11-26 FAILED"]
    assert [run["runningTime"] for run in api.all_executions()] == [1, 0]


def test_every_nth_run_of_a_job_fails_and_the_rest_complete(
    rehearse: Any, launcher: Launcher, clock: FakeClock
) -> None:
    api = rehearse(finish=["FAILED,every=2", "COMPLETED"])
    for date in ("2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"):
        run_now(launcher, api, date)
    assert [line.split()[1] for line in statuses(api, clock)] == ["COMPLETED", "FAILED", "COMPLETED", "FAILED"]


def test_max_running_defers_until_a_run_ends(rehearse: Any, launcher: Launcher, clock: FakeClock) -> None:
    api = rehearse(finish=["COMPLETED,after=2m"], max_concurrent_runs=[f"{JOB}=5"])
    assert run_now(launcher, api, "2026-11-25", maxRunning=1)["submitted"]
    [deferred] = run_now(launcher, api, "2026-11-26", maxRunning=1)["failed"]
    assert deferred["error"].startswith("deferred") and deferred["retryable"]
    clock.advance(120)
    assert run_now(launcher, api, "2026-11-26", maxRunning=1)["submitted"]
    assert get(api, f"/api/v1/jobs/{JOB}", clock)["maxConcurrentRuns"] == 5


def test_the_jobs_own_limit_refuses_a_create_until_a_run_ends(
    rehearse: Any, launcher: Launcher, clock: FakeClock
) -> None:
    api = rehearse(finish=["COMPLETED,after=1m"], max_concurrent_runs=[f"{JOB}=1"])
    run_now(launcher, api, "2026-11-25")
    [refused] = run_now(launcher, api, "2026-11-26")["failed"]
    assert refused["error"].startswith("deferred: the job is at Data Flow's own limit")
    clock.advance(60)
    assert run_now(launcher, api, "2026-11-26")["submitted"]


def test_a_lost_answer_and_5xx_faults_meet_the_handlers_creates(
    rehearse: Any, launcher: Launcher, clock: FakeClock
) -> None:
    api = rehearse(fault=["lost,on=POST", "503,times=2,on=POST"])
    assert run_now(launcher, api, "2026-11-25")["submitted"]  # the lost answer is found by a lookup
    assert run_now(launcher, api, "2026-11-26")["submitted"]  # after two 503s
    posts = [request.status for request in api.posts]
    assert posts == [None, 503, 503, 200]  # None: the connection closed without an answer
    assert statuses(api, clock) == ["2026-11-25 READY", "2026-11-26 READY"]


def test_throttle_and_timeout_faults_answer_as_the_gateway_would(rehearse: Any, clock: FakeClock) -> None:
    api = rehearse(fault=["throttle,on=GET", "timeout,hold=0"])
    assert get(api, f"/api/v1/jobs/{JOB}/executions", clock)["error"]["errorCode"] == "420"
    assert get(api, f"/api/v1/jobs/{JOB}/executions", clock)["count"] == 0  # held 0 s, then answered
    assert [request.verdict.split("(")[0] for request in api.received] == ["fault: Fault", "fault: Fault"]


def test_the_listing_reads_as_the_options_say(rehearse: Any, clock: FakeClock) -> None:
    api = rehearse(
        seed=[f"{JOB},runs=5,over=10h,status=FAILED"],
        echo="list",
        echo_only="$date",
        order="oldest",
        limit_cap=2,
        count="page",
    )
    listing = get(api, f"/api/v1/jobs/{JOB}/executions?page=0&limit=100", clock)
    assert (listing["count"], listing["limit"], len(listing["list"])) == (2, 2, 2)
    first, second = listing["list"]
    assert first["createdDate"] < second["createdDate"]
    assert first["status"] == "FAILED" and first["parsedParameters"] == []  # $seeded is not a declared name


def test_a_history_file_seeds_runs_in_creation_order(rehearse: Any, clock: FakeClock, tmp_path: Path) -> None:
    runs = [
        {"jobId": JOB, "status": "FAILED", "ago": "2h", "parsedParameters": {"$date": "2026-11-26"}},
        {"jobId": JOB, "status": "COMPLETED", "createdDate": "2026-11-27T08:00:00+09:00", "jobExecutionId": "old1"},
        {"jobId": JOB, "status": "RUNNING", "parsedParameters": [{"key": "$date", "value": "2026-11-27"}]},
    ]
    (tmp_path / "runs.json").write_text(json.dumps({"list": runs}), encoding="utf-8")
    api = rehearse(history=str(tmp_path / "runs.json"), seed=[f"{JOB},runs=2,over=30m"])
    listing = get(api, f"/api/v1/jobs/{JOB}/executions?page=0&limit=100", clock)
    assert [(run["status"], run["parsedParameters"]) for run in listing["list"]] == [
        ("RUNNING", {"$date": "2026-11-27"}),
        ("COMPLETED", {"$seeded": "1"}),
        ("COMPLETED", {"$seeded": "0"}),
        ("FAILED", {"$date": "2026-11-26"}),
        ("COMPLETED", {}),
    ]
    assert listing["list"][-1]["jobExecutionId"] == "old1"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--finish", "DONE"], "a run ends COMPLETED, FAILED, CANCELED, not 'DONE'"),
        (["--finish", "FAILED,after=soon"], "after= takes a number and s, m, h or d"),
        (["--finish", "FAILED,if=$date=1"], "'if=$date=1' is not one of after=, when=, every="),
        (["--fault", "slow"], "the kind is throttle, lost, drop, cut, timeout or an HTTP status 400-599"),
        (["--fault", "503,on=PUT"], "on= is POST (creates) or GET (lookups)"),
        (["--fault", "503,hold=5s"], "hold= is how long a timeout holds its answer"),
        (["--seed", "J,runs=0"], "runs= takes a whole number of at least 1"),
        (["--max-concurrent-runs", "J"], "takes JOB=N, e.g. --max-concurrent-runs ReportJob1=2"),
        (["--history", "missing.json"], "--history missing.json: cannot read a JSON file there"),
    ],
)
def test_a_bad_rehearsal_option_is_one_line_with_a_fix(options: list[str], message: str) -> None:
    done = cli("emulate", "--port", "0", *options, env={})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


class TornLines:
    """A stdout where a write that is not a whole line waits until another thread writes too.

    It forces the worst interleaving of two records printed at once: each thread's partial write lands
    before either thread's newline. Whole-line writes never wait.
    """

    def __init__(self) -> None:
        self.text = ""
        self.lock = threading.Lock()
        self.meet = threading.Barrier(2)

    def write(self, chunk: str) -> int:
        with self.lock:
            self.text += chunk
        if not chunk.endswith("\n"):
            self.meet.wait(timeout=10)
        return len(chunk)

    def flush(self) -> None:
        pass


def test_requests_arriving_together_print_one_record_a_line(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    stdout = TornLines()
    monkeypatch.setattr(sys, "stdout", stdout)
    together = threading.Barrier(2)

    def send(job: str) -> None:
        together.wait(timeout=10)
        get(api, f"/api/v1/jobs/{job}/executions", clock)

    with Rehearsal().emulator(
        {ACCESS_KEY: SECRET_KEY}, host="127.0.0.1", port=0, on_request=basics.show, clock=clock.wall
    ) as api:
        senders = [threading.Thread(target=send, args=(job,)) for job in ("JobA", "JobB")]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=20)
    records = [json.loads(line) for line in stdout.text.splitlines()]
    assert sorted(record["path"] for record in records) == [
        "/api/v1/jobs/JobA/executions",
        "/api/v1/jobs/JobB/executions",
    ]


def test_the_shell_rehearsal_of_a_failed_night_and_its_rerun(tmp_path: Path) -> None:
    routes = [{"name": "nightly", "match": {"source": "schedule", "schedule": "nightly"}, "jobId": JOB,
               "parameters": {"$date": "{time-1d:%Y-%m-%d}"}}]  # fmt: skip
    (tmp_path / "routes.json").write_text(json.dumps(routes), encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "handler", "emulate", "--port", str(port), "--finish", "FAILED,every=3"]
    with subprocess.Popen([*command, "--finish", "COMPLETED"], cwd=ROOT, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            server.stdout.readline()  # the banner: it listens
            env = {
                "NCLOUD_ACCESS_KEY": "DEMOACCESSKEY",
                "NCLOUD_SECRET_KEY": "demo-secret-key",
                "DATAFLOW_ENDPOINT": f"http://127.0.0.1:{port}",
                "DATAFLOW_ROUTES": "@routes.json",
                "DATAFLOW_TIMEZONE": "Asia/Seoul",
            }
            nights = ("backfill", "--route", "nightly", "--from", "2026-11-25T02:00", "--to", "2026-11-27T02:00")
            first = cli(*nights, "--concurrency", "1", env=env, cwd=tmp_path)
            failed = cli("runs", "--job", JOB, "--since", "1h", "--fail-on-failed", env=env, cwd=tmp_path)
            rerun = cli(*nights, "--rerun-failed", env=env, cwd=tmp_path)
            after = cli("runs", "--job", JOB, "--since", "1h", "--json", env=env, cwd=tmp_path)
        finally:
            server.terminate()
    assert (first.returncode, first.stdout.splitlines()[-1]) == (0, "3 submitted"), first.stderr
    assert failed.returncode == 1 and "2 COMPLETED, 1 FAILED" in failed.stdout, failed.stdout
    assert rerun.returncode == 0 and rerun.stdout.splitlines()[-1] == "1 submitted", rerun.stdout
    assert "2026-11-27T02:00:00+09:00        submitted" in rerun.stdout  # the third create, the one that failed
    assert sorted(run["status"] for run in json.loads(after.stdout)["runs"]) == [
        "COMPLETED", "COMPLETED", "COMPLETED", "FAILED"
    ]  # fmt: skip
