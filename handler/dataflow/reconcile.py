"""Reading a job's executions: which one is this event's run, proven over the whole lookup window."""

from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from handler.records import Record

# Executions carry the service's clock and events the source's, both NTP-synchronised; the service's
# createdDate is truncated to the second. A run created this long before the event still covers it.
CLOCK_TOLERANCE = timedelta(seconds=5)
# Field names seen for name/value items in NCP APIs; the Data Flow docs show none.
_NAME_FIELDS = ("key", "name", "parameterName", "paramKey", "paramName")
_VALUE_FIELDS = ("value", "parameterValue", "paramValue")
# jobCondition fields a service may store in another spelling: compared as it would store them.
_PATH_FIELDS = frozenset({"nrn", "scriptPath", "logPath"})

Verdict = Literal["ours", "other", "unknown"]
ListPage = Callable[[int, int], Mapping[str, Any]]


class Identity(Record):
    """What tells this event's run apart: the parameters sent, the job condition, the oldest possible start.

    With a `dedup_parameter`, the run carries the event's dedup key and an echo of it decides alone.
    Without one, a run of the same job condition and parameters created since `since` covers the
    event: it started after the event happened, so it sees what the event brought.
    `others` are executions this container started or claimed for other events: never ours.
    `echo_known` says the service was seen echoing every parameter sent, so an empty echo means none.
    """

    __slots__ = ("parameters", "job_condition", "dedup_parameter", "since", "others", "echo_known")

    def __init__(
        self,
        parameters: Mapping[str, str],
        job_condition: Mapping[str, Any] | None,
        dedup_parameter: str | None,
        since: datetime,
        others: Container[str] = frozenset(),
        echo_known: bool = False,
    ) -> None:
        self.parameters: Final = parameters
        self.job_condition: Final = job_condition
        self.dedup_parameter: Final = dedup_parameter
        self.since: Final = since
        self.others: Final = others
        self.echo_known: Final = echo_known


class Found(Record):
    """Runs that are this event's, newest first: the caller claims one (two events never share a run)."""

    __slots__ = ("candidates", "unidentified")

    def __init__(self, candidates: tuple[tuple[str | None, str | None], ...], unidentified: int = 0) -> None:
        self.candidates: Final = candidates  # (jobExecutionId, status)
        self.unidentified: Final = unidentified


class Absent(Record):
    """Every execution in the window was seen and none is ours."""

    __slots__ = ("examined",)

    def __init__(self, examined: int) -> None:
        self.examined: Final = examined


class Unknown(Record):
    """The answers cannot prove the run absent: `unidentified` runs echo too little, or the window was not covered."""

    __slots__ = ("reason", "unidentified")

    def __init__(self, reason: str, unidentified: int = 0) -> None:
        self.reason: Final = reason
        self.unidentified: Final = unidentified


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
    """An echoed value as the string that was sent: a service may store "true" as JSON true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else "" if value is None else str(value)


def verdict(item: Mapping[str, Any], identity: Identity) -> Verdict:
    """Whether an execution is ours, surely another's, or cannot be told from what the service echoes."""
    if item.get("jobExecutionId") in identity.others:
        return "other"
    echoed = echoed_parameters(item)
    dedup = identity.dedup_parameter
    if dedup is not None and echoed is not None and dedup in echoed:
        # The run's own identity: no difference elsewhere in how the service stores things outweighs it.
        return "ours" if echoed[dedup] == identity.parameters.get(dedup) else "other"
    if not same_condition(identity.job_condition, item.get("jobCondition")):
        return "other"
    if echoed is None and identity.echo_known:
        echoed = {}
    if echoed is None:
        return "unknown"
    sent = {name: value for name, value in identity.parameters.items() if name != dedup}
    if any(name in echoed and echoed[name] != value for name, value in sent.items()):
        return "other"
    if dedup is None and all(name in echoed for name in sent):
        return "ours"
    return "unknown"


def same_condition(ours: Mapping[str, Any] | None, theirs: object) -> bool:
    if not ours or not isinstance(theirs, dict):
        return True
    return all(_stored(name, value) == _stored(name, theirs[name]) for name, value in ours.items() if name in theirs)


def _stored(name: str, value: object) -> object:
    """A jobCondition value as a service may store it: upper-cased words, paths without a trailing slash."""
    if name == "workerType" and isinstance(value, str):
        return value.upper()
    if name in _PATH_FIELDS and isinstance(value, str):
        return value.rstrip("/")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def created(item: Mapping[str, Any]) -> datetime | None:
    value = item.get("createdDate") or item.get("startDate")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def find(list_page: ListPage, identity: Identity, *, limit: int, max_pages: int) -> Lookup:
    """Looks through the job's executions created since `identity.since` for ours."""
    collected = collect(list_page, identity.since, limit=limit, max_pages=max_pages)
    if isinstance(collected, str):
        return Unknown(collected)
    window = [item for item in collected if (date := created(item)) is None or date >= identity.since]
    verdicts = [(item, verdict(item, identity)) for item in window]
    unidentified = sum(1 for _, said in verdicts if said == "unknown")
    ours = sorted(
        (item for item, said in verdicts if said == "ours"),
        key=lambda item: created(item) or identity.since,
        reverse=True,
    )
    if ours:
        return Found(tuple((_string(item, "jobExecutionId"), _string(item, "status")) for item in ours), unidentified)
    if unidentified:
        return Unknown(
            f"{unidentified} execution(s) since {identity.since.isoformat()} cannot be told apart "
            "(the service echoes too little of their parameters to identify them)",
            unidentified,
        )
    return Absent(len(window))


def _string(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) else None


class _Listing(Record):
    """One answer of the list call: its items (None without a list), its page size, a proven total."""

    __slots__ = ("items", "size", "total")

    def __init__(self, items: list[Mapping[str, Any]] | None, size: int, total: int | None) -> None:
        self.items: Final = items
        self.size: Final = size
        self.total: Final = total

    @property
    def short(self) -> bool:
        return self.items is not None and len(self.items) < self.size


def _listing(answer: Mapping[str, Any], asked: int) -> _Listing:
    """An answer read defensively: what it holds and what it says of the paging."""
    raw = answer.get("list")
    items: list[Mapping[str, Any]] | None = (
        [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else None
    )
    # A service that caps the page size says so in the answer's limit; pages are that long.
    said = _whole(answer.get("limit"))
    size = max(said if said is not None and 0 < said < asked else asked, len(items or ()))
    count = _whole(answer.get("count"))
    # A count may be the total or this page's length ("number of response results"): only a count
    # beyond a full page, or beside a short one, is the total.
    full = items is not None and len(items) == size
    return _Listing(items, size, count if count is not None and (count > size or not full) else None)


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return value if isinstance(value, int) and value >= 0 else None


def collect(list_page: ListPage, since: datetime, *, limit: int, max_pages: int) -> list[Mapping[str, Any]] | str:
    """Every execution that may be newer than `since`, whichever order and paging the service uses.

    Returns the reason instead when coverage of the window cannot be proven within `max_pages`
    requests: an answer without a list, an empty page before the window was reached, runs pruned
    while paging, or more pages than allowed.
    """
    first = _listing(list_page(0, limit), limit)
    if first.items is None:
        return "the list of executions came without a list"
    if first.short:
        return list(first.items)
    newest_first = _newest_first(first.items)
    if newest_first is False and first.total is not None:
        return _backwards(list_page, first, first.total, since, limit, max_pages)
    return _forwards(list_page, first, since, limit, max_pages, newest_first)


def _backwards(
    list_page: ListPage, first: _Listing, total: int, since: datetime, limit: int, max_pages: int
) -> list[Mapping[str, Any]] | str:
    """Oldest first with a total: the newest are on the last pages; a prune shifts pages without a gap."""
    last_page = -(-total // first.size) - 1
    seen: list[Mapping[str, Any]] = list(first.items or ())
    requests = 1
    for page in range(last_page, 0, -1):
        if requests >= max_pages:
            return f"{requests} pages of {first.size} executions do not reach back to {since.isoformat()}"
        listing = _listing(list_page(page, limit), limit)
        requests += 1
        if not listing.items:
            return f"page {page} of the executions was empty before the window was reached (runs pruned?)"
        seen.extend(listing.items)
        if _reaches(listing.items, since):
            return seen
    return seen


def _forwards(
    list_page: ListPage, first: _Listing, since: datetime, limit: int, max_pages: int, newest_first: bool | None
) -> list[Mapping[str, Any]] | str:
    """Page on from page 0 until a short page, a total reached, or (newest first) a page older than `since`."""
    seen: list[Mapping[str, Any]] = list(first.items or ())
    last, requests, page = first, 1, 0
    while not last.short and not (last.total is not None and len(seen) >= last.total):
        if newest_first and _reaches(last.items or (), since):
            return seen
        if requests >= max_pages:
            return f"{requests} pages of {first.size} executions do not reach back to {since.isoformat()}"
        page += 1
        last = _listing(list_page(page, limit), limit)
        requests += 1
        if not last.items:
            if last.items is None:
                return "the list of executions came without a list"
            if first.total is not None and len(seen) >= first.total:
                break
            return f"page {page} of the executions was empty before the window was reached (runs pruned?)"
        seen.extend(last.items)
    if newest_first is not True and requests > 1:
        # Oldest first (or no order to tell) read forwards: a prune while paging shifts runs past us
        # unseen. The oldest run being still first after the walk proves that none was pruned (one
        # request more than max_pages at most).
        again = _listing(list_page(0, limit), limit)
        if not again.items or _string(again.items[0], "jobExecutionId") != _string(seen[0], "jobExecutionId"):
            return "runs were pruned while the executions were paged through"
    return seen


def _newest_first(items: Sequence[Mapping[str, Any]]) -> bool | None:
    dates = [date for date in map(created, items) if date is not None]
    if len(dates) < 2 or dates[0] == dates[-1]:
        return None
    return dates[0] > dates[-1]


def _reaches(items: Sequence[Mapping[str, Any]], since: datetime) -> bool:
    """True when the page holds an execution created before `since`: older pages cannot hold ours."""
    return any((date := created(item)) is not None and date < since for item in items)
