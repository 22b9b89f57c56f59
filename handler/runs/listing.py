"""Paging a job's listing: the window read whole whatever the service's order, paging and count, or why not."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

from handler.records import Record
from handler.runs.execution import Execution, parse

if TYPE_CHECKING:
    ListPage = Callable[[int, int], Mapping[str, Any]]

# How late a run may show up in the listing after its createdDate (a create committed after newer
# ones): where the service says no total, a refresh reads this far below the newest run it kept.
LATE = timedelta(seconds=5)


class Read(Record):
    """What a read of the listing saw: its runs (each once, in listing order), why they may not be the
    whole window (None: they are), whether it was newest first, and the total the service said last."""

    __slots__ = ("executions", "reason", "newest_first", "total", "requests", "contiguous")

    def __init__(
        self,
        executions: Sequence[Execution],
        reason: str | None = None,
        *,
        newest_first: bool | None = None,
        total: int | None = None,
        requests: int = 0,
        contiguous: bool = False,
    ) -> None:
        self.executions: Final = executions
        self.reason: Final = reason
        self.newest_first: Final = newest_first
        self.total: Final = total
        self.requests: Final = requests
        # Short of the window only for want of pages: what was read is every run back to its oldest.
        self.contiguous: Final = contiguous


class _Listing(Record):
    """One answer of the list call: its runs (None without a list), its page size, a proven total."""

    __slots__ = ("executions", "size", "total")

    def __init__(self, executions: list[Execution] | None, size: int, total: int | None) -> None:
        self.executions: Final = executions
        self.size: Final = size
        self.total: Final = total

    @property
    def short(self) -> bool:
        return self.executions is not None and len(self.executions) < self.size


def _items(
    answer: Mapping[str, Any], splits: Mapping[str, str] | None = None, known: Mapping[str, Execution] | None = None
) -> list[Execution] | None:
    """The answer's runs, each parsed once: a run `known` already with the same status is taken as it was."""
    raw = answer.get("list")
    if not isinstance(raw, list):
        return None
    return [_parsed(item, splits, known) for item in raw if isinstance(item, dict)]


def _parsed(
    item: Mapping[str, Any], splits: Mapping[str, str] | None, known: Mapping[str, Execution] | None
) -> Execution:
    kept = known.get(item.get("jobExecutionId")) if known is not None else None  # type: ignore[arg-type]
    if kept is not None and kept.status == item.get("status"):
        return kept
    return parse(item, splits)


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _first(
    answer: Mapping[str, Any], asked: int, splits: Mapping[str, str] | None, known: Mapping[str, Execution] | None
) -> _Listing:
    """Page 0 read defensively: it tells the page size (said in `limit`, or a silent cap) and maybe the total."""
    executions = _items(answer, splits, known)
    said = _whole(answer.get("limit"))
    size = said if said is not None and 0 < said < asked else asked
    count = _whole(answer.get("count"))
    if executions and count is not None and count > len(executions) and len(executions) < size:
        size = len(executions)  # shorter than asked while the count says more: the service caps pages silently
    return _page(answer, max(size, len(executions or ())), executions)


def _page(
    answer: Mapping[str, Any],
    size: int,
    executions: list[Execution] | None = None,
    splits: Mapping[str, str] | None = None,
    known: Mapping[str, Execution] | None = None,
) -> _Listing:
    """A page of a known size. A count may be the total or this page's length ("number of response
    results"): only a count beyond a full page, or beside a short one, is the total."""
    executions = _items(answer, splits, known) if executions is None else executions
    count = _whole(answer.get("count"))
    full = executions is not None and len(executions) >= size
    return _Listing(executions, size, count if count is not None and (count > size or not full) else None)


def order_of(pages: Sequence[Sequence[Execution]]) -> bool | None:
    """Newest first (True), oldest first (False) or not yet known, from every run read so far: neighbours'
    dates vote within pages, a clear majority decides; else the pages' middle dates (one flip at a
    second's boundary never outvotes a page)."""
    down = up = 0
    for page in pages:
        dates = [execution.created for execution in page if execution.created is not None]
        down += sum(1 for newer, older in pairwise(dates) if newer > older)
        up += sum(1 for newer, older in pairwise(dates) if newer < older)
    if down >= 2 * up + 2:
        return True
    if up >= 2 * down + 2:
        return False
    middles = [_middle(page) for page in pages]
    known = [middle for middle in middles if middle is not None]
    if len(known) >= 2 and known[0] != known[-1]:
        return known[0] > known[-1]
    return None


def _middle(page: Sequence[Execution]) -> datetime | None:
    """The page's middle creation time (the lower of two; `statistics` costs 2 ms at every cold start)."""
    dates = sorted(execution.created for execution in page if execution.created is not None)
    return dates[(len(dates) - 1) // 2] if dates else None


def reaches(executions: Sequence[Execution], since: datetime) -> bool:
    """True when the page holds a run created before `since`: older pages cannot hold the window's."""
    return any(execution.created is not None and execution.created < since for execution in executions)


class Pager:
    """Pages of one listing read against a budget of requests; it remembers every total the service said,
    so that a run leaving the listing while it is paged (pages shifting up past a run) is noticed."""

    def __init__(
        self,
        list_page: ListPage,
        limit: int,
        budget: int,
        splits: Mapping[str, str] | None,
        known: Mapping[str, Execution] | None = None,
    ) -> None:
        self.list_page = list_page
        self.splits = splits
        self.known = known  # runs read before: not parsed again
        self.limit = limit
        self.budget = budget
        self.requests = 0
        self.size = limit
        self.totals: list[int] = []
        self.shifted = False  # page 0 read again showed a run gone from above the pages read

    def first(self) -> _Listing:
        self.requests += 1
        listing = _first(self.list_page(0, self.limit), self.limit, self.splits, self.known)
        self.size = listing.size
        self._said(listing)
        return listing

    def read(self, page: int) -> _Listing | None:
        """The page, or None when the budget is spent."""
        if self.requests >= self.budget:
            return None
        self.requests += 1
        listing = _page(self.list_page(page, self.limit), self.size, splits=self.splits, known=self.known)
        self._said(listing)
        return listing

    def _said(self, listing: _Listing) -> None:
        if listing.total is not None:
            self.totals.append(listing.total)

    @property
    def shrank(self) -> bool:
        """Some run left the listing between two of its pages: a later page may have shifted past one."""
        return self.shifted or any(later < earlier for earlier, later in pairwise(self.totals))

    def spent(self) -> str:
        return f"{self.requests} pages of {self.size} executions do not cover the window"


class _Seen:
    """Runs read so far, each once: a create between two requests pushes runs onto the next page again."""

    def __init__(self) -> None:
        self.executions: list[Execution] = []
        self.pages: list[list[Execution]] = []
        self.ids: set[str | None] = set()

    def add(self, page: Sequence[Execution]) -> None:
        self.pages.append(list(page))
        for execution in page:
            if execution.execution_id is None or execution.execution_id not in self.ids:
                if execution.execution_id is not None:
                    self.ids.add(execution.execution_id)
                self.executions.append(execution)


def read_window(
    list_page: ListPage, since: datetime, *, limit: int, budget: int, splits: Mapping[str, str] | None = None
) -> Read:
    """Every run that may be newer than `since`, whichever order and paging the service uses.

    Where the window cannot be proven read within `budget` requests (an answer without a list, an
    empty page before the window was reached, runs pruned or gone while paging, too many pages), the
    reason says why, beside what was read. A read whose pages shifted under it is read once again.
    """
    pager = Pager(list_page, limit, budget, splits)
    read = _window(pager, since)
    if pager.shrank and pager.requests < budget:
        again = Pager(list_page, limit, budget - pager.requests, splits)
        read = _window(again, since)
        if again.shrank and read.reason is None:
            read = _with(read, "runs left the listing while it was paged, twice", pager.requests + again.requests)
        else:
            read = _with(read, read.reason, pager.requests + again.requests)
    elif pager.shrank and read.reason is None:
        read = _with(read, "runs left the listing while it was paged", pager.requests)
    return read


def _with(read: Read, reason: str | None, requests: int) -> Read:
    return Read(
        read.executions,
        reason,
        newest_first=read.newest_first,
        total=read.total,
        requests=requests,
        contiguous=read.contiguous and reason == read.reason,
    )


def _window(pager: Pager, since: datetime) -> Read:
    first = pager.first()
    if first.executions is None:
        return Read([], "the list of executions came without a list", requests=pager.requests)
    seen = _Seen()
    seen.add(first.executions)
    if first.short:
        return Read(seen.executions, newest_first=order_of(seen.pages), total=first.total, requests=pager.requests)
    order = order_of(seen.pages)
    if order is None:
        second = pager.read(1)
        if second is None or second.executions is None:
            reason = pager.spent() if second is None else "the list of executions came without a list"
            return Read(seen.executions, reason, requests=pager.requests)
        seen.add(second.executions)
        order = order_of(seen.pages)
        if order is None or second.short:
            return _forwards(pager, seen, first, second, since, order)
    if order is False:
        return _oldest_first(pager, first, since)
    return _forwards(pager, seen, first, None, since, order)


def _oldest_first(pager: Pager, first: _Listing, since: datetime) -> Read:
    found = _last_page(pager, first)
    if isinstance(found, str):
        return Read(first.executions or [], found, newest_first=False, requests=pager.requests)
    return _backwards(pager, *found, since)


def _last_page(pager: Pager, first: _Listing) -> tuple[int, _Listing] | str:
    """Oldest first, the newest runs are on the last page: from the total, or found by doubling and
    halving (a page past the end is empty) in a few requests, whatever the job's history."""
    if first.total is not None:
        last = -(-first.total // first.size) - 1
        listing = pager.read(last) if last else first
        return pager.spent() if listing is None else (last, listing)
    low, high, known = 0, 1, first  # page `low` is full; `high` is to be read
    while True:
        listing = pager.read(high)
        if listing is None or listing.executions is None:
            return pager.spent() if listing is None else "the list of executions came without a list"
        if listing.executions and listing.short:
            return high, listing
        if not listing.executions:
            break
        low, high, known = high, high * 2, listing
    while high - low > 1:
        middle = (low + high) // 2
        listing = pager.read(middle)
        if listing is None or listing.executions is None:
            return pager.spent() if listing is None else "the list of executions came without a list"
        if listing.executions and listing.short:
            return middle, listing
        low, high, known = (middle, high, listing) if listing.executions else (low, middle, known)
    return low, known


def _backwards(pager: Pager, last: int, listing: _Listing, since: datetime) -> Read:
    """Oldest first: from the last page back until a page reaches before `since` (a prune shifts pages,
    and pages read backwards then overlap rather than skip)."""
    seen = _Seen()
    seen.add(listing.executions or ())
    page = last
    while page > 0 and not reaches(listing.executions or (), since):
        page -= 1
        read = pager.read(page)  # page 0 again too: what a prune shifted onto it since is read
        if read is None:
            held = not pager.shrank  # backwards from the newest page: every run back to the oldest read
            return Read(seen.executions, pager.spent(), newest_first=False, requests=pager.requests, contiguous=held)
        if not read.executions:
            reason = f"page {page} of the executions was empty before the window was reached"
            return Read(seen.executions, reason, newest_first=False, requests=pager.requests)
        listing = read
        seen.add(read.executions)
    return Read(seen.executions, newest_first=False, total=first_total(pager), requests=pager.requests)


def first_total(pager: Pager) -> int | None:
    return pager.totals[-1] if pager.totals else None


def _forwards(
    pager: Pager, seen: _Seen, first: _Listing, second: _Listing | None, since: datetime, order: bool | None
) -> Read:
    """Page on until a short page, a total reached, or (newest first) a page older than `since`; each
    page's middle date re-checks the order the first pages showed, or decides it where they could not
    (a burst's pages may all hold one second)."""
    last, page = (second, 1) if second is not None else (first, 0)
    while not last.short and not (first.total is not None and len(seen.executions) >= first.total):
        if order and reaches(last.executions or (), since):
            break
        page += 1
        read = pager.read(page)
        if read is None or read.executions is None:
            reason = pager.spent() if read is None else "the list of executions came without a list"
            held = read is None and order is True and not pager.shrank
            return Read(seen.executions, reason, newest_first=order, requests=pager.requests, contiguous=held)
        if not read.executions:
            if first.total is not None and len(seen.executions) >= first.total:
                break
            reason = f"page {page} of the executions was empty before the window was reached"
            return Read(seen.executions, reason, newest_first=order, requests=pager.requests)
        seen.add(read.executions)
        if order is None:
            order = order_of(seen.pages)
        elif order_of(seen.pages[-2:]) is (not order):
            reason = "the listing's order changed while it was read"
            return Read(seen.executions, reason, newest_first=order, requests=pager.requests)
        last = read
    if order is not True and page > 0:
        return _unchanged_start(pager, seen, order)
    if page > 0 and not pager.totals and not _top_held(pager, seen):
        reason = "runs left the top of the listing while it was paged"
        return Read(seen.executions, reason, newest_first=order, requests=pager.requests)
    return Read(seen.executions, newest_first=order, total=first_total(pager), requests=pager.requests)


def _top_held(pager: Pager, seen: _Seen) -> bool:
    """Newest first without a total to tell: page 0 read again shows whether a run above the pages left
    (every later page then moved up past one). Its runs read before must all be there, below those new
    on top (creates push runs down, never up)."""
    pager.requests += 1
    again = _items(pager.list_page(0, pager.limit), pager.splits, pager.known) or []
    now = {run.execution_id for run in again}
    new_on_top = sum(1 for run in again if run.execution_id not in seen.ids)
    before = [run.execution_id for run in seen.pages[0]][: max(len(again) - new_on_top, 0)]
    pager.shifted = any(execution_id not in now for execution_id in before)
    return not pager.shifted


def _unchanged_start(pager: Pager, seen: _Seen, order: bool | None) -> Read:
    """No order to tell, read forwards: a prune while paging shifts runs past us unseen. The first run
    read being still on page 0 after the walk (new runs may have pushed it down, never up) proves that
    none before it was pruned (one request more at most)."""
    pager.requests += 1
    again = _items(pager.list_page(0, pager.limit), pager.splits) or []
    if seen.executions[0].execution_id not in {execution.execution_id for execution in again}:
        reason = "runs were pruned while the executions were paged through"
        return Read(seen.executions, reason, newest_first=order, requests=pager.requests)
    return Read(seen.executions, newest_first=order, total=first_total(pager), requests=pager.requests)


def _below(
    page: Sequence[Execution], kept: Mapping[str, Execution], newest: datetime, unlisted: Container[str]
) -> bool:
    """The page ends in an older second than the newest run read before, and shows a run read before: what
    is new lies above (a run flipped to the page's top, or one this container started, proves nothing)."""
    last = page[-1].created if page else None
    return (
        last is not None
        and last < newest
        and any(run.execution_id in kept and run.execution_id not in unlisted for run in page)
    )


def read_top(
    list_page: ListPage,
    kept: Mapping[str, Execution],
    newest: datetime,
    *,
    unlisted: Container[str] = frozenset(),
    limit: int,
    budget: int,
    splits: Mapping[str, str] | None = None,
) -> Read | None:
    """The runs on top of a kept newest-first listing whose newest run was created at `newest`: pages are
    read until one holds a kept run of an older second (runs of one second may sort either way), so
    everything new was on the pages read. None where that cannot be shown within `budget` (read the
    window whole): no list, too many new runs, new runs out of order, pages shifting up."""
    pager = Pager(list_page, limit, budget, splits, kept)
    seen = _Seen()
    listing: _Listing | None = pager.first()
    page = 0
    while listing is not None and listing.executions is not None:
        seen.add(listing.executions)
        if listing.short or _below(listing.executions, kept, newest, unlisted):
            break
        page += 1
        listing = pager.read(page)
    else:
        return None
    while not pager.totals and not listing.short and not _reaches_back(listing.executions or (), newest - LATE):
        # No total to tell a late run by: the pages are read on past the kept top by LATE, where a run
        # listed late would stand (one never kept there sends the refresh to a whole read).
        page += 1
        listing = pager.read(page)
        if listing is None or listing.executions is None:
            return None
        seen.add(listing.executions)
    if pager.shrank or order_of(seen.pages) is False or _late_below(seen.executions, kept, newest):
        return None
    new = [execution for execution in seen.executions if execution.execution_id not in kept]
    if order_of([new]) is False:
        return None  # the new runs are not newest first: read the window whole
    return Read(seen.executions, newest_first=True, total=first_total(pager), requests=pager.requests)


def _reaches_back(page: Sequence[Execution], when: datetime) -> bool:
    return bool(page) and page[-1].created is not None and page[-1].created < when


def _late_below(executions: Sequence[Execution], kept: Mapping[str, Execution], newest: datetime) -> bool:
    """A run read below the kept top that was never kept: it came late (or was missed), read it all again."""
    return any(run.created is not None and run.created < newest and run.execution_id not in kept for run in executions)
