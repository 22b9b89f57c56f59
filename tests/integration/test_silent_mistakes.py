"""Each mistake that used to pass in silence now gets a warning or an error that says where and what to do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from emulator.server import Emulator
from handler.errors import ConfigError
from handler.settings import parse_settings
from tests.conftest import ACCESS_KEY, ROOT, SECRET_KEY, FakeClock, cli, connected, container, load_event, result_of


def problems_of(config: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        parse_settings({"DATAFLOW_DRY_RUN": "true", **config})
    return [str(problem) for problem in refused.value.problems]


def route(**fields: Any) -> dict[str, str]:
    return {"DATAFLOW_ROUTES": json.dumps([{"name": "r", "jobId": "J1", **fields}])}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"match": {"bucket": "s3://acme-lake"}},
            "DATAFLOW_ROUTES[r].match.bucket: is a bucket's name, not a URL or a path (did you mean 'acme-lake'?)",
        ),
        (
            {"match": {"source": "schedule", "schedule": "cron(0 1 * * ? *)"}},
            "DATAFLOW_ROUTES[r].match.schedule: 'cron(0 1 * * ? *)' looks like a schedule expression; match.schedule is "
            "the schedule's name (the EventBridge rule or Scheduler name, the Input's schedule field, or the NCP "
            "trigger's schedule parameter)",
        ),
        (
            {"parameters": {"$day": "{time:%Y-%m-%d-1d}"}},
            "DATAFLOW_ROUTES[r].parameters.$day: {time:%Y-%m-%d-1d}: an offset after the format renders as literal "
            "text; did you mean {time-1d:%Y-%m-%d}? (text meant literally goes outside the braces)",
        ),
        (
            {"parameters": {"$f": "{key_nme}"}},
            "DATAFLOW_ROUTES[r].parameters.$f: unknown placeholder {key_nme} (did you mean key_name?)",
        ),
        ({"mach": {}}, "DATAFLOW_ROUTES[r].mach: unknown route field (did you mean match?)"),
    ],
    ids=["bucket-url", "cron-as-name", "offset-after-format", "placeholder-typo", "field-typo"],
)
def test_what_can_never_match_is_an_error_naming_its_place(fields: dict[str, Any], expected: str) -> None:
    [problem] = problems_of(route(**fields))
    assert problem.startswith(expected)


def test_a_zone_one_edit_away_says_which_was_meant() -> None:
    [problem] = problems_of({"DATAFLOW_JOB_ID": "J1", "DATAFLOW_TIMEZONE": "Asia/Seol"})
    assert problem.endswith("(did you mean Asia/Seoul?)")


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ('[{"name": "r", "jobId": "J1",}]', "a comma before a closing } (JSON allows no trailing comma)"),
        (
            '[{"name": "r", "jobId": "J1", "match": {"pattern": "\\d+"}}]',
            "a backslash in a JSON string must be doubled",
        ),
        ("[{'name': 'r'}]", "JSON strings and names take double quotes, not single ones"),
    ],
    ids=["trailing-comma", "single-backslash", "single-quotes"],
)
def test_a_json_mistake_says_its_likely_cause(text: str, cause: str) -> None:
    [problem] = problems_of({"DATAFLOW_ROUTES": text})
    assert problem.startswith("DATAFLOW_ROUTES: is not valid JSON (") and cause in problem


def validated(config: dict[str, str]) -> dict[str, Any]:
    done = cli("validate", env={"DATAFLOW_DRY_RUN": "true", **config})
    assert done.returncode == 0, done.stderr
    [checked] = json.loads(done.stdout)["routes"]
    return dict(checked)


def test_a_prefix_starting_with_a_slash_is_a_warning() -> None:
    checked = validated(route(match={"bucket": "acme-lake", "prefix": "/landing/sales/"}))
    assert checked["warnings"][0].startswith("match.prefix starts with '/': object keys seldom do")


def test_a_schedule_rendering_its_date_in_utc_is_a_warning_until_the_zone_is_set() -> None:
    nightly = route(match={"source": "schedule", "schedule": "nightly"}, parameters={"$day": "{time-1d:%Y-%m-%d}"})
    [warning] = validated(nightly)["warnings"]
    assert warning.startswith("a schedule route renders {time...} in UTC")
    # The fix is the zone of the dates the job wants, never "the zone the crontab fires in" (a UTC crontab
    # for 02:00 Seoul would then render the day before).
    assert "whatever zone its cron fires in" in warning and "DATAFLOW_TIMEZONE to the zone whose dates" in warning
    assert validated(nightly | {"DATAFLOW_TIMEZONE": "Asia/Seoul"})["warnings"] == []


def test_a_direct_calls_time_without_an_offset_is_read_in_the_configured_zone(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        config = connected(api.url, DATAFLOW_TIMEZONE="Asia/Seoul") | route(
            match={"source": "direct"}, parameters={"$day": "{time:%Y-%m-%d}", "$at": "{time}"}
        )
        result_of(container(clock), config, {"route": "r", "time": "2026-11-28T00:30:00"})
        [execution] = api.all_executions()
    # 00:30 in Seoul, not 00:30 UTC (which would be 09:30 in Seoul): the backfill's day is the one typed.
    assert execution["parsedParameters"] == {"$day": "2026-11-28", "$at": "2026-11-28T00:30:00+09:00"}


def test_an_object_that_misses_every_route_logs_which_filter_each_one_failed(clock: FakeClock, logs: Any) -> None:
    config = {"DATAFLOW_DRY_RUN": "true"} | route(match={"bucket": "acme-lake", "prefix": "landing/"})
    result = result_of(container(clock), config, load_event("s3-put.json"))
    assert result["skipped"][0]["reason"] == "no-route"
    [record] = [r for r in logs.records if r["message"] == "skipped"]
    assert record["misses"] == [{"route": "r", "filter": "bucket", "wanted": "acme-lake", "seen": "raw-data"}]


def test_a_dry_run_shows_what_it_would_send_and_its_record_says_it_was_not_sent(clock: FakeClock, logs: Any) -> None:
    config = {"DATAFLOW_DRY_RUN": "true", "DATAFLOW_JOB_ID": "J1", "DATAFLOW_PARAMETERS": '{"$in": "{key}"}'}
    [entry] = result_of(container(clock), config, load_event("s3-put.json"))["submitted"]
    assert entry["request"] == {
        "query": {},
        "parameters": {"$in": "incoming/orders/2026-11-27 batch+1.csv"},
    }
    assert [r["message"] for r in logs.records if r.get("dryRun")] == ["dry run: not sent"]


def test_the_command_line_runs_from_anywhere_and_reads_relative_paths_from_there(tmp_path: Path) -> None:
    (tmp_path / "routes.json").write_text(json.dumps([{"name": "mine", "jobId": "MineJob1"}]), encoding="utf-8")
    (tmp_path / "event.json").write_text(json.dumps(load_event("s3-put.json")), encoding="utf-8")
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env = clean | {"DATAFLOW_ROUTES": "@routes.json", "DATAFLOW_DRY_RUN": "true"}
    checked = subprocess.run(
        [str(ROOT / "launcher"), "validate"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["routes"][0]["name"] == "mine"
    invoked = subprocess.run(
        [str(ROOT / "launcher"), "invoke", "event.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout)["submitted"][0]["route"] == "mine"
