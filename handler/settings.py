"""Configuration strings into one validated, frozen Settings object, every problem reported at once."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from urllib.parse import urlsplit

from handler.errors import ConfigError, Problems
from handler.jobs import check_job_spec, describe
from handler.routing import Match, Route, check_routes, check_templates
from handler.signing import Credentials

DEFAULT_ENDPOINT = "https://dataflow.apigw.ntruss.com"
PACKAGE_DIR = Path(__file__).resolve().parent
# Placeholder credentials for a dry run without keys: the request is signed, and the log says so.
DRY_RUN_ACCESS_KEY = "DRY-RUN-PLACEHOLDER-KEY"
DRY_RUN_SECRET_KEY = "dry-run-placeholder-secret"  # noqa: S105 - deliberately public

CONFIG_NAMES = (
    "NCLOUD_ACCESS_KEY",
    "NCLOUD_SECRET_KEY",
    "DATAFLOW_ENDPOINT",
    "DATAFLOW_JOB_ID",
    "DATAFLOW_WORKFLOW_ID",
    "DATAFLOW_TRIGGER_ID",
    "DATAFLOW_JOB_CONDITION",
    "DATAFLOW_PARAMETERS",
    "DATAFLOW_ROUTES",
    "DATAFLOW_DRY_RUN",
    "DATAFLOW_TIMEZONE",
    "DATAFLOW_CONNECT_TIMEOUT",
    "DATAFLOW_READ_TIMEOUT",
    "DATAFLOW_MAX_ATTEMPTS",
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_OFFSET = re.compile(r"(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2})")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Settings:
    """Everything an invocation needs, validated; built once per distinct configuration."""

    credentials: Credentials
    endpoint: str
    routes: tuple[Route, ...]
    dry_run: bool
    zone: tzinfo
    connect_timeout: float
    read_timeout: float
    max_attempts: int


def config_from(sources: Mapping[str, object]) -> dict[str, str]:
    """The configuration subset of a mapping; non-strings (NCP parameters) become JSON text."""
    config: dict[str, str] = {}
    for name in CONFIG_NAMES:
        value = sources.get(name)
        if value is None:
            continue
        config[name] = value if isinstance(value, str) else json.dumps(value)
    return config


def _value(config: Mapping[str, str], name: str) -> str | None:
    value = config.get(name, "").strip()
    return value or None  # the contract: an empty value counts as unset


def _json(config: Mapping[str, str], name: str, problems: Problems) -> object:
    text = _value(config, name)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(name, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        return None


def _routes_json(config: Mapping[str, str], problems: Problems) -> object:
    text = _value(config, "DATAFLOW_ROUTES")
    if text is None or not text.startswith("@"):
        return _json(config, "DATAFLOW_ROUTES", problems)
    path = Path(text[1:])
    if not path.is_absolute():
        path = PACKAGE_DIR / path
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.add("DATAFLOW_ROUTES", f"cannot read routes file {path}: {exc.strerror}")
        return None
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        problems.add(
            "DATAFLOW_ROUTES",
            f"routes file {path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
        )
        return None


def _endpoint(config: Mapping[str, str], problems: Problems) -> str:
    endpoint = (_value(config, "DATAFLOW_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
    except ValueError:
        problems.add("DATAFLOW_ENDPOINT", f"is not a URL ({describe(endpoint)})")
        return endpoint
    loopback = host in _LOOPBACK_HOSTS or host.startswith("127.")
    if (parts.scheme == "https" and host) or (parts.scheme == "http" and loopback):
        if parts.query or parts.fragment or parts.username:
            problems.add("DATAFLOW_ENDPOINT", "must be a base URL without query, fragment or user info")
        return endpoint
    problems.add(
        "DATAFLOW_ENDPOINT", f"must be an https:// URL (http:// only for a loopback host), got {describe(endpoint)}"
    )
    return endpoint


def _zone(config: Mapping[str, str], problems: Problems) -> tzinfo:
    name = _value(config, "DATAFLOW_TIMEZONE") or "UTC"
    if name.upper() in ("UTC", "Z"):
        return UTC
    offset = _OFFSET.fullmatch(name)
    if offset:
        hours, minutes = int(offset["hours"]), int(offset["minutes"])
        if hours <= 23 and minutes <= 59:
            delta = timedelta(hours=hours, minutes=minutes)
            return timezone(-delta if offset["sign"] == "-" else delta)
    # Imported only for a named zone: zoneinfo (with the sysconfig it loads) costs a few ms of every cold start.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add(
            "DATAFLOW_TIMEZONE", f"is not UTC, a ±HH:MM offset or a time zone this platform knows, got {describe(name)}"
        )
        return UTC


def _number(
    config: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    problems: Problems,
    *,
    integer: bool = False,
) -> float:
    text = _value(config, name)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        problems.add(name, f"must be {kind} from {low:g} to {high:g}, got {describe(text)}")
        return default
    return value


def _flag(config: Mapping[str, str], name: str, problems: Problems) -> bool:
    text = (_value(config, name) or "false").lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    problems.add(name, f"must be true or false, got {describe(text)}")
    return False


def _default_route(config: Mapping[str, str], problems: Problems) -> tuple[Route, ...]:
    raw: dict[str, object] = {
        "jobId": _value(config, "DATAFLOW_JOB_ID"),
        "workflowId": _value(config, "DATAFLOW_WORKFLOW_ID"),
        "triggerId": _value(config, "DATAFLOW_TRIGGER_ID"),
        "jobCondition": _json(config, "DATAFLOW_JOB_CONDITION", problems),
    }
    locations = {
        "jobId": "DATAFLOW_JOB_ID",
        "workflowId": "DATAFLOW_WORKFLOW_ID",
        "triggerId": "DATAFLOW_TRIGGER_ID",
        "jobCondition": "DATAFLOW_JOB_CONDITION",
    }
    job = check_job_spec(raw, "default", problems, locations)
    parameters_raw = _json(config, "DATAFLOW_PARAMETERS", problems)
    parameters = check_templates(
        {} if parameters_raw is None else parameters_raw, "DATAFLOW_PARAMETERS", None, frozenset(), problems
    )
    if job is None:
        return ()
    return (Route("default", Match(), job, parameters),)


def parse_settings(config: Mapping[str, str]) -> Settings:
    """Validates every setting and route; raises one ConfigError listing all problems."""
    problems = Problems()
    dry_run = _flag(config, "DATAFLOW_DRY_RUN", problems)
    access, secret = _value(config, "NCLOUD_ACCESS_KEY"), _value(config, "NCLOUD_SECRET_KEY")
    if access and secret:
        credentials = Credentials(access, secret)
    else:
        if not dry_run:
            missing = [
                name for name, value in (("NCLOUD_ACCESS_KEY", access), ("NCLOUD_SECRET_KEY", secret)) if not value
            ]
            for name in missing:
                problems.add(name, "is required (unless DATAFLOW_DRY_RUN is true)")
        credentials = Credentials(DRY_RUN_ACCESS_KEY, DRY_RUN_SECRET_KEY, placeholder=True)
    endpoint = _endpoint(config, problems)
    zone = _zone(config, problems)
    connect_timeout = _number(config, "DATAFLOW_CONNECT_TIMEOUT", 3.05, 0.1, 60, problems)
    read_timeout = _number(config, "DATAFLOW_READ_TIMEOUT", 10.0, 0.1, 300, problems)
    max_attempts = int(_number(config, "DATAFLOW_MAX_ATTEMPTS", 4, 1, 10, problems, integer=True))
    routes: tuple[Route, ...] = ()
    has_routes, has_job = _value(config, "DATAFLOW_ROUTES"), _value(config, "DATAFLOW_JOB_ID")
    if has_routes and has_job:
        problems.add("DATAFLOW_ROUTES", "set together with DATAFLOW_JOB_ID; set exactly one of them")
    elif has_routes:
        routes = check_routes(_routes_json(config, problems), "DATAFLOW_ROUTES", problems)
        default_only = [
            name
            for name in ("DATAFLOW_WORKFLOW_ID", "DATAFLOW_TRIGGER_ID", "DATAFLOW_JOB_CONDITION", "DATAFLOW_PARAMETERS")
            if _value(config, name)
        ]
        for name in default_only:
            problems.add(name, "only applies to the default route; with DATAFLOW_ROUTES put it in a route")
    elif has_job:
        routes = _default_route(config, problems)
    else:
        problems.add("DATAFLOW_ROUTES", "neither DATAFLOW_ROUTES nor DATAFLOW_JOB_ID is set; set exactly one of them")
    if problems:
        raise ConfigError(problems.items)
    return Settings(credentials, endpoint, routes, dry_run, zone, connect_timeout, read_timeout, max_attempts)


_cache: dict[tuple[tuple[str, str], ...], Settings] = {}


def load_settings(config: Mapping[str, str]) -> Settings:
    """parse_settings, memoised per distinct configuration (NCP sends it with every call)."""
    key = tuple(sorted((name, value) for name, value in config.items() if name in CONFIG_NAMES))
    settings = _cache.get(key)
    if settings is None:
        settings = parse_settings(config)
        if len(_cache) >= 8:  # a container sees one or two configurations; never grow unbounded
            _cache.clear()
        _cache[key] = settings
    return settings
