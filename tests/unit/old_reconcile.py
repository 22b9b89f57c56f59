"""The reading of a listing before the one reader (4c533c4), frozen: what the index must agree with."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final, Literal

from handler.records import Record

# Executions carry the service's clock and events the source's, both NTP-synchronised; the service's
# createdDate is truncated to the second. A run created this long before the event still covers it.
CLOCK_TOLERANCE = timedelta(seconds=5)
# Field names seen for name/value items in NCP APIs; the Data Flow docs show none.
_NAME_FIELDS = ("key", "name", "parameterName", "paramKey", "paramName")
_VALUE_FIELDS = ("value", "parameterValue", "paramValue")
# jobCondition fields a service may store in another spelling: compared as it would store them.
_PATH_FIELDS = frozenset({"nrn", "scriptPath", "logPath"})

if TYPE_CHECKING:  # types for the checker only: each alias costs tens of microseconds at every cold start
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
    if set(echoed) - set(identity.parameters):
        return "other"  # a run with parameters this one did not send: another route's, on the same job
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


def find_in(collected: Collected, identity: Identity) -> Lookup:
    """Ours among what a listing read. A run of ours is found even where the rest of the window could
    not be read; "absent" needs the whole window read."""
    window = [item for item in collected.items if (date := created(item)) is None or date >= identity.since]
    verdicts = [(item, verdict(item, identity)) for item in window]
    unidentified = sum(1 for _, said in verdicts if said == "unknown")
    ours = sorted(
        (item for item, said in verdicts if said == "ours"),
        key=lambda item: created(item) or identity.since,
        reverse=True,
    )
    if ours:
        return Found(tuple((_string(item, "jobExecutionId"), _string(item, "status")) for item in ours), unidentified)
    if collected.reason is not None:
        return Unknown(collected.reason, unidentified)
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


class Collected(Record):
    """What a listing read: its executions, and why they may not be the whole window (None: they are)."""

    __slots__ = ("items", "reason")

    def __init__(self, items: Sequence[Mapping[str, Any]], reason: str | None = None) -> None:
        self.items: Final = items
        self.reason: Final = reason


class Known(Record):
    """A newest-first listing read whole back to `reached`: a later lookup reads its newest pages, adds what is new."""

    __slots__ = ("items", "reached")

    def __init__(self, items: Sequence[Mapping[str, Any]], reached: datetime) -> None:
        self.items: Final = items
        self.reached: Final = reached


def known_from(collected: Collected, since: datetime, most: int) -> Known | None:
    """What a whole read of a newest-first listing lets later lookups reuse (None for another order)."""
    if collected.reason is not None or len(collected.items) > most or _newest_first(collected.items) is not True:
        return None
    dates = [date for date in map(created, collected.items) if date is not None]
    if len(dates) < len(collected.items) or any(newer < older for newer, older in pairwise(dates)):
        return None  # not newest first throughout (oldest-first pages read backwards, undated runs)
    return Known(collected.items, since)


def refreshed(known: Known, list_page: ListPage, since: datetime, *, limit: int, max_pages: int) -> Collected | None:
    """The window as the newest pages, read afresh, show it on top of what was known. New runs only ever
    come on top of a newest-first listing, but runs of one second may sort either way: the pages are
    read past the known top's second (or to the listing's end). None unless they overlap the known
    listing exactly, within `max_pages`."""
    top, newest = (_string(known.items[0], "jobExecutionId"), created(known.items[0])) if known.items else (None, None)
    if since < known.reached or top is None or newest is None:
        return None
    items: list[Mapping[str, Any]] = []
    seen: set[str | None] = set()
    for page in range(max_pages):
        got = _items(list_page(page, limit))
        if got is None:
            return None
        for item in got:  # a run created between two requests pushes the listing down: runs come again
            if (key := _string(item, "jobExecutionId")) not in seen:
                seen.add(key)
                items.append(item)
        last = created(got[-1]) if got else None
        if len(got) < limit or (last is not None and last < newest):
            break
    else:
        return None  # more new runs (or runs of the top's second) than a few pages: read the window whole
    ids = [_string(item, "jobExecutionId") for item in items]
    if top not in ids:
        return None
    new = ids.index(top)
    overlap = len(items) - new
    if [_string(item, "jobExecutionId") for item in known.items[:overlap]] != ids[new:]:
        return None
    dates = [date for date in map(created, items[: new + 1]) if date is not None]
    if len(dates) <= new or any(newer < older for newer, older in pairwise(dates)):
        return None  # the new runs are not newest first: read the window whole
    return Collected([*items, *known.items[overlap:]])


def grown(known: Known, again: Collected, most: int) -> Known | None:
    """What is kept after a refresh: the refreshed window, back to the same point (None past `most` runs)."""
    return Known(again.items, known.reached) if len(again.items) <= most else None


def _first(answer: Mapping[str, Any], asked: int) -> _Listing:
    """Page 0 read defensively: it tells the page size (said in `limit`, or a silent cap) and maybe the total."""
    items = _items(answer)
    said = _whole(answer.get("limit"))
    size = said if said is not None and 0 < said < asked else asked
    count = _whole(answer.get("count"))
    if items and count is not None and count > len(items) and len(items) < size:
        size = len(items)  # shorter than asked while the count says more: the service caps pages silently
    return _page(answer, max(size, len(items or ())), items)


def _page(answer: Mapping[str, Any], size: int, items: list[Mapping[str, Any]] | None = None) -> _Listing:
    """A page of a known size. A count may be the total or this page's length ("number of response
    results"): only a count beyond a full page, or beside a short one, is the total."""
    items = _items(answer) if items is None else items
    count = _whole(answer.get("count"))
    full = items is not None and len(items) >= size
    return _Listing(items, size, count if count is not None and (count > size or not full) else None)


def _items(answer: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    raw = answer.get("list")
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else None


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return value if isinstance(value, int) and value >= 0 else None


class _Reader:
    """Pages of one listing, counted against the budget of requests a lookup may make."""

    def __init__(self, list_page: ListPage, limit: int, size: int, budget: int) -> None:
        self.list_page = list_page
        self.limit = limit
        self.size = size
        self.budget = budget
        self.requests = 1  # page 0 is read before

    def read(self, page: int) -> _Listing | None:
        """The page, or None when the budget is spent."""
        if self.requests >= self.budget:
            return None
        self.requests += 1
        return _page(self.list_page(page, self.limit), self.size)


def collect(list_page: ListPage, since: datetime, *, limit: int, max_pages: int) -> Collected:
    """Every execution that may be newer than `since`, whichever order and paging the service uses.

    Where the window cannot be proven read within `max_pages` requests (an answer without a list,
    an empty page before the window was reached, runs pruned while paging, too many pages), the
    reason says why, beside what was read.
    """
    first = _first(list_page(0, limit), limit)
    if first.items is None:
        return Collected([], "the list of executions came without a list")
    if first.short:
        return Collected(first.items)
    reader = _Reader(list_page, limit, first.size, max_pages)
    newest_first = _newest_first(first.items)
    if newest_first is False:
        found = _last_page(reader, first)
        if isinstance(found, str):
            return Collected(first.items, found)
        return _backwards(reader, *found, since)
    return _forwards(reader, first, since, newest_first)


def _last_page(reader: _Reader, first: _Listing) -> tuple[int, _Listing] | str:
    """Oldest first, the newest runs are on the last page: from the total, or found by doubling and
    halving (a page past the end is empty) in a few requests, whatever the job's history."""
    if first.total is not None:
        last = -(-first.total // first.size) - 1
        listing = reader.read(last) if last else first
        return _spent(reader) if listing is None else (last, listing)
    low, high, known = 0, 1, first  # page `low` is full; `high` is to be read
    while True:
        listing = reader.read(high)
        if listing is None or listing.items is None:
            return _spent(reader) if listing is None else "the list of executions came without a list"
        if listing.items and listing.short:
            return high, listing
        if not listing.items:
            break
        low, high, known = high, high * 2, listing
    while high - low > 1:
        middle = (low + high) // 2
        listing = reader.read(middle)
        if listing is None or listing.items is None:
            return _spent(reader) if listing is None else "the list of executions came without a list"
        if listing.items and listing.short:
            return middle, listing
        low, high, known = (middle, high, listing) if listing.items else (low, middle, known)
    return low, known


def _spent(reader: _Reader) -> str:
    return f"{reader.requests} pages of {reader.size} executions do not cover the window"


def _backwards(reader: _Reader, last: int, listing: _Listing, since: datetime) -> Collected:
    """Oldest first: from the last page back until a page reaches before `since` (a prune shifts pages,
    and pages read backwards then overlap rather than skip)."""
    seen: list[Mapping[str, Any]] = list(listing.items or ())
    page = last
    while page > 0 and not _reaches(listing.items or (), since):
        page -= 1
        read = reader.read(page)  # page 0 again too: what a prune shifted onto it since is read
        if read is None:
            return Collected(seen, _spent(reader))
        if not read.items:
            return Collected(seen, f"page {page} of the executions was empty before the window was reached")
        listing = read
        seen.extend(listing.items or ())
    return Collected(seen)


def _forwards(reader: _Reader, first: _Listing, since: datetime, newest_first: bool | None) -> Collected:
    """Page on from page 0 until a short page, a total reached, or (newest first) a page older than `since`."""
    seen: list[Mapping[str, Any]] = list(first.items or ())
    last, page = first, 0
    while not last.short and not (first.total is not None and len(seen) >= first.total):
        if newest_first and _reaches(last.items or (), since):
            return Collected(seen)
        page += 1
        read = reader.read(page)
        if read is None or read.items is None:
            return Collected(seen, _spent(reader) if read is None else "the list of executions came without a list")
        if not read.items:
            if first.total is not None and len(seen) >= first.total:
                break
            return Collected(seen, f"page {page} of the executions was empty before the window was reached")
        last = read
        seen.extend(read.items)
    if newest_first is not True and page > 0:
        # No order to tell, read forwards: a prune while paging shifts runs past us unseen. The oldest
        # run being still first after the walk proves that none was pruned (one request more at most).
        again = _items(reader.list_page(0, reader.limit))
        if not again or _string(again[0], "jobExecutionId") != _string(seen[0], "jobExecutionId"):
            return Collected(seen, "runs were pruned while the executions were paged through")
    return Collected(seen)


def _newest_first(items: Sequence[Mapping[str, Any]]) -> bool | None:
    dates = [date for date in map(created, items) if date is not None]
    if len(dates) < 2 or dates[0] == dates[-1]:
        return None
    return dates[0] > dates[-1]


def _reaches(items: Sequence[Mapping[str, Any]], since: datetime) -> bool:
    """True when the page holds an execution created before `since`: older pages cannot hold ours."""
    return any((date := created(item)) is not None and date < since for item in items)
