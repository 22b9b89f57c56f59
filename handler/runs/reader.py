"""Runs: the one object per container that reads a job's runs and answers every question asked of them."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from handler.errors import RequestError
from handler.records import Record
from handler.runs.execution import Execution, comparable, parse
from handler.runs.listing import read_top, read_window
from handler.runs.view import Coverage, Covering, Identity, JobView, Lookup, Member, Unknown

if TYPE_CHECKING:
    from handler.runs.listing import ListPage, Read
    from handler.wiring import Submitter

log = logging.getLogger(__name__)

PAGE_SIZE = 100
# A read that ended this recently serves a question asked after it began (a burst's lookups share reads):
# what another container started in that second can be missed, as it could between a read and a create.
# Past half of it, a question's thread refreshes the kept runs ahead, while the others go on.
REUSE_S = 1.0
# A read of a window may take this many pages: 10,000 runs, what a maxRunning count must finish.
WINDOW_MOST_RUNS = 10_000
WINDOW_PAGES = WINDOW_MOST_RUNS // PAGE_SIZE + 2
# A refresh of a kept listing reads its new runs in at most as many pages as a whole read would take.
REFRESH_PAGES = WINDOW_PAGES
# Runs whose own page a lookup may read when the list echoes too little (each run once per container).
OWN_PAGES_MOST = 20
# Runs whose status a count may read afresh from their own page rather than read the window again.
STALE_MOST = 50
# Runs whose own page this container remembers having read (each is read once).
ASKED_MOST = 10_000
# Runs whose parameters this container remembers, to learn how the list echoes them.
READING_SAMPLES = 64


class Source(Record):
    """Where a question's reads go: the list and get calls of one job, with their deadline."""

    __slots__ = ("job_id", "list_page", "get_one", "splits", "get_job")

    def __init__(
        self,
        job_id: str,
        list_page: ListPage,
        get_one: Callable[[str], Mapping[str, Any]],
        *,
        splits: Mapping[str, str],
        get_job: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.job_id: Final = job_id
        self.list_page: Final = list_page
        self.get_one: Final = get_one
        # The coalesce parameters of the job's routes (name -> separator): their file lists are indexed.
        self.splits: Final = splits
        self.get_job: Final = get_job  # the job itself (its maxConcurrentRuns), where the source can read it


def source(
    submitter: Submitter,
    job_id: str,
    *,
    deadline: float | None = None,
    headers: Mapping[str, str] | None = None,
    splits: Mapping[str, str] | None = None,
) -> Source:
    """The reads of one job through `submitter` (list and get), within `deadline`."""

    def list_page(page: int, limit: int) -> dict[str, Any]:
        return submitter.list_executions(job_id, page=page, limit=limit, deadline=deadline, headers=headers)

    def get_one(execution_id: str) -> dict[str, Any]:
        return submitter.get_execution(job_id, execution_id, deadline=deadline, headers=headers)

    def get_job() -> dict[str, Any]:
        return submitter.get_job(job_id, deadline=deadline)

    return Source(job_id, list_page, get_one, splits=splits or {}, get_job=get_job)


class Asked(Record):
    """When a question was asked (how many reads of its job had started) and by whom (an invocation):
    reads started after it serve it, and so does a read its asker made a moment ago (REUSE_S)."""

    __slots__ = ("number", "caller")

    def __init__(self, number: int, caller: object) -> None:
        self.number: Final = number
        self.caller: Final = caller


class Seen(Record):
    """A view of the job's runs for one question, and why its window may be incomplete (None: it is not)."""

    __slots__ = ("view", "reason", "complete_back")

    def __init__(self, view: JobView, reason: str | None, complete_back: datetime | None) -> None:
        self.view: Final = view
        self.reason: Final = reason
        # Every run created since this was read (None: no span was proven): a question about a later
        # span is answered whole even where the read fell short of the window asked for.
        self.complete_back: Final = complete_back

    def short_of(self, since: datetime) -> str | None:
        """Why the runs since `since` may not all be here (None: they are)."""
        if self.complete_back is not None and since >= self.complete_back:
            return None
        return self.reason or f"runs before {self.view.reached.isoformat()} were not read"


class Runs:
    """Every read of a job's runs in this container: each job's kept view, refreshed once per question
    that needs something newer (a burst's lookups share one listing), and extended back only when a
    question reaches further. Questions run one at a time per job; reads and creates never wait for each other."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.monotonic = monotonic
        self.readings = Readings()
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._views: dict[str, JobView] = {}
        self._splits: dict[str, Mapping[str, str]] = {}
        # Runs whose own page was read, newest last, with what it told where it echoed parameters: a view
        # read anew takes the answers in again instead of asking twice.
        self._asked: OrderedDict[str, Execution | None] = OrderedDict()
        self._started: dict[str, int] = {}  # job -> how many reads of it this container started
        self._created: dict[str, list[dict[str, Any] | None]] = {}  # job -> runs started since its last question
        self._refreshing: set[str] = set()  # jobs whose kept runs a thread is refreshing ahead

    @contextmanager
    def _job(self, job_id: str) -> Iterator[None]:
        with self._lock:
            lock = self._locks.setdefault(job_id, threading.Lock())
        with lock:
            yield

    def find(self, source: Source, identity: Identity, asked: Asked | None, reach: datetime) -> Lookup:
        """This event's run among the job's runs since `identity.since`; runs that echo nothing have their
        own page read (once each) before the answer is "cannot tell". `asked` is `asked(job)` when the
        question was asked: a read that started after it serves it (questions asked meanwhile share one
        read); None reads afresh."""
        with self._job(source.job_id):
            seen = self._seen(source, min(reach, identity.since), asked)
            lookup = seen.view.find(identity, seen.short_of(identity.since))
            unsure = isinstance(lookup, Unknown) and lookup.unidentified > 0
            if unsure and self._own_pages(source, seen, identity.since, identity.job_condition):
                lookup = seen.view.find(identity, seen.short_of(identity.since))
        return lookup

    def cover(
        self, source: Source, covering: Covering, members: Sequence[Member], asked: Asked | None, reach: datetime
    ) -> Coverage:
        """Which members a run covers, each judged over its own window: one that cannot be read is unknown alone."""
        with self._job(source.job_id):
            oldest = min(member.since for member in members)
            seen = self._seen(source, min(reach, oldest), asked)
            short = {m.file_key: why for m in members if (why := seen.short_of(m.since)) is not None}
            cover = seen.view.cover(covering, members, short)
            if cover.unknown - short.keys() and self._own_pages(source, seen, oldest, covering.condition):
                cover = seen.view.cover(covering, members, short)
            return cover

    def going(self, source: Source, since: datetime, asked: Asked | None) -> tuple[int, str | None]:
        """How many runs created since `since` are READY or RUNNING, and the rule followed where not all
        could be read: runs seen finished stay finished, runs seen going and not re-read have their own
        page read; past WINDOW_MOST_RUNS the newest are counted and the older taken as finished."""
        with self._job(source.job_id):
            seen = self._seen(source, since, asked)
            stale = [run for run in seen.view.going(since) if (run.execution_id or "") not in seen.view.fresh]
            for run in stale[:STALE_MOST]:
                self._read_own(source, seen.view, run)
            going = len(seen.view.going(since))
            short = seen.short_of(since)
        if short is None and len(stale) <= STALE_MOST:
            return going, None
        return going, f"counted the runs that could be read ({short or f'{len(stale)} statuses not re-read'})"

    def concurrency_limit(self, source: Source) -> int | None:
        """The job's own maxConcurrentRuns (None: no limit, or a service that does not say one)."""
        if source.get_job is None:
            return None
        try:
            job = source.get_job()
        except RequestError as exc:
            if exc.status == 404:
                return None  # a service before the job's own page: no limit to tell
            raise
        limit = job.get("maxConcurrentRuns")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None

    def between(self, source: Source, since: datetime) -> tuple[list[Execution], str | None]:
        """Every run created since `since`, newest first, and why some may be missing (None: none is)."""
        with self._job(source.job_id):
            seen = self._seen(source, since, None)
            return seen.view.between(since), seen.short_of(since)

    def created(self, job_id: str, answer: Mapping[str, Any], body_lost: bool, sent: Mapping[str, str]) -> None:
        """A run this container just started: it joins the job's view before the next question (a create
        never waits for a read to end), so that a listing read before it still counts it; where its answer
        was lost, the view is read afresh next time. What was sent is kept, not what the answer echoes
        (the create may echo nothing: see Readings)."""
        known = isinstance(answer.get("jobExecutionId"), str) and not body_lost
        with self._lock:
            if job_id not in self._views:
                return  # nothing kept of the job (its check is off, or not read yet): nothing to join
            self._created.setdefault(job_id, []).append({**answer, "parsedParameters": dict(sent)} if known else None)

    def _join_created(self, job_id: str) -> None:
        """Inside the job's lock: the runs this container started since the last question."""
        with self._lock:
            started = self._created.pop(job_id, [])
        view = self._views.get(job_id)
        if view is None:
            return
        for answer in started:
            if answer is None:
                view.read_no, view.read_at = 0, float("-inf")  # an answer was lost: read afresh
                continue
            if view.add([parse(answer, self._splits.get(job_id))], listed=False) and view.total is not None:
                view.total += 1  # it joined the listing's total too: no late run to suspect
            view.fresh.add(answer["jobExecutionId"])

    def one(self, source: Source, execution_id: str, *, kept: bool = False) -> Execution | None:
        """One run of the job from its own page (None: the job has no such run); `kept`: as this container
        keeps it where it does, for what never changes (its creation time), not its status."""
        if kept:
            with self._job(source.job_id):
                self._join_created(source.job_id)
                view = self._views.get(source.job_id)
                run = None if view is None else view.runs.get(execution_id)
            if run is not None and run.created is not None:
                return run
        try:
            run = parse(source.get_one(execution_id), source.splits)
        except RequestError as exc:
            if exc.status == 404:
                return None
            raise
        return run if run.execution_id in (None, execution_id) else None

    def asked(self, job_id: str, caller: object = None) -> Asked:
        """A question's moment: how many reads of the job this container had started when it was asked."""
        with self._lock:
            return Asked(self._started.get(job_id, 0), caller)

    def _seen(self, source: Source, since: datetime, asked: Asked | None) -> Seen:
        self._join_created(source.job_id)
        view = self._views.get(source.job_id)
        if view is not None and self._splits.get(source.job_id) != source.splits:
            view = None  # read for other coalescing routes: their file lists were not indexed
        # A read that started after the question was asked saw every run created before it was asked; one
        # that ended a moment ago (REUSE_S) misses at most what another container started in that moment.
        if view is not None and asked is not None and view.reached <= since and self._serves(view, asked):
            return Seen(view, None, view.reached)
        with self._lock:
            self._started[source.job_id] = read_no = self._started.get(source.job_id, 0) + 1
        seen = self._read(source, view, since, read_no)
        seen.view.read_for = None if asked is None else asked.caller
        return seen

    def _serves(self, view: JobView, asked: Asked) -> bool:
        """A read started after the question was asked saw every run created before it; one its asker made a
        moment ago misses at most what another container started in that moment."""
        if view.read_no > asked.number:
            return True
        recent = self.monotonic() - view.read_at <= REUSE_S
        return recent and asked.caller is not None and view.read_for is asked.caller

    def _read(self, source: Source, view: JobView | None, since: datetime, read_no: int) -> Seen:
        newest = view.listed_newest if view is not None else None
        if view is not None and view.newest_first and view.reached <= since and newest is not None:
            top = read_top(
                source.list_page,
                view.runs,
                newest,
                unlisted=view.unlisted,
                limit=PAGE_SIZE,
                budget=REFRESH_PAGES,
                splits=source.splits,
            )
            if top is not None and view.read_no > read_no:
                return Seen(view, None, view.reached)  # a later read ended first: it knows more
            if top is not None and not _late(view, top):
                self._refreshed(source.job_id, view, top, read_no)
                return Seen(view, None, view.reached)
        read = read_window(source.list_page, since, limit=PAGE_SIZE, budget=WINDOW_PAGES, splits=source.splits)
        fresh = JobView(since, read.newest_first, read.total, read_no)
        fresh.read_at = self.monotonic()
        fresh.add(read.executions)
        with self._lock:
            told = [page for key in fresh.opaque_since(since, None) if (page := self._asked.get(key)) is not None]
        fresh.add(told)
        fresh.fresh = _ids(read.executions)
        self.readings.listed(source.job_id, read.executions)
        if read.reason is None and not fresh.oversized:
            self._views[source.job_id], self._splits[source.job_id] = fresh, source.splits
        return Seen(fresh, read.reason, _complete_back(read, since))

    def _refreshed(self, job_id: str, view: JobView, top: Read, read_no: int) -> None:
        view.add(top.executions)
        view.total, view.read_no, view.fresh = top.total, read_no, _ids(top.executions)
        view.read_at = self.monotonic()
        self.readings.listed(job_id, top.executions)
        if view.oversized:  # grown past its bound: the next question reads its window anew, and keeps that
            self._views.pop(job_id, None)

    def ahead(self, source: Source, caller: object) -> None:
        """Refreshes the job's kept runs before they grow too old to serve (REUSE_S), outside the job's lock:
        questions asked meanwhile are answered from what is kept. One refresh at a time per job; one that
        cannot settle leaves the next question to read the window whole."""
        job_id = source.job_id
        with self._lock:
            view, newest = self._views.get(job_id), None
            if view is not None and view.newest_first and self._splits.get(job_id) == source.splits:
                newest = view.listed_newest if self.monotonic() - view.read_at >= REUSE_S / 2 else None
            if view is None or newest is None or job_id in self._refreshing:
                return
            self._refreshing.add(job_id)
            self._started[job_id] = read_no = self._started.get(job_id, 0) + 1
        try:
            with self._job(job_id):
                self._join_created(job_id)  # this container's runs are kept, not taken for late ones
                unlisted = set(view.unlisted)  # its runs may change while the pages are read; not this
            top = read_top(
                source.list_page,
                view.runs,
                newest,
                unlisted=unlisted,
                limit=PAGE_SIZE,
                budget=REFRESH_PAGES,
                splits=source.splits,
            )
            with self._job(job_id):
                # A read that started later and ended first already knows more: this one says nothing new.
                current = self._views.get(job_id) is view and view.read_no < read_no
                if current and (top is None or _late(view, top)):
                    view.read_at = float("-inf")  # the next question reads the window whole
                elif current and top is not None:
                    self._refreshed(job_id, view, top, read_no)
                    view.read_for = caller
        except RequestError:
            pass  # the next question that needs a read meets it
        finally:
            with self._lock:
                self._refreshing.discard(job_id)

    def _own_pages(self, source: Source, seen: Seen, since: datetime, condition: Mapping[str, Any] | None) -> bool:
        """Reads the own page of each run since `since` that echoes nothing (at most OWN_PAGES_MOST, each
        once per container): the reference documents parameters there. True when one told more."""
        opaque = seen.view.opaque_since(since, condition)
        with self._lock:
            unasked = [key for key in opaque if key not in self._asked]
        if not unasked or len(unasked) > OWN_PAGES_MOST:
            return False
        told = False
        for key in unasked:
            told = self._read_own(source, seen.view, seen.view.runs[key]) or told
        return told

    def _read_own(self, source: Source, view: JobView, run: Execution) -> bool:
        """A run's own page into the view: its status, and its parameters where the list echoed none."""
        if run.execution_id is None:
            return False
        self._remember_asked(run.execution_id, None)
        try:
            item = source.get_one(run.execution_id)
        except RequestError as exc:
            if exc.status != 404:
                raise
            item = {"jobExecutionId": run.execution_id, "status": "DELETED"}  # gone: not going, nothing told
        page = parse(item, source.splits)
        view.add([page])
        view.fresh.add(run.execution_id)
        self._remember_asked(run.execution_id, page if page.parameters is not None else None)
        return run.parameters is None and page.parameters is not None

    def _remember_asked(self, execution_id: str, told: Execution | None) -> None:
        """Questions of other jobs run beside this one: the runs asked about are shared, under the lock."""
        with self._lock:
            self._asked[execution_id] = told
            while len(self._asked) > ASKED_MOST:
                self._asked.popitem(last=False)


def _late(view: JobView, top: Read) -> bool:
    """More runs joined the listing than came on top: one appeared below the kept top (a late run)."""
    if top.total is None or view.total is None:
        return False
    new = sum(1 for run in top.executions if (run.execution_id or "") not in view.runs)
    return top.total > view.total + new


def _complete_back(read: Read, since: datetime) -> datetime | None:
    """Back to when a read proved every run: its window, or where a read of the newest pages ran out of
    pages (its pages held together); nothing where pages shifted, the order changed or a list was missing."""
    if read.reason is None:
        return since
    dates = [run.created for run in read.executions if run.created is not None]
    if not read.contiguous or not dates:
        return None
    return min(dates) + timedelta(seconds=1)


def _ids(executions: Sequence[Execution]) -> set[str]:
    return {run.execution_id for run in executions if run.execution_id is not None}


class Readings:
    """What this container learned of how the service echoes each job's parameters; logged when it changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: dict[tuple[str, str], str] = {}  # (job, "create" or "list") -> reading
        self._sent: OrderedDict[str, tuple[str, Mapping[str, str]]] = OrderedDict()  # run -> (job, parameters)
        self._warned: set[str] = set()

    def started(
        self, job_id: str, execution_id: str | None, sent: Mapping[str, str], answer: Mapping[str, Any]
    ) -> None:
        """A run this container started: the create answer's echo, and what later listings must show.

        Each is learned once per job; a warm call whose job's readings are known does nothing here.
        """
        if not sent:
            return  # nothing sent, nothing to compare
        if execution_id and (job_id, "list") not in self._learned:
            with self._lock:
                self._sent[execution_id] = (job_id, sent)
                while len(self._sent) > READING_SAMPLES:
                    self._sent.popitem(last=False)
        if (job_id, "create") not in self._learned:
            self._learn(job_id, "create", reading_of(sent, parse(answer)))

    def listed(self, job_id: str, executions: Sequence[Execution]) -> None:
        """Learns the list's reading from a run this container started and can compare."""
        if (job_id, "list") in self._learned or not self._sent:
            return
        for execution in executions:
            with self._lock:
                known = self._sent.get(execution.execution_id or "")
            if known is not None and known[0] == job_id:
                self._learn(job_id, "list", reading_of(known[1], execution))
                return

    def echoes_all(self, job_id: str) -> bool:
        with self._lock:
            return self._learned.get((job_id, "list")) in ("object", "items")

    def of(self, job_id: str) -> str | None:
        """How the list echoes this job's runs, as learned (None: not yet)."""
        with self._lock:
            return self._learned.get((job_id, "list"))

    def first_unverifiable(self, job_id: str) -> bool:
        """True once per job and container: the first time a check could not identify runs."""
        with self._lock:
            if job_id in self._warned:
                return False
            self._warned.add(job_id)
            return True

    def _learn(self, job_id: str, answer: str, reading: str) -> None:
        with self._lock:
            changed = self._learned.get((job_id, answer)) != reading
            self._learned[(job_id, answer)] = reading
        if changed:
            log.info("service reading", extra={"jobId": job_id, "answer": answer, "echo": reading})


def reading_of(sent: Mapping[str, str], execution: Execution) -> str:
    """How an answer echoes what was sent: in full (object, items), only some of it, or nothing."""
    echoed = execution.parameters
    if not echoed:
        return "none"
    if not all(echoed.get(name) == comparable(value) for name, value in sent.items()):
        return "partial"
    return execution.shape
