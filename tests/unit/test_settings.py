"""Configuration: every problem in one error, secrets never echoed, validated once per configuration."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from handler import settings as settings_module
from handler.errors import ConfigError
from handler.routes import route_warnings
from handler.settings import DEFAULT_ENDPOINT, config_from, load_settings, parse_settings

BASE = {"NCLOUD_ACCESS_KEY": "AK", "NCLOUD_SECRET_KEY": "super-secret-value", "DATAFLOW_JOB_ID": "gqigvH123456"}


def problems(config: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config)
    return [str(problem) for problem in caught.value.problems]


def test_defaults() -> None:
    settings = parse_settings(BASE)
    assert settings.endpoint == DEFAULT_ENDPOINT
    assert settings.zone is UTC
    assert not settings.dry_run
    [route] = settings.routes
    assert route.name == "default"
    assert route.job.job_id == "gqigvH123456"
    assert route.match.source is None
    assert (settings.connect_timeout, settings.read_timeout, settings.max_attempts) == (3.05, 10.0, 4)


def test_empty_values_count_as_unset() -> None:
    settings = parse_settings({**BASE, "DATAFLOW_ENDPOINT": "", "DATAFLOW_ROUTES": "  ", "DATAFLOW_TIMEZONE": ""})
    assert settings.endpoint == DEFAULT_ENDPOINT


def test_every_problem_is_reported_at_once_and_secrets_are_not_echoed() -> None:
    config = {
        "NCLOUD_SECRET_KEY": "super-secret-value",
        "DATAFLOW_ENDPOINT": "ftp://example.com",
        "DATAFLOW_ROUTES": '[{"name": "a", "jobId": "J", "match": {"pattern": "["}}, {"name": "b"}]',
        "DATAFLOW_TIMEZONE": "Mars/Olympus",
        "DATAFLOW_DRY_RUN": "maybe",
        "DATAFLOW_MAX_ATTEMPTS": "0",
        "DATAFLOW_READ_TIMEOUT": "soon",
    }
    found = problems(config)
    assert found == [
        "DATAFLOW_DRY_RUN: must be true or false, got string 'maybe'",
        "NCLOUD_ACCESS_KEY: is required (unless DATAFLOW_DRY_RUN is true)",
        "DATAFLOW_ENDPOINT: must be an https:// URL (http:// only for a loopback host), got string 'ftp://example.com'",
        "DATAFLOW_TIMEZONE: is not UTC, a ±HH:MM offset or a time zone this platform knows, got string 'Mars/Olympus'",
        "DATAFLOW_READ_TIMEOUT: must be a number from 0.1 to 300, got string 'soon'",
        "DATAFLOW_MAX_ATTEMPTS: must be an integer from 1 to 10, got string '0'",
        "DATAFLOW_ROUTES[a].match.pattern: invalid regular expression: unterminated character set at position 0",
        "DATAFLOW_ROUTES[b].jobId: must be 1-64 letters, digits, '-' or '_', got null",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_settings(config)
    assert "super-secret-value" not in str(caught.value)
    assert str(caught.value).startswith("invalid configuration (8 problems):\n- DATAFLOW_DRY_RUN")


def test_exactly_one_of_routes_and_job_id() -> None:
    assert problems({**BASE, "DATAFLOW_ROUTES": '[{"name": "a", "jobId": "J"}]'}) == [
        "DATAFLOW_ROUTES: set together with DATAFLOW_JOB_ID; set exactly one of them"
    ]
    assert problems({"NCLOUD_ACCESS_KEY": "AK", "NCLOUD_SECRET_KEY": "s"}) == [
        "DATAFLOW_ROUTES: neither DATAFLOW_ROUTES nor DATAFLOW_JOB_ID is set; set exactly one of them"
    ]


def test_default_route_settings_do_not_mix_with_routes() -> None:
    config = {
        "NCLOUD_ACCESS_KEY": "AK",
        "NCLOUD_SECRET_KEY": "s",
        "DATAFLOW_ROUTES": '[{"name": "a", "jobId": "J"}]',
        "DATAFLOW_PARAMETERS": '{"$a": "b"}',
    }
    assert problems(config) == [
        "DATAFLOW_PARAMETERS: only applies to the default route; with DATAFLOW_ROUTES put it in a route"
    ]


def test_default_route_problems_use_the_variable_names() -> None:
    config = {
        **BASE,
        "DATAFLOW_JOB_ID": "bad id",
        "DATAFLOW_WORKFLOW_ID": "w/1",
        "DATAFLOW_JOB_CONDITION": '{"numWorker": 1}',
        "DATAFLOW_PARAMETERS": '{"$a": "{time:}", "$b": 2}',
    }
    assert problems(config) == [
        "DATAFLOW_JOB_ID: must be 1-64 letters, digits, '-' or '_', got string 'bad id'",
        "DATAFLOW_WORKFLOW_ID: must be 1-64 letters, digits, '-' or '_', got string 'w/1'",
        "DATAFLOW_JOB_CONDITION.numWorker: must be an integer 2-10, got number 1",
        "DATAFLOW_PARAMETERS.$a: {time:} needs a format after ':'",
        "DATAFLOW_PARAMETERS.$b: must be a string, got number 2",
    ]


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:8930", "http://localhost:1", "http://[::1]:2", "https://dataflow.example.com/"]
)
def test_https_or_loopback_endpoints(endpoint: str) -> None:
    assert parse_settings({**BASE, "DATAFLOW_ENDPOINT": endpoint}).endpoint == endpoint.rstrip("/")


@pytest.mark.parametrize("endpoint", ["http://10.0.0.1", "https://", "https://h/?x=1", "dataflow.apigw.ntruss.com"])
def test_other_endpoints_are_refused(endpoint: str) -> None:
    assert problems({**BASE, "DATAFLOW_ENDPOINT": endpoint})[0].startswith("DATAFLOW_ENDPOINT: must be")


def test_time_zones() -> None:
    assert parse_settings({**BASE, "DATAFLOW_TIMEZONE": "+09:00"}).zone == timezone(timedelta(hours=9))
    assert parse_settings({**BASE, "DATAFLOW_TIMEZONE": "-03:30"}).zone == timezone(-timedelta(hours=3, minutes=30))
    assert parse_settings({**BASE, "DATAFLOW_TIMEZONE": "Asia/Seoul"}).zone == ZoneInfo("Asia/Seoul")


def test_dry_run_without_credentials_uses_a_placeholder() -> None:
    settings = parse_settings({"DATAFLOW_JOB_ID": "J", "DATAFLOW_DRY_RUN": "true"})
    assert settings.dry_run
    assert settings.credentials.placeholder


def test_routes_file_relative_to_the_package_or_absolute(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps([{"name": "a", "jobId": "J"}]))
    base = {"NCLOUD_ACCESS_KEY": "AK", "NCLOUD_SECRET_KEY": "s"}
    assert [r.name for r in parse_settings({**base, "DATAFLOW_ROUTES": f"@{path}"}).routes] == ["a"]
    assert problems({**base, "DATAFLOW_ROUTES": "@no-such-routes.json"})[0].startswith(
        "DATAFLOW_ROUTES: cannot read routes file"
    )
    path.write_text("[")
    assert "is not valid JSON" in problems({**base, "DATAFLOW_ROUTES": f"@{path}"})[0]


def test_settings_are_validated_once_per_distinct_configuration() -> None:
    first = load_settings({**BASE, "DATAFLOW_TIMEZONE": "+01:00"})
    assert load_settings({**BASE, "DATAFLOW_TIMEZONE": "+01:00", "UNRELATED": "x"}) is first
    assert load_settings({**BASE, "DATAFLOW_TIMEZONE": "+02:00"}) is not first


def test_config_from_takes_only_setting_names_and_stringifies_parameters() -> None:
    config = config_from(
        {"DATAFLOW_DRY_RUN": True, "DATAFLOW_ROUTES": [{"name": "a"}], "bucket": "x", "DATAFLOW_JOB_ID": "J"}
    )
    assert config == {"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": '[{"name": "a"}]', "DATAFLOW_JOB_ID": "J"}


def test_a_relative_routes_file_is_read_from_the_package_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "PACKAGE_DIR", tmp_path)
    (tmp_path / "routes.json").write_text(json.dumps([{"name": "from-package", "jobId": "J"}]))
    config = {"NCLOUD_ACCESS_KEY": "AK", "NCLOUD_SECRET_KEY": "s", "DATAFLOW_ROUTES": "@routes.json"}
    assert [route.name for route in parse_settings(config).routes] == ["from-package"]


def test_a_package_directory_reached_through_a_symlink_is_named_by_its_real_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    monkeypatch.setattr(settings_module, "PACKAGE_DIR", tmp_path / "link")
    [problem] = problems({"NCLOUD_ACCESS_KEY": "AK", "NCLOUD_SECRET_KEY": "s", "DATAFLOW_ROUTES": "@../routes.json"})
    assert f"looked at {real.resolve() / '..' / 'routes.json'}" in problem


def test_a_missing_relative_routes_file_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"NCLOUD_ACCESS_KEY": "AK", "NCLOUD_SECRET_KEY": "s", "DATAFLOW_ROUTES": "@my-routes.json"}
    [problem] = problems(base)
    assert f"looked at {settings_module.PACKAGE_DIR / 'my-routes.json'}" in problem
    assert "read from the handler/ package directory" in problem
    assert "the command line looks in the directory it runs in first" in problem
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-routes.json").write_text("[]")
    problem = problems(base)[0]
    assert f"{tmp_path / 'my-routes.json'} exists: move it into handler/ or give an absolute path" in problem


def test_a_zone_abbreviation_points_at_the_zone_it_means() -> None:
    # Issue 23, item 15: KST got "did you mean EST?" (EST is a fixed UTC-5 zone, one edit away).
    with pytest.raises(ConfigError) as raised:
        load_settings({"DATAFLOW_JOB_ID": "J1", "DATAFLOW_TIMEZONE": "KST"})
    assert "did you mean Asia/Seoul? KST is an abbreviation, not a time zone" in str(raised.value)
    assert "EST" not in str(raised.value)


@pytest.mark.parametrize(
    ("parameters", "warned"),
    [
        ({"$path": "{bucket}/{key}", "$tag": "{etag}"}, None),
        ({"$who": "{event_id}"}, "renders {event_id}:"),
        ({"$at": "{time:%Y%m%d%H%M}"}, "renders {time...}:"),
        # A hostile review of issue 24: even the day differs for a multipart upload across midnight.
        ({"$day": "{time:%Y-%m-%d}"}, "renders {time...}:"),
    ],
)
def test_a_swept_route_that_renders_what_only_a_notification_carries_is_warned(
    parameters: dict[str, str], warned: str | None
) -> None:
    # Issue 24: a listing has no event id, no version and LastModified for the time: such a route's run from a
    # notification would not be recognised by its sweep.
    route = {"name": "r", "match": {"bucket": "b"}, "jobId": "J", "parameters": parameters, "sweep": {}}
    [loaded] = parse_settings({"DATAFLOW_ROUTES": json.dumps([route]), "DATAFLOW_DRY_RUN": "true"}).routes
    said = [warning for warning in route_warnings(loaded) if "a swept route" in warning]
    assert said == [] if warned is None else said[0].startswith(f"a swept route {warned}")


@pytest.mark.parametrize(
    ("route", "settings", "said"),
    [
        ({"match": {"prefix": "in/"}}, {}, "DATAFLOW_ROUTES[r].sweep: a sweep lists one bucket: set match.bucket"),
        ({"match": {"source": "schedule"}}, {}, "DATAFLOW_ROUTES[r].sweep: only for object routes"),
        ({"match": {"bucket": "b", "events": ["ObjectRemoved:*"]}}, {}, "must hold an ObjectCreated event"),
        ({"match": {"bucket": "b"}, "sweep": {"marker": "a/_SUCCESS"}}, {}, "must be a file name without '/'"),
        ({"match": {"bucket": "b"}, "sweep": {"quietSeconds": -1}}, {}, "quietSeconds: must be an integer"),
        (
            {"match": {"bucket": "b"}, "sweep": {"lookBackHours": 48}},
            {},
            "48 h reaches past DATAFLOW_DEDUP_WINDOW_HOURS (24)",
        ),
    ],
)
def test_a_sweep_option_that_cannot_list_or_reaches_past_the_check_is_refused(
    route: dict[str, object], settings: dict[str, str], said: str
) -> None:
    raw = {"name": "r", "jobId": "J", "sweep": {}} | route
    with pytest.raises(ConfigError) as refused:
        parse_settings({"DATAFLOW_ROUTES": json.dumps([raw]), "DATAFLOW_DRY_RUN": "true", **settings})
    assert said in str(refused.value)
    window = {"DATAFLOW_ROUTES": json.dumps([raw]), "DATAFLOW_DRY_RUN": "true", "DATAFLOW_DEDUP_WINDOW_HOURS": "48"}
    if "reaches past" in said:
        assert parse_settings(window).routes[0].sweep is not None


def test_validate_says_what_a_sweep_of_a_route_guarantees() -> None:
    # A newcomer's second trial: validate's guarantee for a swept route said a run "is started anyway" where the
    # runs echo nothing, while a sweep skips such files as unproven (and a route served by it alone starts none).
    from handler.exactly_once import delivery_guarantee

    route = {"name": "r", "match": {"bucket": "b"}, "jobId": "J", "sweep": {"only": True}}
    [loaded] = parse_settings({"DATAFLOW_ROUTES": json.dumps([route]), "DATAFLOW_DRY_RUN": "true"}).routes
    said = delivery_guarantee(loaded, "always", "submit")["a sweep of it"]
    assert "skipped as unproven, never started twice" in said and "served by its sweep alone" in said
