"""The operator's commands against the emulator: explain, backfill, runs and doctor, as a user runs them."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from emulator.server import Emulator, Fault, Received, gateway_error
from handler.launcher import Launcher
from tests.conftest import (
    ACCESS_KEY,
    ROOT,
    SECRET_KEY,
    FakeClock,
    JsonLines,
    cli,
    cli_on_terminal,
    connected,
    container,
    load_event,
    result_of,
)

ROUTES = [
    {
        "name": "sales",
        "match": {
            "source": "object",
            "bucket": "acme-lake",
            "prefix": "landing/sales/",
            "suffix": ".parquet",
            "pattern": "dt=(?P<day>\\d{4}-\\d{2}-\\d{2})/",
        },
        "jobId": "SalesJob1",
        "parameters": {"$path": "{bucket}/{key}", "$day": "{match.day}"},
    },
    {"name": "deletes", "match": {"bucket": "acme-lake", "events": ["ObjectRemoved:*"]}, "jobId": "DeleteJob1"},
    {
        "name": "nightly",
        "match": {"source": "schedule", "schedule": "nightly"},
        "jobId": "NightJob1",
        "parameters": {"$date": "{time-1d:%Y-%m-%d}"},
    },
]


@pytest.fixture
def api() -> Iterator[Emulator]:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as emulator:  # the real clock: the commands sign with it
        yield emulator


def env(api: Emulator, **more: str) -> dict[str, str]:
    return connected(api.url, **{"DATAFLOW_ROUTES": json.dumps(ROUTES), **more})


def object_event(tmp_path: Path, bucket: str, key: str, event_name: str = "ObjectCreated:Put") -> str:
    event = load_event("s3-put.json")
    record = event["Records"][0]
    record["eventName"] = event_name
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["object"]["key"] = key
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return str(path)


def explained(api: Emulator, path: str, *options: str) -> dict[str, dict[str, Any]]:
    done = cli("explain", path, *options, env=env(api))
    assert done.returncode == 0, done.stderr
    [record] = json.loads(done.stdout)["records"]
    return {verdict["route"]: verdict for verdict in record["routes"]}


@pytest.mark.parametrize(
    ("bucket", "key", "event_name", "route", "failed", "seen"),
    [
        ("other-lake", "landing/sales/dt=2026-11-27/a.parquet", "ObjectCreated:Put", "sales", "bucket", "other-lake"),
        ("acme-lake", "landing/hr/dt=2026-11-27/a.parquet", "ObjectCreated:Put", "sales", "prefix", "landing/hr/"),
        ("acme-lake", "landing/sales/dt=2026-11-27/a.csv", "ObjectCreated:Put", "sales", "suffix", "a.csv"),
        ("acme-lake", "landing/sales/day=27/a.parquet", "ObjectCreated:Put", "sales", "pattern", "day=27"),
        ("acme-lake", "landing/sales/dt=2026-11-27/a.parquet", "ObjectRemoved:Delete", "sales", "events", "Removed"),
        ("acme-lake", "landing/sales/dt=2026-11-27/a.parquet", "ObjectCreated:Put", "nightly", "source", "object"),
    ],
)
def test_explain_names_the_first_filter_that_failed_and_what_it_saw(
    api: Emulator, tmp_path: Path, bucket: str, key: str, event_name: str, route: str, failed: str, seen: str
) -> None:
    verdicts = explained(api, object_event(tmp_path, bucket, key, event_name), "--offline")
    verdict = verdicts[route]
    assert (verdict["fires"], verdict["failed"]) == (False, failed)
    assert seen in verdict["seen"]


def test_explain_a_schedule_miss_says_which_name_it_wanted(api: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"schedule": "hourly", "time": "2026-11-28T01:00:00Z"}), encoding="utf-8")
    verdict = explained(api, str(path), "--offline")["nightly"]
    assert (verdict["failed"], verdict["wanted"], verdict["seen"]) == ("schedule", "nightly", "hourly")


def test_explain_says_an_object_under_the_routes_output_is_its_own_as_invoke_skips_it(
    api: Emulator, tmp_path: Path
) -> None:
    routes = [{**ROUTES[0], "output": "acme-lake/landing/sales/dt=2026-11-27/_out/", "allowRecursion": True}]
    path = object_event(tmp_path, "acme-lake", "landing/sales/dt=2026-11-27/_out/a.parquet")
    done = cli("explain", path, "--offline", env=env(api, DATAFLOW_ROUTES=json.dumps(routes)))
    assert done.returncode == 0, done.stderr
    [verdict] = json.loads(done.stdout)["records"][0]["routes"]
    assert (verdict["fires"], verdict["why"].split(":")[0]) == (False, "own-output")
    invoked = cli("invoke", path, "--dry-run", env=env(api, DATAFLOW_ROUTES=json.dumps(routes)))
    assert [skip["reason"] for skip in json.loads(invoked.stdout)["skipped"]] == ["own-output"]


def test_explain_a_hit_shows_what_would_be_sent_and_whether_the_service_has_it(api: Emulator, tmp_path: Path) -> None:
    path = object_event(tmp_path, "acme-lake", "landing/sales/dt=2026-11-27/a.parquet")
    first = explained(api, path)["sales"]
    assert first["fires"] is True
    assert first["parameters"] == {"$path": "acme-lake/landing/sales/dt=2026-11-27/a.parquet", "$day": "2026-11-27"}
    assert first["service"] == "absent (0 executions in the window)"
    done = cli("invoke", path, env=env(api))
    assert done.returncode == 0, done.stderr
    [run] = api.all_executions()
    assert explained(api, path)["sales"]["service"] == f"found {run['jobExecutionId']}"
    assert [request.method for request in api.received].count("POST") == 1  # explain never submits


def test_explain_on_ncp_reads_the_settings_the_payload_carries_as_invoke_does(api: Emulator, tmp_path: Path) -> None:
    # Issue 23, item 11: explain dropped the payload's DATAFLOW_TIMEZONE ($date one day off) and needed shell routes.
    route = {"name": "nightly", "match": {"source": "schedule"}, "jobId": "NightJob1"}
    route["parameters"] = {"$date": "{time:%Y-%m-%d}"}
    payload = {
        "time": "2026-12-30T17:00:00Z",
        "DATAFLOW_TIMEZONE": "Asia/Seoul",
        "DATAFLOW_ROUTES": json.dumps([route]),
    }
    path = tmp_path / "cron.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    shell = connected(api.url)  # no routes, no zone in the shell
    done = cli("explain", str(path), "--platform", "ncp", "--offline", env=shell)
    assert done.returncode == 0, done.stderr
    [verdict] = json.loads(done.stdout)["records"][0]["routes"]
    invoked = cli("invoke", str(path), "--platform", "ncp", "--dry-run", env=shell)
    [sent] = json.loads(invoked.stdout)["submitted"]
    assert verdict["parameters"] == sent["request"]["parameters"] == {"$date": "2026-12-31"}
    # A newcomer's second trial: explain said it fires where invoke (not a dry run) refuses a time to come.
    assert "invoke refuses it (bad-event) until that time has come" in verdict["note"]


def test_explain_one_upload_by_bucket_and_key_finds_the_run_its_notification_started(
    api: Emulator, tmp_path: Path
) -> None:
    # Issue 23, item 15: "why didn't this file run" without writing an event file; it traces the upload to its run.
    key = "landing/sales/dt=2026-11-27/a b+.parquet"
    asked = ("explain", "--bucket", "acme-lake", "--key", key)
    before = json.loads(cli(*asked, env=env(api)).stdout)["records"][0]
    assert before["source"]["key"] == key
    [sales] = [verdict for verdict in before["routes"] if verdict["route"] == "sales"]
    assert sales["parameters"]["$path"] == f"acme-lake/{key}" and sales["service"].startswith("absent")
    assert cli("invoke", object_event(tmp_path, "acme-lake", quote_plus(key, safe="/")), env=env(api)).returncode == 0
    [run] = api.all_executions()
    status, shown = cli_on_terminal(*asked, env=env(api))
    assert status == 0
    assert f"object acme-lake/{key} ObjectCreated:Put" in shown
    assert f"  fires sales: job SalesJob1, $path=acme-lake/{key}, $day=2026-11-27" in shown
    assert f"        service: found {run['jobExecutionId']}" in shown
    assert "  no    nightly: source wanted 'schedule', saw 'object'" in shown


def test_explain_reads_aws_sqs_receive_message_output_as_the_messages_it_holds(api: Emulator, tmp_path: Path) -> None:
    # Issue 23, item 15: raw `aws sqs receive-message` output was "unrecognised event".
    body = Path(object_event(tmp_path, "acme-lake", "landing/sales/dt=2026-11-27/a.parquet")).read_text("utf-8")
    received = {"Messages": [{"MessageId": "m-1", "ReceiptHandle": "r", "MD5OfBody": "x", "Body": body}]}
    path = tmp_path / "received.json"
    path.write_text(json.dumps(received), encoding="utf-8")
    done = cli("explain", str(path), "--offline", env=env(api))
    assert done.returncode == 0, done.stderr
    assert "read as `aws sqs receive-message` output" in done.stderr
    [record] = json.loads(done.stdout)["records"]
    assert record["source"]["messageId"] == "m-1"
    assert [verdict["route"] for verdict in record["routes"] if verdict["fires"]] == ["sales"]


def backfill(api: Emulator, *more: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "backfill", "--route", "nightly", "--from", "2026-11-01", "--to", "2026-11-10", *more, env=env(api, **settings)
    )


def test_backfill_runs_every_step_once_and_a_rerun_skips_what_started(api: Emulator) -> None:
    done = backfill(api)
    assert done.returncode == 0, done.stderr
    dates = sorted(execution["parsedParameters"]["$date"] for execution in api.all_executions())
    assert dates == [f"2026-10-{31}"] + [f"2026-11-{day:02d}" for day in range(1, 10)]
    assert done.stdout.splitlines()[-1] == "10 submitted"
    again = backfill(api)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "10 skipped"
    assert len(api.all_executions()) == 10


def test_backfill_without_a_terminal_prints_a_line_per_step(api: Emulator) -> None:
    done = backfill(api, "--concurrency", "1")
    said, *lines = done.stderr.splitlines()
    # Steps a month back are past what the duplicate check may read (DATAFLOW_DEDUP_WINDOW_HOURS' largest value).
    assert said == "warning: runs older than 14 days are not read: what was started before is not seen"
    assert [line.split()[0] for line in lines] == [f"{index}/10" for index in range(1, 11)]
    assert lines[0].split()[1:3] == ["2026-11-01T00:00:00+00:00", "submitted"]


def test_backfill_on_a_terminal_draws_a_progress_bar(api: Emulator) -> None:
    leader, follower = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NCLOUD_", "DATAFLOW_"))}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handler",
            "backfill",
            "--route",
            "nightly",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-10",
        ],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env(api)},
        stdout=subprocess.PIPE,
        stderr=follower,
    ) as process:
        os.close(follower)
        drawn = _read_all(leader)
        assert process.wait(60) == 0
    assert "\r[##############################] 10/10 submitted 10" in drawn
    assert drawn.count("\r[") == 10


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other end closed: Linux reports EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def test_ctrl_c_stops_a_backfill_after_the_steps_in_flight_and_a_rerun_goes_on(api: Emulator) -> None:
    third = threading.Event()
    hold = threading.Event()

    def slow_after_three(request: Received) -> None:
        if request.method == "POST" and len(api.posts) >= 3:
            third.set()
            hold.wait(10)  # the step in flight when Ctrl-C comes finishes after it

    api.on_request = slow_after_three
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NCLOUD_", "DATAFLOW_"))}
    args = ["backfill", "--route", "nightly", "--from", "2026-11-01", "--to", "2026-11-10", "--concurrency", "1"]
    with subprocess.Popen(
        [sys.executable, "-m", "handler", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env(api)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert third.wait(30)
        process.send_signal(signal.SIGINT)
        hold.set()
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    assert out.splitlines()[-1] == "3 submitted; stopped after 3 of 10 (Ctrl-C): run it again to go on"
    api.on_request = None
    again = backfill(api)
    assert again.stdout.splitlines()[-1] == "3 skipped, 7 submitted"
    assert len(api.all_executions()) == 10


def test_backfill_can_run_again_exactly_the_steps_whose_run_failed(api: Emulator) -> None:
    assert backfill(api).returncode == 0
    failed = [e for e in api.all_executions() if e["parsedParameters"]["$date"] in ("2026-11-02", "2026-11-05")]
    for execution in failed:
        api.set_status("NightJob1", execution["jobExecutionId"], "FAILED")
    done = backfill(api, "--rerun-failed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "2 submitted"
    dates = sorted(e["parsedParameters"]["$date"] for e in api.all_executions() if e["status"] == "READY")
    assert dates.count("2026-11-02") == 1 and dates.count("2026-11-05") == 1
    assert len(api.all_executions()) == 12


@pytest.mark.parametrize(
    ("older", "options"),
    [(300, {"limit_cap": 20, "newest_first": False}), (2100, {"newest_first": False}), (300, {"limit_cap": 20})],
    ids=["capped at 20, oldest first", "oldest first behind 2,100 older runs", "capped at 20, newest first"],
)
def test_rerun_failed_reruns_each_failed_step_once_in_any_listing(
    api: Emulator, older: int, options: dict[str, Any]
) -> None:
    # Issue 22, finding 2: the command's own pager stopped at the first page shorter than 100 and read
    # no further than 20 pages; one failed step ran twice in two calls, others never.
    for name, value in options.items():
        setattr(api, name, value)
    for index in range(older):
        api.plant("NightJob1", api.clock() - 3 * 86400 + index, "COMPLETED", {"$date": f"old-{index}"})
    assert backfill(api).returncode == 0
    failed = [e for e in api.all_executions() if e["parsedParameters"]["$date"] in ("2026-11-02", "2026-11-05")]
    for execution in failed:
        api.set_status("NightJob1", execution["jobExecutionId"], "FAILED")
    for _ in range(2):
        done = backfill(api, "--rerun-failed")
        assert done.returncode == 0, done.stderr
    dates = [e["parsedParameters"]["$date"] for e in api.all_executions() if e["status"] == "READY"]
    assert dates.count("2026-11-02") == 1 and dates.count("2026-11-05") == 1
    assert len(api.all_executions()) == older + 12


def reprocess(api: Emulator, behaviour: str, routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    more = {} if routes is None else {"DATAFLOW_ROUTES": json.dumps(routes)}
    done = backfill(api, "--to", "2026-11-03", "--reprocess-behavior", behaviour, "--json", **more)
    assert done.returncode in (0, 1), done.stderr
    return {"status": done.returncode, **json.loads(done.stdout)}


@pytest.mark.parametrize("dedup", [None, "$dedup"], ids=["runs told by parameters", "runs carry a dedupParameter"])
def test_reprocess_completed_reruns_each_step_once_and_never_while_its_run_is_going(
    api: Emulator, dedup: str | None
) -> None:
    # Issue 23, item 8: only FAILED/CANCELED steps could be re-run; a forced re-run has an identity of its own.
    routes = [{**ROUTES[2], **({"dedupParameter": dedup} if dedup else {})}]
    assert reprocess(api, "none", routes)["status"] == 0
    firsts = {e["jobExecutionId"] for e in api.all_executions()}
    refused = reprocess(api, "completed", routes)  # every first run is still READY
    assert refused["status"] == 1 and {row["outcome"] for row in refused["rows"]} == {"refused"}
    assert "is READY: a step is not run again while its run may still be going" in refused["rows"][0]["detail"]
    api.finish("NightJob1")
    forced = reprocess(api, "completed", routes)
    assert forced["status"] == 0 and [row["outcome"] for row in forced["rows"]] == ["submitted"] * 3
    assert {row["rerunOf"] for row in forced["rows"]} == firsts
    assert all(row["detail"].startswith("re-run of ") for row in forced["rows"])
    api.finish("NightJob1")
    again = reprocess(api, "completed", routes)  # the same forced backfill, run twice: each step started once
    assert [row["outcome"] for row in again["rows"]] == ["skipped"] * 3 and len(api.all_executions()) == 6
    if dedup:  # the re-run carries its own key, not its first run's
        assert len({e["parsedParameters"][dedup] for e in api.all_executions()}) == 6


def test_reprocess_failed_runs_missing_and_failed_steps_and_skips_completed_ones(api: Emulator) -> None:
    assert backfill(api, "--to", "2026-11-02").returncode == 0
    first, second = sorted(api.all_executions(), key=lambda e: e["parsedParameters"]["$date"])
    api.finish("NightJob1", first["jobExecutionId"], "FAILED")
    api.finish("NightJob1", second["jobExecutionId"])
    done = reprocess(api, "failed")
    assert [(row["outcome"], row.get("rerunOf")) for row in done["rows"]] == [
        ("submitted", first["jobExecutionId"]),
        ("skipped", None),
        ("submitted", None),  # 2026-11-03 had no run
    ]
    assert done["rows"][1]["detail"] == "duplicate" and len(api.all_executions()) == 4
    assert reprocess(api, "failed")["rows"][0]["outcome"] == "refused"  # its re-run is READY


def test_a_rerun_call_has_its_own_identity_and_says_so_in_the_result_and_the_log(
    emulator: Emulator, launcher: Launcher, logs: JsonLines
) -> None:
    config = connected(emulator.url, DATAFLOW_ROUTES=json.dumps([ROUTES[2]]))
    plain = {"route": "nightly", "time": "2026-11-01T00:00:00Z"}
    [first] = result_of(launcher, config, plain)["submitted"]
    emulator.finish("NightJob1")
    [rerun] = result_of(launcher, config, {**plain, "rerunOf": first["jobExecutionId"]})["submitted"]
    assert rerun["dedupKey"] != first["dedupKey"] and rerun["jobExecutionId"] != first["jobExecutionId"]
    assert rerun["source"]["rerunOf"] == first["jobExecutionId"]
    [record] = [r for r in logs.records if r.get("message") == "submitted" and r.get("rerunOf")]
    assert record["jobExecutionId"] == rerun["jobExecutionId"]
    assert result_of(launcher, config, plain)["skipped"][0]["reason"] == "duplicate"  # the plain call is still one


@pytest.mark.parametrize("lost_answer", [True, False], ids=["retry after a lost answer", "plain second delivery"])
def test_a_rerun_call_delivered_twice_into_fresh_containers_starts_one_rerun(
    clock: FakeClock, emulator: Emulator, lost_answer: bool
) -> None:
    # Review of issue 23, finding 1: a re-run without a dedupParameter skipped every check, so Lambda's retry
    # after unknown-outcome (or `invoke` run twice, or two overlapping forced backfills) started it again.
    config = connected(emulator.url, DATAFLOW_ROUTES=json.dumps([ROUTES[2]]))
    plain = {"route": "nightly", "time": "2026-11-01T00:00:00Z"}
    [first] = result_of(container(clock), config, plain)["submitted"]
    emulator.finish("NightJob1")
    clock.advance(600)  # the night ran; the re-run is asked after it ended
    rerun = {**plain, "rerunOf": first["jobExecutionId"]}
    if lost_answer:
        emulator.inject(Fault(drop=True, execute=True, method="POST"))  # the re-run starts, its answer is lost
        [settled] = result_of(container(clock), config, rerun)["submitted"]  # the lookup finds it: not resent
        assert settled["jobExecutionId"] and len(emulator.all_executions()) == 2
    else:
        assert result_of(container(clock), config, rerun)["submitted"]
    [again] = result_of(container(clock), config, rerun)["skipped"]  # the platform delivers the same call again
    assert again["reason"] == "duplicate" and len(emulator.all_executions()) == 2
    [started] = [e for e in emulator.all_executions() if e["jobExecutionId"] != first["jobExecutionId"]]
    assert again["jobExecutionId"] == started["jobExecutionId"]


def test_a_rerun_of_a_run_still_going_or_of_no_run_is_refused_naming_it(clock: FakeClock, emulator: Emulator) -> None:
    config = connected(emulator.url, DATAFLOW_ROUTES=json.dumps([ROUTES[2]]))
    plain = {"route": "nightly", "time": "2026-11-01T00:00:00Z"}
    [first] = result_of(container(clock), config, plain)["submitted"]  # READY until it ends
    [going] = result_of(container(clock), config, {**plain, "rerunOf": first["jobExecutionId"]})["failed"]
    assert going["code"] == "rerun-refused" and not going["retryable"]
    assert f"the run it re-runs, {first['jobExecutionId']}, is READY" in going["error"]
    [unknown] = result_of(container(clock), config, {**plain, "rerunOf": "NoSuchRun1"})["failed"]
    assert unknown["code"] == "bad-event" and "rerunOf NoSuchRun1 names no run of job NightJob1" in unknown["error"]
    assert len(emulator.all_executions()) == 1


def test_a_dry_run_backfill_shows_what_each_step_would_send(api: Emulator) -> None:
    # Issue 23, item 9: the Seoul date arithmetic could not be checked before the backfill ran.
    done = backfill(api, "--to", "2026-11-02", "--dry-run", DATAFLOW_TIMEZONE="Asia/Seoul")
    assert done.returncode == 0, done.stderr
    assert "PARAMETERS" in done.stdout.splitlines()[0]
    assert "2026-11-01T00:00:00+09:00        dry-run    -              $date=2026-10-31" in done.stdout
    data = json.loads(backfill(api, "--to", "2026-11-02", "--dry-run", "--json").stdout)
    assert [row["parameters"] for row in data["rows"]] == [{"$date": "2026-10-31"}, {"$date": "2026-11-01"}]
    assert not api.posts


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [("0001-01-01", "0001-01-03", "--from 0001-01-01"), ("9999-12-20", "9999-12-31", "--from 9999-12-20")],
    ids=["go-zero-time", "year-9999"],
)
def test_a_range_outside_an_events_times_is_refused_before_any_step_starts(
    api: Emulator, start: str, end: str, named: str
) -> None:
    done = backfill(api, "--from", start, "--to", end)  # each step would fail as bad-event, one by one
    assert done.returncode == 2, done.stderr
    assert f"{named} is out of range: a step's time, like an event's, lies after 1970-01-01 and before 9000" in (
        done.stderr
    )
    assert not api.posts and not done.stdout


def test_more_than_a_hundred_steps_need_yes_where_nobody_can_be_asked(api: Emulator) -> None:
    done = backfill(api, "--every", "1h")  # 217 steps: a nightly route stepped by the hour
    assert done.returncode == 2 and "217 steps would start up to 217 runs of route nightly" in done.stderr
    assert "add --yes" in done.stderr and not api.posts
    assert backfill(api, "--every", "1h", "--dry-run").returncode == 0  # a dry run starts nothing: never asked


def test_more_than_a_hundred_steps_are_asked_about_on_a_terminal(api: Emulator) -> None:
    leader, follower = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NCLOUD_", "DATAFLOW_"))}
    args = ["backfill", "--route", "nightly", "--from", "2026-11-01", "--to", "2026-11-10", "--every", "1h"]
    with subprocess.Popen(
        [sys.executable, "-m", "handler", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env(api)},
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
    ) as process:
        os.close(follower)
        os.write(leader, b"n\n")
        drawn = _read_all(leader)
        assert process.wait(60) == 2
    assert "217 steps will start up to 217 runs of route nightly (job NightJob1). Go on? [y/N]" in drawn
    assert "nothing started (not confirmed)" in drawn and not api.posts


def test_confirm_lets_the_steps_start_on_yes_typed_or_given() -> None:
    from handler.cli.backfill import confirm
    from handler.cli.common import CommandError

    confirm(101, "route r", yes=False, terminal=lambda: True, answer=lambda: "y\n")
    confirm(101, "route r", yes=True, terminal=lambda: False, answer=lambda: "")
    confirm(100, "route r", yes=False, terminal=lambda: False, answer=lambda: "")
    with pytest.raises(CommandError, match="not confirmed"):
        confirm(101, "route r", yes=False, terminal=lambda: True, answer=lambda: "\n")


def test_backfill_of_an_object_route_refuses_unless_asked_and_then_names_what_rendered_empty(api: Emulator) -> None:
    # Issue 23, item 10: a backfill of an object route submitted {'$path': '/', '$day': ''} in silence.
    # (Issue 24, item 7: without the flag, an object route's backfill is an object backfill, a sweep of its bucket:
    # tests/integration/test_sweep.py. Here, with no keys for object storage, it says which it needs.)
    args = ["backfill", "--route", "sales", "--from", "2026-11-01", "--to", "2026-11-01", "--dry-run"]
    swept = cli(*args, env=env(api))
    assert swept.returncode == 1 and "object storage needs AWS_ACCESS_KEY_ID" in swept.stdout
    done = cli(*args, "--allow-empty-placeholders", "--json", env=env(api))
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)["rows"]
    assert row["emptyPlaceholders"] == ["{bucket}", "{key}", "{match.day}"]
    assert row["parameters"] == {"$path": "/", "$day": ""} and row["detail"] == "empty: {bucket}, {key}, {match.day}"


def test_a_direct_call_of_an_object_route_runs_and_names_its_empty_placeholders(
    emulator: Emulator, launcher: Launcher, logs: JsonLines
) -> None:
    config = connected(emulator.url, DATAFLOW_ROUTES=json.dumps([ROUTES[0]]))
    [entry] = result_of(launcher, config, {"route": "sales", "time": "2026-11-01T00:00:00Z"})["submitted"]
    assert entry["source"]["emptyPlaceholders"] == ["{bucket}", "{key}", "{match.day}"]
    [record] = [r for r in logs.records if r.get("message") == "submitted"]
    assert record["emptyPlaceholders"] == ["{bucket}", "{key}", "{match.day}"]
    assert emulator.all_executions()[0]["parsedParameters"] == {"$path": "/", "$day": ""}


def test_a_failed_night_with_two_runs_of_one_second_is_re_run(api: Emulator) -> None:
    # A newcomer's second trial of issue 23: a night whose run and its re-run FAILED within one second (the
    # emulator fails runs at once) was "skipped duplicate re-run of" the other, every time: never re-run again.
    created = api.clock() - 3600
    for _ in range(2):
        api.plant("NightJob1", created, "FAILED", {"$date": "2026-10-31"})
    done = backfill(api, "--to", "2026-11-01", "--rerun-failed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "1 submitted"
    assert [run["status"] for run in api.all_executions()].count("READY") == 1


def test_rerun_failed_with_nothing_failed_says_so(api: Emulator) -> None:
    # A newcomer's trial of issue 23: with nothing to re-run it printed the table's header alone.
    assert backfill(api, "--to", "2026-11-02").returncode == 0
    done = backfill(api, "--to", "2026-11-02", "--rerun-failed")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "no step to run"


def test_runs_lists_the_job_newest_first_with_failed_ones_marked(api: Emulator) -> None:
    assert backfill(api, "--to", "2026-11-03").returncode == 0
    [first, *_] = api.all_executions()
    api.set_status("NightJob1", first["jobExecutionId"], "FAILED")
    done = cli("runs", "--job", "NightJob1", "--since", "1h", env=env(api))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("NightJob1: 3 runs since ")
    assert lines[0].endswith(", 1 FAILED, 2 READY")
    [marked] = [line for line in lines if line.startswith("!!")]
    assert first["jobExecutionId"] in marked and f"$date={first['parsedParameters']['$date']}" in marked
    data = json.loads(cli("runs", "--job", "NightJob1", "--json", env=env(api)).stdout)
    assert [run["status"] for run in data["runs"]].count("FAILED") == 1
    assert {run["runningMinutes"] for run in data["runs"]} == {0} and " MIN " in lines[1]


@pytest.mark.parametrize(("zone", "offset"), [("Asia/Seoul", "+09:00"), ("UTC", "+00:00")])
def test_runs_by_route_shows_the_header_and_rows_in_one_zone(api: Emulator, zone: str, offset: str) -> None:
    # Issue 23, item 15: runs took --job only, and its header was in UTC while its rows were in +09:00.
    assert backfill(api, "--to", "2026-11-02").returncode == 0
    done = cli("runs", "--route", "nightly", env=env(api, DATAFLOW_TIMEZONE=zone))
    assert done.returncode == 0, done.stderr
    header, _, *rows = done.stdout.splitlines()
    assert header.startswith("NightJob1: 2 runs since ") and f"{offset} ({zone})" in header
    assert len(rows) == 2 and all(row.split()[1].endswith(offset) for row in rows)
    typo = cli("runs", "--route", "nightlly", env=env(api))
    assert typo.returncode == 2 and "no route named 'nightlly' in DATAFLOW_ROUTES (routes: sales" in typo.stderr


def test_doctor_passes_where_everything_holds(api: Emulator) -> None:
    done = cli("doctor", env=env(api, DATAFLOW_TIMEZONE="Asia/Seoul"))
    assert done.returncode == 0, done.stdout + done.stderr
    now = datetime.now(UTC)  # issue 23, item 12: the wall time in both zones, the placeholders' one named
    assert f"now {now:%Y-%m-%d} " in done.stdout and " UTC is " in done.stdout
    assert "in DATAFLOW_TIMEZONE (Asia/Seoul): placeholders such as {time:%Y-%m-%d} render there" in done.stdout
    assert "credentials accepted; job SalesJob1 (sales) reachable" in done.stdout
    assert "job SalesJob1: lists count 0, order unknown (no runs to tell)" in done.stdout  # not "share one time"


@pytest.mark.parametrize(
    ("problem", "said", "fix"),
    [
        ("secret", "200: HTTP 401 Authentication Failed", "check NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY"),
        ("clock", "s off the gateway's", "synchronise the host's clock (NTP)"),
        ("job", "job DeleteJob1 (deletes): not-found", "check the jobId of route(s) deletes"),
    ],
)
def test_doctor_names_each_failure_and_its_fix(problem: str, said: str, fix: str) -> None:
    import time

    offset = 600.0 if problem == "clock" else 0.0
    jobs = {"SalesJob1", "NightJob1"} if problem == "job" else None
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=lambda: time.time() + offset, jobs=jobs) as api:
        settings = {"NCLOUD_SECRET_KEY": "wrong"} if problem == "secret" else {}
        done = cli("doctor", env=env(api, **settings))
    assert done.returncode == 1
    [failed] = [line for line in done.stdout.splitlines() if line.strip().startswith("failed") and said in line][:1]
    after = done.stdout.split(failed, 1)[1].splitlines()[1]
    assert after.strip() == f"fix: {fix}" or after.strip().startswith(f"fix: {fix}")


def test_doctor_warns_where_runs_cannot_be_identified() -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, echo="none") as api:
        assert (
            cli(
                "invoke",
                str(ROOT / "events" / "schedule-classic.json"),
                env=env(api) | {"DATAFLOW_ROUTES": json.dumps([ROUTES[2] | {"match": {"source": "schedule"}}])},
            ).returncode
            == 0
        )
        done = cli("doctor", env=env(api))
    assert done.returncode == 0
    assert "job NightJob1: runs echo no parameters: duplicate checks cannot identify runs" in done.stdout
    assert "route nightly: cannot identify runs: the run is started anyway" in done.stdout


def test_doctor_names_the_reading_where_only_a_runs_own_page_echoes() -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, list_echo="none") as api:
        schedule = str(ROOT / "events" / "schedule-classic.json")
        routes = json.dumps([ROUTES[2] | {"match": {"source": "schedule"}}])
        assert cli("invoke", schedule, env=env(api) | {"DATAFLOW_ROUTES": routes}).returncode == 0
        done = cli("doctor", env=env(api))
    assert done.returncode == 0
    assert "job NightJob1: the list echoes no parameters, a run's own page does (object)" in done.stdout
    assert "route nightly: exactly once" in done.stdout


def test_doctor_checks_the_routes_own_names_where_the_job_echoes_only_those_it_declares() -> None:
    # Issue 23, item 7: the job declares $date only; the route also sends $team, so a redelivery can double.
    route = ROUTES[2] | {"match": {"source": "schedule"}, "parameters": {"$date": "{time:%Y-%m-%d}", "$team": "ops"}}
    with Emulator({ACCESS_KEY: SECRET_KEY}, echo_only=frozenset({"$date"})) as api:
        routes = {"DATAFLOW_ROUTES": json.dumps([route])}
        assert cli("invoke", str(ROOT / "events" / "schedule-classic.json"), env=env(api) | routes).returncode == 0
        done = cli("doctor", env=env(api) | routes)
    assert done.returncode == 0
    assert "route nightly: no listed run echoes $team: the service echoes only the parameters" in done.stdout
    assert "fix: declare $team in job NightJob1" in done.stdout
    assert "exactly once" not in done.stdout
    assert "warning  route nightly: cannot identify runs" in done.stdout


def test_doctor_does_not_take_an_answers_travel_time_for_a_clock_offset() -> None:
    # Finding 8: an answer that took 15 s made doctor report the host's clock -15.8 s off.
    from handler.cli.doctor import _clock

    assert _clock(-15.8, 15.0).verdict == "ok"
    assert "between -15.8 and -0.8 s" in _clock(-15.8, 15.0).what
    assert _clock(-400.0, 15.0).verdict == "failed"
    assert _clock(-75.0, 0.2).verdict == "warning"


def test_explain_finds_a_run_older_than_the_dedup_window(api: Emulator, tmp_path: Path) -> None:
    # Finding 8: a COMPLETED run created 54 hours ago was "absent (0 executions in the window)".
    path = object_event(tmp_path, "acme-lake", "landing/sales/dt=2026-11-27/a.parquet")
    event = json.loads(Path(path).read_text(encoding="utf-8"))
    event["Records"][0]["eventTime"] = datetime.fromtimestamp(api.clock() - 55 * 3600, UTC).isoformat()
    Path(path).write_text(json.dumps(event), encoding="utf-8")
    parameters = {"$path": "acme-lake/landing/sales/dt=2026-11-27/a.parquet", "$day": "2026-11-27"}
    run = api.plant("SalesJob1", api.clock() - 54 * 3600, "COMPLETED", parameters)
    assert explained(api, path)["sales"]["service"] == f"found {run['jobExecutionId']}"


def test_backfill_skips_a_night_that_ran_before_the_dedup_window(api: Emulator) -> None:
    # Finding 8: backfill re-submitted a completed night whose run was 54 hours old.
    api.plant("NightJob1", api.clock() - 54 * 3600, "COMPLETED", {"$date": "2026-11-09"})
    done = cli("backfill", "--route", "nightly", "--from", "2026-11-10", "--to", "2026-11-10", env=env(api))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1 skipped"
    assert len(api.all_executions()) == 1


def test_doctor_reads_each_jobs_max_concurrent_runs_and_warns_where_a_max_running_is_above_it(api: Emulator) -> None:
    api.max_concurrent_runs = {"SalesJob1": 2, "NightJob1": 3}
    routes = [ROUTES[0] | {"maxRunning": 5}, ROUTES[1], ROUTES[2]]
    done = cli("doctor", env=env(api, DATAFLOW_ROUTES=json.dumps(routes)))
    assert done.returncode == 0, done.stdout + done.stderr  # warnings only
    lines = [line.strip() for line in done.stdout.splitlines()]
    warning = lines.index(
        "warning  route sales: maxRunning 5 is above the job's maxConcurrentRuns 2: past 2 runs the service refuses"
        " (deferred) or queues a run before the launcher's guard does"
    )
    assert lines[warning + 1] == "fix: set the route's maxRunning to 2 or less, or raise the job's maxConcurrentRuns"
    assert "ok       job SalesJob1: maxConcurrentRuns 2 (Data Flow runs at most 2 of its executions at once)" in lines
    assert (
        "ok       route nightly: no maxRunning; a create past the job's maxConcurrentRuns 3 is refused by Data Flow"
        " and deferred (kept, retried later), or held READY by it"
    ) in lines
    assert "ok       job DeleteJob1: no maxConcurrentRuns set; Data Flow does not limit its concurrent runs" in lines
    assert [request.path for request in api.received if "/executions" not in request.path] == [
        "/api/v1/jobs/SalesJob1",
        "/api/v1/jobs/DeleteJob1",
        "/api/v1/jobs/NightJob1",
    ]


def test_doctor_says_a_max_running_within_the_limit_is_fine(api: Emulator) -> None:
    api.max_concurrent_runs = {"SalesJob1": 2}
    done = cli("doctor", "--json", env=env(api, DATAFLOW_ROUTES=json.dumps([ROUTES[0] | {"maxRunning": 2}])))
    checks = json.loads(done.stdout)["checks"]
    assert {"verdict": "ok", "what": "route sales: maxRunning 2 is within the job's maxConcurrentRuns 2"} in checks


@pytest.mark.parametrize(
    ("reading", "said"),
    [
        ("none", "job SalesJob1: maxConcurrentRuns not available (this API does not answer the job)"),
        ("legacy", "job SalesJob1: maxConcurrentRuns not available (a service before September 2026)"),
    ],
)
def test_doctor_without_the_jobs_limit_says_not_available_and_checks_the_rest(
    api: Emulator, reading: str, said: str
) -> None:
    api.job_reading = reading
    api.max_concurrent_runs = {"SalesJob1": 2}
    done = cli("doctor", "--json", env=env(api, DATAFLOW_ROUTES=json.dumps([ROUTES[0] | {"maxRunning": 5}])))
    assert done.returncode == 0, done.stdout + done.stderr
    whats = [check["what"] for check in json.loads(done.stdout)["checks"]]
    assert said in whats
    assert (
        whats[0].startswith("now ")
        and whats[1].startswith("the host's clock is")
        and "credentials accepted; job SalesJob1 (sales) reachable" in whats[2]
    )
    assert not any("maxRunning" in what for what in whats)


def test_doctor_warns_when_the_job_cannot_be_read_and_still_exits_zero(api: Emulator) -> None:
    api.max_concurrent_runs = {"SalesJob1": 2}

    def refuse_the_job_read(request: Received) -> None:
        if "/executions" in request.path:  # the listing went through: the job's own read comes next
            api.inject(Fault(status=403, body=gateway_error("230", "Forbidden"), method="GET"))
            api.on_request = None

    api.on_request = refuse_the_job_read
    done = cli("doctor", "--json", env=env(api, DATAFLOW_ROUTES=json.dumps([ROUTES[0]])))
    assert done.returncode == 0, done.stdout + done.stderr
    [check] = [check for check in json.loads(done.stdout)["checks"] if "maxConcurrentRuns" in check["what"]]
    assert check["verdict"] == "warning"
    assert check["what"].startswith("job SalesJob1: maxConcurrentRuns not available, the job could not be read (230: ")


def test_explain_says_which_partitions_group_an_object_joins(api: Emulator, tmp_path: Path) -> None:
    route = {
        "name": "clicks",
        "match": {"source": "object", "pattern": r"^landing/clicks/dt=(?P<dt>[0-9-]+)/"},
        "jobId": "ClicksJob1",
        "coalesce": {"parameter": "$files", "groupBy": "{match.dt}"},
        "parameters": {"$dt": "{match.dt}"},
    }
    path = object_event(tmp_path, "acme-lake", "landing/clicks/dt=2026-12-05/a.json")
    done = cli("explain", path, "--offline", env=env(api, DATAFLOW_ROUTES=json.dumps([route])))
    assert done.returncode == 0, done.stderr
    [verdict] = json.loads(done.stdout)["records"][0]["routes"]
    assert verdict["coalesce"] == (
        "joins a group of up to 100 objects of its batch with groupBy {match.dt} = 2026-12-05, its key in $files"
    )
