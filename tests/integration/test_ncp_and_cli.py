"""The NAVER Cloud Functions adapter, dry runs, and the command line, against the live emulator."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator.server import Emulator, Fault
from handler import ncp
from handler.clocks import Clocks
from handler.errors import ConfigError, InvocationFailedError
from handler.launcher import Launcher
from handler.wiring import Wiring
from tests.conftest import (
    ACCESS_KEY,
    ROOT,
    SECRET_KEY,
    FakeClock,
    JsonLines,
    cli,
    cli_on_terminal,
    connected,
    load_event,
    result_of,
)
from tests.unit.test_signing import KNOWN_SIGNATURE


@pytest.fixture
def live_emulator() -> Iterator[Emulator]:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:
        yield api


@pytest.fixture
def ncp_launcher(monkeypatch: pytest.MonkeyPatch) -> Launcher:
    launcher = Launcher(Wiring(Clocks(sleep=lambda _: None)))
    monkeypatch.setattr(ncp, "launcher", launcher)
    for name in (
        "NCLOUD_ACCESS_KEY",
        "NCLOUD_SECRET_KEY",
        "DATAFLOW_JOB_ID",
        "DATAFLOW_ROUTES",
        "DATAFLOW_DRY_RUN",
        "DATAFLOW_ENDPOINT",
        "DATAFLOW_PARAMETERS",
        "__OW_DEADLINE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("__OW_ACTIVATION_ID", "7f3c1f0e2b9a4c1d")
    return launcher


def ncp_args(api: Emulator, **more: Any) -> dict[str, Any]:
    return connected(api.url, **{"DATAFLOW_JOB_ID": "gqigvH123456", **more})


def test_configuration_parameters_are_not_part_of_the_event(ncp_launcher: Launcher, live_emulator: Emulator) -> None:
    args = ncp_args(
        live_emulator,
        DATAFLOW_PARAMETERS={"$activation": "{event_id}", "$key": "{key}"},
        **load_event("ncp-object-storage-flat.json"),
    )
    result = ncp.main(args)
    [request] = live_emulator.posts
    assert request.verdict == "ok"
    assert request.json == {
        "parameters": {"$activation": "7f3c1f0e2b9a4c1d", "$key": "incoming/orders/flat payload+1.csv"}
    }
    assert result["submitted"][0]["source"]["kind"] == "object"


def test_a_cron_run_carries_only_configuration(ncp_launcher: Launcher, live_emulator: Emulator) -> None:
    result = ncp.main(ncp_args(live_emulator))
    [entry] = result["submitted"]
    assert entry["source"]["kind"] == "schedule"
    assert entry["source"]["schedule"] == ""
    assert len(live_emulator.all_executions()) == 1


def test_a_failed_cron_run_replayed_with_its_time_keeps_its_dedup_key(
    monkeypatch: pytest.MonkeyPatch, live_emulator: Emulator
) -> None:
    now = [1_795_824_030.0]  # 00:00:30: the cron run's minute is 00:00
    monkeypatch.setattr(ncp, "launcher", Launcher(Wiring(Clocks(wall=lambda: now[0], sleep=lambda _: None))))
    live_emulator.clock = lambda: now[0]
    # The run starts, its answer says 500, and the lookup after it fails: the outcome stays unknown.
    live_emulator.inject(Fault(status=500, execute=True, method="POST"))
    live_emulator.on_request = lambda request: (
        live_emulator.inject(Fault(status=503, method="GET", times=4)) if request.method == "POST" else None
    )
    with pytest.raises(InvocationFailedError) as failure:
        ncp.main(ncp_args(live_emulator))
    [failed] = failure.value.result["failed"]
    assert failed["source"]["time"] == "2026-11-28T00:00:00+00:00"
    live_emulator.on_request = None
    now[0] += 300  # replayed five minutes later, in a cold container, with the failed run's time
    monkeypatch.setattr(ncp, "launcher", Launcher(Wiring(Clocks(wall=lambda: now[0], sleep=lambda _: None))))
    replayed = ncp.main(ncp_args(live_emulator, time=failed["source"]["time"]))
    [skip] = replayed["skipped"]
    assert (skip["reason"], skip["dedupKey"]) == ("duplicate", failed["dedupKey"])
    assert len(live_emulator.all_executions()) == 1


def test_parameters_override_the_environment(
    ncp_launcher: Launcher, live_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFLOW_JOB_ID", "FromEnvironment")
    ncp.main(ncp_args(live_emulator, DATAFLOW_JOB_ID="FromParameters", schedule="nightly"))
    assert live_emulator.posts[0].path == "/api/v1/jobs/FromParameters/executions"


def test_non_string_parameters_are_accepted(ncp_launcher: Launcher, live_emulator: Emulator) -> None:
    result = ncp.main(ncp_args(live_emulator, DATAFLOW_DRY_RUN=True, schedule="nightly"))
    assert result["dryRun"] is True
    assert live_emulator.received == []


def test_bad_configuration_raises_one_error(ncp_launcher: Launcher) -> None:
    with pytest.raises(ConfigError) as caught:
        ncp.main({"DATAFLOW_JOB_ID": "J", "NCLOUD_SECRET_KEY": SECRET_KEY, "DATAFLOW_TIMEZONE": "Nowhere/Never"})
    assert [p.where for p in caught.value.problems] == ["NCLOUD_ACCESS_KEY", "DATAFLOW_TIMEZONE"]
    assert SECRET_KEY not in str(caught.value)


def test_deadline_comes_from_ow_deadline() -> None:
    launcher = Launcher(Wiring(Clocks(wall=lambda: 1_000.0)))
    original = ncp.launcher
    ncp.launcher = launcher
    try:
        assert ncp._remaining_ms({"__OW_DEADLINE": "1060000"}) == 60_000
        assert ncp._remaining_ms({}) is None
        assert ncp._remaining_ms({"__OW_DEADLINE": "soon"}) is None
    finally:
        ncp.launcher = original


def test_cli_invoke_submits_an_event_file(live_emulator: Emulator) -> None:
    done = cli(
        "invoke",
        "events/s3-put.json",
        env=connected(live_emulator.url, DATAFLOW_JOB_ID="gqigvH123456"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["submitted"][0]["jobExecutionId"] == live_emulator.all_executions()[0]["jobExecutionId"]
    assert SECRET_KEY not in done.stdout + done.stderr


def test_cli_dry_run_without_credentials_signs_with_a_placeholder(live_emulator: Emulator) -> None:
    done = cli(
        "invoke",
        "--dry-run",
        "events/schedule-classic.json",
        env={"DATAFLOW_ENDPOINT": live_emulator.url, "DATAFLOW_JOB_ID": "gqigvH123456"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dryRun"] is True
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    [request] = [line for line in lines if line["message"] == "dry-run request"]
    assert request["placeholderCredentials"] is True
    assert request["request"]["headers"]["x-ncp-apigw-signature-v2"] == "***"
    assert any(line["message"].startswith("dry run without credentials") for line in lines)
    assert live_emulator.received == []


def test_cli_validate_lists_every_problem() -> None:
    done = cli("validate", env={"DATAFLOW_JOB_ID": "bad id", "DATAFLOW_ENDPOINT": "http://example.com"})
    assert done.returncode == 2
    assert "invalid configuration (4 problems)" in done.stderr
    assert "DATAFLOW_JOB_ID: must be 1-64 letters" in done.stderr
    good = cli("validate", env={"DATAFLOW_JOB_ID": "J", "DATAFLOW_DRY_RUN": "true", "DATAFLOW_DEDUP_PARAMETER": "$d"})
    assert good.returncode == 0
    [default] = json.loads(good.stdout)["routes"]
    assert (default["name"], default["source"], default["jobId"], default["warnings"]) == (
        "default",
        "object/schedule",
        "J",
        [],
    )
    assert default["guarantee"]["$d echoed"].startswith("exactly once: a redelivery is matched by its dedup key")


def test_cli_validate_shows_effective_sources_and_warnings() -> None:
    routes = [
        {"name": "raw", "match": {"bucket": "b", "pattern": "^(a+)+$"}, "jobId": "J", "dedupParameter": "$d"},
        {"name": "plain", "match": {"source": "schedule"}, "jobId": "J"},
    ]
    done = cli("validate", env={"DATAFLOW_ROUTES": json.dumps(routes), "DATAFLOW_DRY_RUN": "true"})
    assert done.returncode == 0, done.stderr
    raw, plain = json.loads(done.stdout)["routes"]
    assert raw["source"] == "object"
    assert [warning.split(";")[0] for warning in raw["warnings"]] == [
        "match.pattern has a quantified group inside a quantifier or an alternation under one"
    ]
    assert plain["warnings"] == []
    assert plain["guarantee"] == {
        "parameters echoed (object or name/value)": "exactly once: a run with these parameters created since the "
        "event covers it; an event after that run started gets a run of its own",
        "only some parameters echoed, or nothing": "cannot identify runs: the run is started anyway; a redelivery "
        "into another container may start twice",
    }


def test_cli_validate_on_a_terminal_prints_a_table_of_routes_warnings_and_guarantees() -> None:
    # Issue 23, item 15: validate printed only JSON; a person on a terminal reads lines, a pipe still gets JSON.
    routes = [{"name": "raw", "match": {"bucket": "b", "pattern": "^(a+)+$"}, "jobId": "J", "dedupParameter": "$d"}]
    settings = {"DATAFLOW_ROUTES": json.dumps(routes), "DATAFLOW_DRY_RUN": "true"}
    status, shown = cli_on_terminal("validate", env=settings)
    assert status == 0
    lines = shown.splitlines()
    assert lines[0].startswith("valid: 1 route(s) for https://") and lines[0].endswith("; DRY RUN")
    assert lines[1] == "raw: object -> job J"
    assert lines[2].startswith("  warning: match.pattern has a quantified group inside a quantifier")
    assert lines[3].startswith("  $d echoed: exactly once: a redelivery is matched by its dedup key")
    assert json.loads(cli("validate", "--json", env=settings).stdout)["valid"] is True


def test_cli_version_is_the_projects() -> None:
    # Issue 23, item 15: no --version.
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert cli("--version", env={}).stdout.strip() == f"dataflow-launcher {version}"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "cannot read the event file"),
        ('{"Records": [}', "is not JSON: Expecting value at line 1 column 14"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
    ids=["missing", "malformed", "not-text"],
)
def test_cli_invoke_says_in_one_line_what_is_wrong_with_the_event_file(
    tmp_path: Path, content: str | bytes | None, said: str
) -> None:
    path = tmp_path / "event.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_bytes(content)
    done = cli("invoke", str(path), env={"DATAFLOW_JOB_ID": "J", "DATAFLOW_DRY_RUN": "true"})
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and said in line
    assert "Traceback" not in done.stderr


def test_cli_sign_prints_the_known_answer() -> None:
    done = cli(
        "sign",
        "POST",
        "/api/v1/jobs/gqigvH123456/executions",
        "--timestamp",
        "1700000000000",
        "--show-signature",
        env={"NCLOUD_ACCESS_KEY": "AKIAEXAMPLE", "NCLOUD_SECRET_KEY": "SECRETEXAMPLE"},
    )
    assert json.loads(done.stdout)["headers"]["x-ncp-apigw-signature-v2"] == KNOWN_SIGNATURE
    masked = cli("sign", "GET", "/x", env={"NCLOUD_ACCESS_KEY": "AKIAEXAMPLE", "NCLOUD_SECRET_KEY": "SECRETEXAMPLE"})
    assert json.loads(masked.stdout)["headers"]["x-ncp-apigw-signature-v2"] == "***"


def test_ncp_log_records_carry_the_activation(ncp_launcher: Launcher, live_emulator: Emulator, logs: JsonLines) -> None:
    ncp.main(ncp_args(live_emulator, schedule="nightly"))
    [submitted] = [record for record in logs.records if record["message"] == "submitted"]
    assert submitted["activation_id"] == "7f3c1f0e2b9a4c1d"
    assert submitted["schedule"] == "nightly"


def test_cloud_functions_requests_name_the_action_that_sent_them(
    ncp_launcher: Launcher, live_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("__OW_ACTION_NAME", "/ns/dataflow-launcher")
    ncp.main(ncp_args(live_emulator, DATAFLOW_DEDUP_PARAMETER="$dedup", **load_event("ncp-object-storage-flat.json")))
    assert [request.method for request in live_emulator.received] == ["GET", "POST"]
    for request in live_emulator.received:  # the lookup too: every request made from Cloud Functions
        payload = json.loads(base64.b64decode(request.headers["x-ncp-dataflow-payload"], validate=True))
        assert payload == {
            "cloudFunctions": {"actionName": "/ns/dataflow-launcher", "activationId": "7f3c1f0e2b9a4c1d"}
        }


def test_the_caller_header_can_be_turned_off_and_is_never_sent_from_lambda(
    ncp_launcher: Launcher, live_emulator: Emulator
) -> None:
    ncp.main(ncp_args(live_emulator, DATAFLOW_CALLER_HEADER="false", schedule="nightly"))
    launcher = Launcher(Wiring(Clocks(sleep=lambda _: None)))
    launcher.invoke(load_event("s3-put.json"), ncp_args(live_emulator, DATAFLOW_JOB_ID="OtherJob1"), platform="aws")
    assert len(live_emulator.posts) == 2
    assert all("x-ncp-dataflow-payload" not in request.headers for request in live_emulator.received)


def test_cli_invoke_for_ncp_takes_settings_from_the_event_file_like_the_runtime(
    live_emulator: Emulator, tmp_path: Path
) -> None:
    event = load_event("ncp-object-storage-flat.json") | connected(live_emulator.url, DATAFLOW_JOB_ID="FromTheFile")
    event["DATAFLOW_PARAMETERS"] = {"$key": "{key}"}  # NCP default parameters are JSON values, not strings
    path = tmp_path / "activation.json"
    path.write_text(json.dumps(event))
    done = cli("invoke", "--platform", "ncp", str(path), env={"DATAFLOW_JOB_ID": "FromTheEnvironment"})
    assert done.returncode == 0, done.stderr
    [request] = live_emulator.posts
    assert request.path == "/api/v1/jobs/FromTheFile/executions"
    assert request.json == {"parameters": {"$key": "incoming/orders/flat payload+1.csv"}}
    assert SECRET_KEY not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--timestamp", "abc"], "--timestamp must be epoch milliseconds (digits only), got 'abc'"),
        (["--timestamp", "١٢"], "--timestamp must be epoch milliseconds"),
    ],
)
def test_cli_sign_refuses_a_timestamp_that_is_not_milliseconds(arguments: list[str], message: str) -> None:
    done = cli(
        "sign",
        "POST",
        "/api/v1/jobs/J/executions",
        *arguments,
        env={"NCLOUD_ACCESS_KEY": "A", "NCLOUD_SECRET_KEY": "S"},
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "path", ["https://dataflow.apigw.ntruss.com/api/v1/jobs/J/executions", "api/v1/jobs/J/executions"]
)
def test_cli_sign_refuses_anything_but_a_path(path: str) -> None:
    done = cli("sign", "POST", path, env={"NCLOUD_ACCESS_KEY": "A", "NCLOUD_SECRET_KEY": "S"})
    assert done.returncode == 2
    assert "give the path and query exactly as sent, starting with '/'" in done.stderr


def test_cli_emulate_on_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = cli("emulate", "--port", str(busy.getsockname()[1]), env={})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("cannot listen on 127.0.0.1:")
    assert "choose another --port" in done.stderr


def test_cli_emulate_shows_its_credentials_and_every_request_with_its_outcome() -> None:
    assert "DEMOACCESSKEY with the secret key demo-secret-key" in " ".join(
        cli("emulate", "--help", env={}).stdout.split()
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with subprocess.Popen(
        [sys.executable, "-m", "handler", "emulate", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as server:
        assert server.stdout is not None
        try:
            banner = server.stdout.readline()
            timestamp = str(int(time.time() * 1000))
            headers = {
                "x-ncp-apigw-timestamp": timestamp,
                "x-ncp-iam-access-key": "DEMOACCESSKEY",
                "x-ncp-apigw-signature-v2": "wrong",
            }
            requests.post(f"http://127.0.0.1:{port}/api/v1/jobs/J/executions", json={}, headers=headers, timeout=5)
            line = json.loads(server.stdout.readline())
        finally:
            server.terminate()
    assert "accepts access key DEMOACCESSKEY with secret key demo-secret-key" in banner
    assert (line["status"], line["verdict"]) == (401, "rejected: signature mismatch")
    assert line["expectedStringToSign"] == f"POST /api/v1/jobs/J/executions\n{timestamp}\nDEMOACCESSKEY"
    assert "demo-secret-key" not in json.dumps(line)


def test_a_seoul_nightly_from_a_utc_crontab_renders_the_seoul_date_and_logs_both_wall_times(
    monkeypatch: pytest.MonkeyPatch, live_emulator: Emulator, logs: JsonLines
) -> None:
    # A crontab "0 17 * * *" in UTC is 02:00 in Seoul the next day: the zone the crontab fires in does not
    # matter, the placeholders render in DATAFLOW_TIMEZONE.
    fired = 1_798_650_020.0  # 2026-12-30T17:00:20Z, 20 s into the cron's minute
    monkeypatch.setattr(ncp, "launcher", Launcher(Wiring(Clocks(wall=lambda: fired, sleep=lambda _: None))))
    live_emulator.clock = lambda: fired
    nightly = {"name": "nightly", "match": {"source": "schedule", "schedule": "nightly"}, "jobId": "NightlyJob1"}
    nightly["parameters"] = {"$date": "{time:%Y-%m-%d}", "$yesterday": "{time-1d:%Y-%m-%d}"}
    args = connected(live_emulator.url, DATAFLOW_ROUTES=json.dumps([nightly]), DATAFLOW_TIMEZONE="Asia/Seoul")
    ncp.main(args | {"schedule": "nightly"})
    [request] = live_emulator.posts
    assert request.json == {"parameters": {"$date": "2026-12-31", "$yesterday": "2026-12-30"}}
    [record] = [record for record in logs.records if record["message"] == "schedule fired"]
    assert record["schedule"] == "nightly"
    assert record["fireTimeUtc"] == "2026-12-30T17:00:00+00:00"
    assert record["fireTimeLocal"] == "2026-12-31T02:00:00+09:00"
    assert record["timezone"] == "Asia/Seoul"


def test_a_fire_timed_ahead_of_the_clock_fails_alone_instead_of_starting_on_every_delivery(
    launcher: Launcher, config: dict[str, str], emulator: Emulator, clock: FakeClock
) -> None:
    # A newcomer's trial of issue 23: `invoke --platform ncp` of a cron payload timed 2026-12-30 on 2026-12-06
    # started a run on every try (no run created before that time can be shown to cover it).
    future = datetime.fromtimestamp(clock.wall() + 24 * 3600, UTC).isoformat()
    for _ in range(2):
        result = result_of(launcher, config, {"schedule": "nightly", "time": future}, platform="ncp")
        [failed] = result["failed"]
        assert failed["code"] == "bad-event" and "ahead of this clock" in failed["error"]
    assert emulator.all_executions() == []
    dry = result_of(
        launcher, config | {"DATAFLOW_DRY_RUN": "true"}, {"schedule": "nightly", "time": future}, platform="ncp"
    )
    assert dry["dryRun"] is True and len(dry["submitted"]) == 1
    soon = datetime.fromtimestamp(clock.wall() + 60, UTC).isoformat()  # another host's clock a minute ahead
    assert result_of(launcher, config, {"schedule": "nightly", "time": soon}, platform="ncp")["submitted"]


def test_cli_invoke_on_ncp_reads_a_relative_routes_file_from_where_it_runs(tmp_path: Path) -> None:
    # A newcomer's trial of issue 23: `invoke --platform ncp` looked for @routes.json inside handler/ only.
    route = {"name": "nightly", "match": {"source": "schedule"}, "jobId": "NightJob1"}
    (tmp_path / "routes.json").write_text(json.dumps([route]), encoding="utf-8")
    (tmp_path / "cron.json").write_text(json.dumps({"schedule": "nightly"}), encoding="utf-8")
    settings = {"DATAFLOW_ROUTES": "@routes.json", "DATAFLOW_DRY_RUN": "true"}
    done = cli("invoke", "cron.json", "--platform", "ncp", env=settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["submitted"][0]["route"] == "nightly"


def test_cli_validate_reads_an_ncp_actions_default_parameters(tmp_path: Path) -> None:
    # A newcomer's trial of issue 23: validate and doctor could not check settings kept as an NCP action's default
    # parameters (DATAFLOW_TIMEZONE there was invisible to them unless exported in the shell too).
    route = {"name": "nightly", "match": {"source": "schedule"}, "jobId": "J", "parameters": {"$d": "{time:%F}"}}
    defaults = {"DATAFLOW_ROUTES": json.dumps([route]), "DATAFLOW_TIMEZONE": "Asia/Seoul", "DATAFLOW_DRY_RUN": "true"}
    (tmp_path / "defaults.json").write_text(json.dumps(defaults), encoding="utf-8")
    done = cli("validate", "--parameters", str(tmp_path / "defaults.json"), env={})
    assert done.returncode == 0, done.stderr
    [checked] = json.loads(done.stdout)["routes"]
    assert checked["name"] == "nightly" and checked["warnings"] == []  # the zone is set: no UTC warning
    bad = cli("validate", "--parameters", str(tmp_path / "missing.json"), env={})
    assert bad.returncode == 2 and "cannot read the parameters file" in bad.stderr


def test_cli_invoke_and_explain_on_ncp_take_the_actions_default_parameters_from_a_file(tmp_path: Path) -> None:
    # A newcomer's second trial: the defaults kept in a file for validate had to be merged into each payload by hand.
    route = {"name": "nightly", "match": {"source": "schedule"}, "jobId": "J", "parameters": {"$d": "{time:%F}"}}
    defaults = {"DATAFLOW_ROUTES": json.dumps([route]), "DATAFLOW_TIMEZONE": "Asia/Seoul", "DATAFLOW_DRY_RUN": "true"}
    (tmp_path / "defaults.json").write_text(json.dumps(defaults), encoding="utf-8")
    (tmp_path / "fire.json").write_text(json.dumps({"schedule": "n", "time": "2026-12-04T17:00:00Z"}), "utf-8")
    given = ("--platform", "ncp", "--parameters", str(tmp_path / "defaults.json"))
    invoked = cli("invoke", str(tmp_path / "fire.json"), *given, env={})
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout)["submitted"][0]["request"]["parameters"] == {"$d": "2026-12-05"}
    explained = cli("explain", str(tmp_path / "fire.json"), *given, "--offline", "--json", env={})
    assert json.loads(explained.stdout)["records"][0]["routes"][0]["parameters"] == {"$d": "2026-12-05"}
