"""Configuration strings into one validated, frozen Settings object, every problem reported at once."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar
from urllib.parse import urlsplit

from handler.dataflow.signing import Credentials
from handler.errors import ConfigError, Problems
from handler.jobs import check_job_spec, describe
from handler.records import Record
from handler.routes import Match, Route, available_fields, check_dedup_parameter, check_routes, check_templates

DEFAULT_ENDPOINT = "https://dataflow.apigw.ntruss.com"
# Relative @files are read from here, resolved when used (resolving it at import costs every cold start).
PACKAGE_DIR = Path(__file__).parent
# Placeholder credentials for a dry run without keys: the request is signed, and the log says so.
DRY_RUN_ACCESS_KEY = "DRY-RUN-PLACEHOLDER-KEY"
DRY_RUN_SECRET_KEY = "dry-run-placeholder-secret"  # noqa: S105 - deliberately public

CONFIG_NAMES = (
    "NCLOUD_ACCESS_KEY",
    "NCLOUD_SECRET_KEY",
    "NCLOUD_CREDENTIALS_SECRET",
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
    "DATAFLOW_DEDUP_CHECK",
    "DATAFLOW_DEDUP_PARAMETER",
    "DATAFLOW_DEDUP_WINDOW_HOURS",
    "DATAFLOW_CALLER_HEADER",
    "DATAFLOW_MAX_CONCURRENCY",
    "DATAFLOW_DEDUP_UNVERIFIABLE",
    "DATAFLOW_RATE_LIMIT",
    "DATAFLOW_STORAGE_ENDPOINT",
    "DATAFLOW_STORAGE_REGION",
)
SETTING_NAMES: Final = frozenset(CONFIG_NAMES)
if TYPE_CHECKING:  # types only: a Literal or TypeVar costs tens of microseconds at every cold start
    DedupCheck = Literal["always", "ambiguous", "off"]
    # What a duplicate check does when the service's answers cannot identify runs (the contract's "Exactly once").
    Unverifiable = Literal["submit", "fail"]
    Choice = TypeVar("Choice", DedupCheck, Unverifiable)
DEDUP_CHECKS: Final[tuple[DedupCheck, ...]] = ("always", "ambiguous", "off")
UNVERIFIABLE_CHOICES: Final[tuple[Unverifiable, ...]] = ("submit", "fail")
DEFAULT_ONLY = (
    "DATAFLOW_WORKFLOW_ID",
    "DATAFLOW_TRIGGER_ID",
    "DATAFLOW_JOB_CONDITION",
    "DATAFLOW_PARAMETERS",
    "DATAFLOW_DEDUP_PARAMETER",
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# Compiled on first use (re caches it), not at every cold start: most zones are UTC or a name.
_OFFSET = r"(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2})"


class Settings(Record):
    """Everything an invocation needs, validated; built once per distinct configuration."""

    __slots__ = (
        "credentials",
        "endpoint",
        "routes",
        "dry_run",
        "zone",
        "connect_timeout",
        "read_timeout",
        "max_attempts",
        "dedup_check",
        "dedup_window",
        "caller_header",
        "max_concurrency",
        "dedup_unverifiable",
        "rate_limit",
        "storage_endpoint",
        "storage_region",
    )

    def __init__(
        self,
        credentials: Credentials,
        endpoint: str,
        routes: tuple[Route, ...],
        *,
        dry_run: bool,
        zone: tzinfo,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        dedup_check: DedupCheck = "always",
        dedup_window: timedelta = timedelta(hours=24),
        caller_header: bool = True,
        max_concurrency: int = 10,
        dedup_unverifiable: Unverifiable = "submit",
        rate_limit: float | None = None,
        storage_endpoint: str | None = None,
        storage_region: str | None = None,
    ) -> None:
        self.credentials: Final = credentials
        self.endpoint: Final = endpoint
        self.routes: Final = routes
        self.dry_run: Final = dry_run
        self.zone: Final = zone
        self.connect_timeout: Final = connect_timeout
        self.read_timeout: Final = read_timeout
        self.max_attempts: Final = max_attempts
        self.dedup_check: Final = dedup_check
        self.dedup_window: Final = dedup_window
        self.caller_header: Final = caller_header
        self.max_concurrency: Final = max_concurrency
        self.dedup_unverifiable: Final = dedup_unverifiable
        # Requests per second this container sends to Data Flow, submissions and lookups together.
        self.rate_limit: Final = rate_limit
        # The S3 API of object storage (sweeps, an object's own state): None is the platform's own.
        self.storage_endpoint: Final = storage_endpoint
        self.storage_region: Final = storage_region


def config_from(sources: Mapping[str, object]) -> dict[str, str]:
    """The configuration subset of a mapping; non-strings (NCP parameters) become JSON text."""
    config: dict[str, str] = {}
    # Walks the source's names, not ours: os.environ encodes a name for each lookup and raises inside
    # for each unset one, which cost 13 us of every warm call; walking its names costs a third of that.
    for name in sources:
        if name in SETTING_NAMES:
            value = sources[name]
            if value is not None:
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
        from handler.hints import json_problem  # the error path only

        problems.add(name, f"is not valid JSON ({json_problem(text, exc)})")
        return None


def _routes_json(config: Mapping[str, str], problems: Problems) -> object:
    text = _value(config, "DATAFLOW_ROUTES")
    if text is None or not text.startswith("@"):
        return _json(config, "DATAFLOW_ROUTES", problems)
    given = Path(text[1:])
    path = given if given.is_absolute() else PACKAGE_DIR.resolve() / given
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        where = f"looked at {path}"
        if not given.is_absolute():
            where += (
                " (a relative @path is read from the handler/ package directory, which is what deploys; "
                "the command line looks in the directory it runs in first)"
            )
            if given.is_file():
                where += f"; {given.resolve()} exists: move it into handler/ or give an absolute path"
        problems.add("DATAFLOW_ROUTES", f"cannot read routes file: {exc.strerror}; {where}")
        return None
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        from handler.hints import json_problem

        problems.add("DATAFLOW_ROUTES", f"routes file {path} is not valid JSON ({json_problem(content, exc)})")
        return None


def _endpoint(config: Mapping[str, str], problems: Problems) -> str:
    endpoint = (_value(config, "DATAFLOW_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    if not (endpoint.isascii() and endpoint.isprintable()) or " " in endpoint:
        problems.add("DATAFLOW_ENDPOINT", "must be an ASCII URL without spaces or control characters")
        return endpoint
    try:
        parts = urlsplit(endpoint)
        host, _ = parts.hostname or "", parts.port  # .port raises for a non-numeric or out-of-range port
    except ValueError:
        problems.add("DATAFLOW_ENDPOINT", "is not a URL with a valid host and port")
        return endpoint
    if "@" in parts.netloc:
        # Never echo the value: what precedes '@' is usually a password.
        problems.add("DATAFLOW_ENDPOINT", "must not contain user info (user:password@); the keys sign each request")
        return endpoint
    if parts.query or parts.fragment:
        problems.add("DATAFLOW_ENDPOINT", "must be a base URL without query or fragment")
    if not ((parts.scheme == "https" and host) or (parts.scheme == "http" and _loopback(host))):
        problems.add(
            "DATAFLOW_ENDPOINT",
            f"must be an https:// URL (http:// only for a loopback host), got {describe(endpoint)}",
        )
    return endpoint


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credential(config: Mapping[str, str], name: str, problems: Problems) -> str | None:
    value = _value(config, name)
    # Both go into HTTP headers or the HMAC: anything else fails at the first request, not here.
    if value is not None and not (value.isascii() and value.isprintable() and " " not in value):
        problems.add(name, "must be printable ASCII without spaces (check for a pasted newline or quote)")
        return None
    return value


def _choice(config: Mapping[str, str], name: str, options: tuple[Choice, ...], problems: Problems) -> Choice:
    """One of `options`; the first is the default."""
    default = options[0]
    text = (_value(config, name) or default).lower()
    for option in options:
        if text == option:
            return option
    problems.add(name, f"must be one of {', '.join(options)}, got {describe(text)}")
    return default


def _zone(config: Mapping[str, str], problems: Problems) -> tzinfo:
    name = _value(config, "DATAFLOW_TIMEZONE") or "UTC"
    if name.upper() in ("UTC", "Z"):
        return UTC
    offset = re.fullmatch(_OFFSET, name)
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
        from zoneinfo import available_timezones

        from handler.hints import zone_hint

        hint = zone_hint(name, available_timezones())
        problems.add(
            "DATAFLOW_TIMEZONE",
            f"is not UTC, a ±HH:MM offset or a time zone this platform knows, got {describe(name)}{hint}",
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


def _flag(config: Mapping[str, str], name: str, problems: Problems, *, default: bool = False) -> bool:
    text = _value(config, name)
    if text is None:
        return default
    if text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    problems.add(name, f"must be true or false, got {describe(text)}")
    return default


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
    raw_parameters = {} if parameters_raw is None else parameters_raw
    fields = (available_fields(None), frozenset[str]())
    parameters = check_templates(raw_parameters, "DATAFLOW_PARAMETERS", None, fields, problems)
    dedup_parameter = check_dedup_parameter(
        _value(config, "DATAFLOW_DEDUP_PARAMETER"), "DATAFLOW_DEDUP_PARAMETER", parameters, problems
    )
    if job is None:
        return ()
    return (Route("default", Match(), job, parameters, dedup_parameter=dedup_parameter),)


def parse_settings(config: Mapping[str, str]) -> Settings:
    """Validates every setting and route; raises one ConfigError listing all problems."""
    problems = Problems()
    dry_run = _flag(config, "DATAFLOW_DRY_RUN", problems)
    credentials = _credentials(config, dry_run, problems)
    endpoint = _endpoint(config, problems)
    zone = _zone(config, problems)
    connect_timeout = _number(config, "DATAFLOW_CONNECT_TIMEOUT", 3.05, 0.1, 60, problems)
    read_timeout = _number(config, "DATAFLOW_READ_TIMEOUT", 10.0, 0.1, 300, problems)
    max_attempts = int(_number(config, "DATAFLOW_MAX_ATTEMPTS", 4, 1, 10, problems, integer=True))
    dedup_check = _choice(config, "DATAFLOW_DEDUP_CHECK", DEDUP_CHECKS, problems)
    unverifiable = _choice(config, "DATAFLOW_DEDUP_UNVERIFIABLE", UNVERIFIABLE_CHOICES, problems)
    window_hours = _number(config, "DATAFLOW_DEDUP_WINDOW_HOURS", 24, 1, 24 * 14, problems)
    caller_header = _flag(config, "DATAFLOW_CALLER_HEADER", problems, default=True)
    max_concurrency = int(_number(config, "DATAFLOW_MAX_CONCURRENCY", 10, 1, 32, problems, integer=True))
    rate_limit = _number(config, "DATAFLOW_RATE_LIMIT", 0.0, 0.001, 10_000, problems) or None
    routes = _routes(config, problems)
    _check_sweep_reach(routes, window_hours, problems)
    _check_file_lists(routes, problems)
    storage_endpoint = _storage_endpoint(config, problems)
    if problems:
        raise ConfigError(problems.items)
    return Settings(
        credentials,
        endpoint,
        routes,
        dry_run=dry_run,
        zone=zone,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        dedup_check=dedup_check,
        dedup_window=timedelta(hours=window_hours),
        caller_header=caller_header,
        max_concurrency=max_concurrency,
        dedup_unverifiable=unverifiable,
        rate_limit=rate_limit,
        storage_endpoint=storage_endpoint,
        storage_region=_value(config, "DATAFLOW_STORAGE_REGION"),
    )


def _check_sweep_reach(routes: tuple[Route, ...], window_hours: float, problems: Problems) -> None:
    """A sweep looks back no further than the duplicate check reads: past it, a file that ran would run again."""
    for route in routes:
        if route.sweep is not None and route.sweep.look_back > timedelta(hours=window_hours):
            problems.add(
                f"route {route.name}: sweep.lookBackHours",
                f"{route.sweep.look_back / timedelta(hours=1):g} h reaches past DATAFLOW_DEDUP_WINDOW_HOURS"
                f" ({window_hours:g}): a file whose run is older than the window would run again; lower it or raise"
                " the window",
            )


def _check_file_lists(routes: tuple[Route, ...], problems: Problems) -> None:
    """A job's runs are read one way per file-list parameter: routes of one job that name their files in one
    parameter must write it alike (one separator, a manifest's fingerprint or not), or one route's runs
    would be read with the other's rule and cover nothing (a sweep or a redelivery would run them again)."""
    written: dict[tuple[str, str], tuple[str, object]] = {}
    for route in routes:
        if route.coalesce is None:
            continue
        spec = route.coalesce
        rule = ("manifest", None) if spec.manifest is not None else ("separator", spec.separator)
        place = (route.job.job_id, spec.parameter)
        first = written.setdefault(place, (route.name, rule))
        if first[1] != rule:
            problems.add(
                f"route {route.name}: coalesce.parameter",
                f"{spec.parameter} of job {route.job.job_id} is also route {first[0]}'s file list, written another "
                "way (another separator, or a manifest's fingerprint): one route's runs would be read with the "
                "other's rule and cover nothing; give one of them another parameter name",
            )


def _storage_endpoint(config: Mapping[str, str], problems: Problems) -> str | None:
    """The S3 API's base URL where it is not the platform's own (a VPC endpoint, a local server)."""
    url = _value(config, "DATAFLOW_STORAGE_ENDPOINT")
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname or "", parts.port
    except ValueError:
        host, parts = "", urlsplit("")
    secure = (parts.scheme == "https" and host) or (parts.scheme == "http" and _loopback(host))
    if not secure or "@" in parts.netloc or parts.query or parts.fragment:
        # Not echoed: what precedes an '@' is usually a password.
        problems.add(
            "DATAFLOW_STORAGE_ENDPOINT",
            "must be a base https:// URL (http:// only for a loopback host), without user info, query or fragment",
        )
        return None
    return url.rstrip("/")


def _credentials(config: Mapping[str, str], dry_run: bool, problems: Problems) -> Credentials:
    access = _credential(config, "NCLOUD_ACCESS_KEY", problems)
    secret = _credential(config, "NCLOUD_SECRET_KEY", problems)
    if _value(config, "NCLOUD_CREDENTIALS_SECRET"):
        # The Lambda adapter reads a named secret into the two keys; anything left here is a conflict.
        reason = (
            "set together with NCLOUD_ACCESS_KEY/NCLOUD_SECRET_KEY; set either the secret or the keys"
            if access or secret
            else "is read only on AWS Lambda (Parameters and Secrets extension); on Cloud Functions use "
            "encrypted default parameters NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY"
        )
        problems.add("NCLOUD_CREDENTIALS_SECRET", reason)
    if access and secret:
        return Credentials(access, secret)
    if not dry_run:
        for name, value in (("NCLOUD_ACCESS_KEY", access), ("NCLOUD_SECRET_KEY", secret)):
            if not value and _value(config, name) is None:
                problems.add(name, "is required (unless DATAFLOW_DRY_RUN is true)")
    return Credentials(DRY_RUN_ACCESS_KEY, DRY_RUN_SECRET_KEY, placeholder=True)


def _routes(config: Mapping[str, str], problems: Problems) -> tuple[Route, ...]:
    has_routes, has_job = _value(config, "DATAFLOW_ROUTES"), _value(config, "DATAFLOW_JOB_ID")
    if has_routes and has_job:
        problems.add("DATAFLOW_ROUTES", "set together with DATAFLOW_JOB_ID; set exactly one of them")
        return ()
    if has_job:
        return _default_route(config, problems)
    if not has_routes:
        problems.add("DATAFLOW_ROUTES", "neither DATAFLOW_ROUTES nor DATAFLOW_JOB_ID is set; set exactly one of them")
        return ()
    for name in (name for name in DEFAULT_ONLY if _value(config, name)):
        problems.add(name, "only applies to the default route; with DATAFLOW_ROUTES put it in a route")
    before = len(problems.items)
    raw_routes = _routes_json(config, problems)
    if len(problems.items) != before:  # an unreadable file or bad JSON is one problem, not two
        return ()
    return check_routes(raw_routes, "DATAFLOW_ROUTES", problems)


_cache: dict[tuple[tuple[str, str], ...], Settings] = {}


def load_settings(config: Mapping[str, str]) -> Settings:
    """parse_settings, memoised per distinct configuration (NCP sends it with every call)."""
    key = tuple(sorted((name, value) for name, value in config.items() if name in SETTING_NAMES))
    settings = _cache.get(key)
    if settings is None:
        settings = parse_settings(config)
        if len(_cache) >= 8:  # a container sees one or two configurations; never grow unbounded
            _cache.clear()
        _cache[key] = settings
    return settings
