"""Looking an execution up by what it was sent with: the job's recent runs, matched to one planned run."""

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import count as count_from
from typing import Any, Final, Literal

from handler.records import Record

# Executions carry the service's clock and events the source's; both are NTP-synchronised, but the
# service's createdDate is truncated to the second.
CLOCK_TOLERANCE = timedelta(seconds=30)
# Field names seen for name/value items in NCP APIs; the Data Flow docs show none.
_NAME_FIELDS = ("key", "name", "parameterName", "paramKey", "paramName")
_VALUE_FIELDS = ("value", "parameterValue", "paramValue")

Verdict = Literal["ours", "other", "unknown"]
ListPage = Callable[[int, int], Mapping[str, Any]]


class Identity(Record):
    """What tells our run apart: the parameters sent, the job condition, and the oldest possible start."""

    __slots__ = ("parameters", "job_condition", "dedup_parameter", "since", "by_parameters", "others")

    def __init__(
        self,
        parameters: Mapping[str, str],
        job_condition: Mapping[str, Any] | None,
        dedup_parameter: str | None,
        since: datetime,
        by_parameters: bool = True,
        others: Container[str] = frozenset(),
    ) -> None:
        self.parameters: Final = parameters
        self.job_condition: Final = job_condition
        self.dedup_parameter: Final = dedup_parameter
        self.since: Final = since
        # Equal parameters identify a run only right after our own request: two events can render the
        # same parameters (one key uploaded twice), so a check before submitting trusts dedupParameter alone.
        self.by_parameters: Final = by_parameters
        # Executions this container started for other events: never ours, whatever they echo.
        self.others: Final = others


class Found(Record):
    __slots__ = ("execution_id", "status")

    def __init__(self, execution_id: str | None, status: str | None) -> None:
        self.execution_id: Final = execution_id
        self.status: Final = status


class Absent(Record):
    """Every execution in the window was seen and none is ours."""

    __slots__ = ("examined",)

    def __init__(self, examined: int) -> None:
        self.examined: Final = examined


class Unknown(Record):
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason: Final = reason


Lookup = Found | Absent | Unknown


def echoed_parameters(item: Mapping[str, Any]) -> dict[str, str] | None:
    """The parameters an execution echoes, as an object or as name/value items; None when it echoes none."""
    value = item.get("parsedParameters")
    if isinstance(value, dict):
        return {str(name): _text(echo) for name, echo in value.items()}
    if not isinstance(value, list):
        return None
    echoed: dict[str, str] = {}
    for entry in value:
        if not isinstance(entry, dict):
            continue
        name = next((entry[field] for field in _NAME_FIELDS if isinstance(entry.get(field), str)), None)
        echo = next((entry[field] for field in _VALUE_FIELDS if field in entry), None)
        if name is not None:
            echoed[name] = _text(echo)
    return echoed or None


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def verdict(item: Mapping[str, Any], identity: Identity) -> Verdict:
    """Whether an execution is ours, surely another's, or cannot be told from what the service echoes."""
    if item.get("jobExecutionId") in identity.others:
        return "other"
    condition = item.get("jobCondition")
    if identity.job_condition and isinstance(condition, dict):
        for name, value in identity.job_condition.items():
            if name in condition and condition[name] != value:
                return "other"
    echoed = echoed_parameters(item)
    if echoed is None:
        return "unknown"
    if any(name in echoed and echoed[name] != value for name, value in identity.parameters.items()):
        return "other"
    if identity.dedup_parameter is not None and identity.dedup_parameter in echoed:
        return "ours"
    if identity.by_parameters and identity.parameters and all(name in echoed for name in identity.parameters):
        return "ours"
    return "unknown"


def created(item: Mapping[str, Any]) -> datetime | None:
    value = item.get("createdDate") or item.get("startDate")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _items(listing: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = listing.get("list")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _count(listing: Mapping[str, Any]) -> int | None:
    count = listing.get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def _newest_first(items: Sequence[Mapping[str, Any]]) -> bool | None:
    dates = [date for date in map(created, items) if date is not None]
    if len(dates) < 2 or dates[0] == dates[-1]:
        return None
    return dates[0] > dates[-1]


def _reaches(items: Sequence[Mapping[str, Any]], since: datetime) -> bool:
    """True when the page holds an execution created before `since`: older pages cannot hold ours."""
    return any((date := created(item)) is not None and date < since for item in items)


def collect(list_page: ListPage, since: datetime, *, limit: int, max_pages: int) -> list[Mapping[str, Any]] | str:
    """The executions that may be newer than `since`, whichever order the service lists them in.

    Returns the reason instead when the window cannot be covered within `max_pages` requests.
    """
    first = list_page(0, limit)
    items = _items(first)
    count = _count(first)
    total_pages = None if count is None else max(1, -(-count // limit))
    if total_pages == 1 or (count is None and len(items) < limit):
        return items
    newest_first = _newest_first(items)
    if newest_first is None and total_pages is None:
        return "the service lists executions without a count or an order"
    pages: Iterable[int]
    if newest_first is False and total_pages is not None:
        # Oldest first: the newest are on the last pages, read backwards until one is too old.
        pages, last = range(total_pages - 1, 0, -1), []
    else:
        pages, last = (count_from(1) if total_pages is None else range(1, total_pages)), items
    seen, requests = list(items), 1
    for page in pages:
        if newest_first is not None and _reaches(last, since):
            return seen
        if requests >= max_pages:
            return f"{requests} pages of {limit} executions do not reach back to {since.isoformat()}"
        last = _items(list_page(page, limit))
        requests += 1
        seen.extend(last)
        if not last:
            return seen
    return seen


def find(list_page: ListPage, identity: Identity, *, limit: int, max_pages: int) -> Lookup:
    """Looks through the job's executions created since `identity.since` for ours."""
    collected = collect(list_page, identity.since, limit=limit, max_pages=max_pages)
    if isinstance(collected, str):
        return Unknown(collected)
    window = [item for item in collected if (date := created(item)) is None or date >= identity.since]
    verdicts = [(item, verdict(item, identity)) for item in window]
    ours = [item for item, said in verdicts if said == "ours"]
    if ours:
        newest = max(ours, key=lambda item: created(item) or identity.since)
        execution_id, status = newest.get("jobExecutionId"), newest.get("status")
        return Found(
            execution_id if isinstance(execution_id, str) else None, status if isinstance(status, str) else None
        )
    unknown = sum(1 for _, said in verdicts if said == "unknown")
    if unknown:
        return Unknown(
            f"{unknown} execution(s) since {identity.since.isoformat()} cannot be told apart "
            "(the service echoes no parameters that identify them; see dedupParameter)"
        )
    return Absent(len(window))
