"""What one Data Flow execution needs (job id, query ids, jobCondition) and its validation."""

from __future__ import annotations

from collections.abc import Mapping
from string import ascii_letters, digits
from typing import Any, Final, TypeGuard

from handler.errors import Problems
from handler.records import Record

# The characters of a Data Flow id. Tested by stripping them, not by a regular expression, which would be
# compiled at every cold start for this one test.
ID_CHARACTERS = ascii_letters + digits + "-_"
PATH_FIELDS = ("nrn", "scriptPath", "logPath")
CONDITION_FIELDS = frozenset({"workerType", "numWorker", "timeout", *PATH_FIELDS})
NUM_WORKER_RANGE = (2, 10)
TIMEOUT_RANGE = (1, 1440)


class JobSpec(Record):
    """The target of an execution: the URL parts and the optional jobCondition body."""

    __slots__ = ("job_id", "workflow_id", "trigger_id", "job_condition")

    def __init__(
        self,
        job_id: str,
        workflow_id: str | None = None,
        trigger_id: str | None = None,
        job_condition: Mapping[str, Any] | None = None,
    ) -> None:
        self.job_id: Final = job_id
        self.workflow_id: Final = workflow_id
        self.trigger_id: Final = trigger_id
        self.job_condition: Final = job_condition

    def query(self) -> dict[str, str]:
        query: dict[str, str] = {}
        if self.trigger_id:
            query["triggerId"] = self.trigger_id
        if self.workflow_id:
            query["workflowId"] = self.workflow_id
        return query


def describe(value: object) -> str:
    """A short description of a value's shape for error messages (never the whole value)."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string of {len(value)} characters" if len(value) > 40 else f"string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, list):
        return f"array of {len(value)} items"
    if isinstance(value, dict):
        return f"object with {len(value)} keys"
    return type(value).__name__


def is_id(value: object) -> TypeGuard[str]:
    """1-64 letters, digits, '-' or '_'."""
    return isinstance(value, str) and 0 < len(value) <= 64 and not value.strip(ID_CHARACTERS)


def check_id(value: object, where: str, problems: Problems) -> str | None:
    if not is_id(value):
        problems.add(where, f"must be 1-64 letters, digits, '-' or '_', got {describe(value)}")
        return None
    return value


def check_object(
    value: object, where: str, allowed: frozenset[str], problems: Problems, kind: str = ""
) -> dict[str, Any] | None:
    """A JSON object whose unknown fields are each reported (a typo must not be silently ignored)."""
    if not isinstance(value, dict):
        problems.add(where, f"must be a JSON object, got {describe(value)}")
        return None
    for name in sorted(set(value) - allowed):
        from handler.hints import did_you_mean  # the error path only

        hint = did_you_mean(str(name), allowed)
        problems.add(f"{where}.{name}", f"unknown {kind}field{hint} (allowed: {', '.join(sorted(allowed))})")
    return value


def _check_int(
    condition: Mapping[str, Any], name: str, bounds: tuple[int, int], where: str, problems: Problems
) -> None:
    if name not in condition:
        return
    value = condition[name]
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(f"{where}.{name}", f"must be an integer {low}-{high}, got {describe(value)}")


def check_job_condition(value: object, where: str, problems: Problems) -> dict[str, Any] | None:
    """Validates a jobCondition against the API's documented ranges; None when invalid."""
    before = len(problems.items)
    value = check_object(value, where, CONDITION_FIELDS, problems)
    if value is None:
        return None
    _check_int(value, "numWorker", NUM_WORKER_RANGE, where, problems)
    _check_int(value, "timeout", TIMEOUT_RANGE, where, problems)
    if "workerType" in value and not (isinstance(value["workerType"], str) and value["workerType"]):
        problems.add(f"{where}.workerType", f"must be a non-empty string, got {describe(value['workerType'])}")
    given = [name for name in PATH_FIELDS if name in value]
    for name in given:
        if not isinstance(value[name], str) or not value[name].strip():
            problems.add(f"{where}.{name}", f"must be a non-empty string, got {describe(value[name])}")
    if given and len(given) != len(PATH_FIELDS):
        missing = [name for name in PATH_FIELDS if name not in value]
        problems.add(where, f"nrn, scriptPath and logPath go together; missing {', '.join(missing)}")
    return dict(value) if len(problems.items) == before else None


def check_job_spec(
    raw: Mapping[str, Any], where: str, problems: Problems, locations: Mapping[str, str] | None = None
) -> JobSpec | None:
    """Reads jobId, workflowId, triggerId and jobCondition from a route or direct invocation.

    Problems are reported at `where.FIELD`, or at `locations[FIELD]` (the default route names the
    environment variable a user sets instead).
    """
    before = len(problems.items)

    def at(field: str) -> str:
        return (locations or {}).get(field) or f"{where}.{field}"

    job_id = check_id(raw.get("jobId"), at("jobId"), problems)
    optional_ids: dict[str, str | None] = {}
    for name in ("workflowId", "triggerId"):
        value = raw.get(name)
        optional_ids[name] = None if value in (None, "") else check_id(value, at(name), problems)
    condition = None
    if raw.get("jobCondition") is not None:
        condition = check_job_condition(raw["jobCondition"], at("jobCondition"), problems)
    if job_id is None or len(problems.items) != before:
        return None
    return JobSpec(job_id, optional_ids["workflowId"], optional_ids["triggerId"], condition)


def check_parameter_name(value: object, where: str, problems: Problems) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 128 or not value.isprintable():
        problems.add(where, f"must be a parameter name of 1-128 printable characters, got {describe(value)}")
        return None
    return value


def check_parameters(value: object, where: str, problems: Problems) -> dict[str, str] | None:
    """Parameters are a JSON object of string to string."""
    if not isinstance(value, dict):
        problems.add(where, f"must be a JSON object of strings, got {describe(value)}")
        return None
    bad = [name for name, item in value.items() if not isinstance(item, str)]
    for name in bad:
        problems.add(f"{where}.{name}", f"must be a string, got {describe(value[name])}")
    empty = [name for name in value if not name]
    if empty:
        problems.add(where, "parameter names must not be empty")
    unencodable = [
        name
        for name, item in value.items()
        if not utf8_encodable(name) or (isinstance(item, str) and not utf8_encodable(item))
    ]
    for name in unencodable:
        problems.add(f"{where}.{name!a}", "is not valid Unicode (a lone surrogate)")
    return None if bad or empty or unencodable else dict(value)


def utf8_encodable(text: str) -> bool:
    """False for text holding a lone surrogate, which JSON may carry but no log or request can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
