"""A job's runs as one container keeps them, indexed by what identifies them, and the questions they answer."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from handler.records import Record
from handler.runs.execution import Execution, comparable, file_hash, lists, same_condition

# What one job's kept runs may hold: past either bound the view answers once and is not kept.
KEPT_MOST_RUNS = 12_000
KEPT_MOST_FILES = 12_000_000  # file names of coalesced runs: 8 bytes each (96 MB at most)


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
        *,
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


class Coverage(Record):
    """Which objects existing runs already cover (file key -> run id), which the answers cannot tell, and why."""

    __slots__ = ("covered", "unknown", "reason")

    def __init__(self, covered: Mapping[str, str | None], unknown: frozenset[str], reason: str = "") -> None:
        self.covered: Final = covered
        self.unknown: Final = unknown
        self.reason: Final = reason


class Covering(Record):
    """What a coalescing route's run looks like: its file-list parameter, the parameters every group of
    this bucket renders alike, every name the route sends, and its job condition."""

    __slots__ = ("parameter", "fixed", "names", "condition")

    def __init__(
        self, parameter: str, fixed: Mapping[str, str], names: frozenset[str], condition: Mapping[str, Any] | None
    ) -> None:
        self.parameter: Final = parameter
        self.fixed: Final = fixed
        self.names: Final = names
        self.condition: Final = condition


class Member(Record):
    """An object a coalesced run may cover: its file key (identity), its key, the oldest time a run may have."""

    __slots__ = ("file_key", "key", "since")

    def __init__(self, file_key: str, key: str, since: datetime) -> None:
        self.file_key: Final = file_key
        self.key: Final = key
        self.since: Final = since


class JobView:
    """A job's runs this container read, complete back to `reached`, each indexed by what identifies it:
    every echoed (name, value), its echoed names and values together, the files it covers. A lookup
    costs the runs that could be its own, not the job's history."""

    def __init__(self, reached: datetime, newest_first: bool | None, total: int | None, read_no: int) -> None:
        self.reached = reached
        self.newest_first = newest_first
        self.total = total
        # Which of the container's reads of the job this is: questions asked before it started may use it.
        self.read_no = read_no
        self.read_at = float("-inf")  # monotonic: when the read ended
        self.read_for: object = None  # who asked for it (an invocation): it may reuse it for a moment
        self.fresh: set[str] = set()  # runs whose status the last read (or this container) showed
        # The newest run a read showed, and the runs this container started that no read showed yet: a
        # refresh reads down to the first, never stops at the second (runs of others may sort between).
        self.listed_newest: datetime | None = None
        self.unlisted: set[str] = set()
        self.runs: dict[str, Execution] = {}
        self.files = 0
        self._dates: list[float] = []  # creation times, sorted: how many runs a window holds
        self._undated = 0
        self._pairs: dict[tuple[str, str], list[str]] = {}
        self._names: dict[frozenset[str], dict[frozenset[tuple[str, str]], list[str]]] = {}
        self._opaque: set[str] = set()  # runs that echo no parameters
        self._going: set[str] = set()
        self._lists: dict[str, list[str]] = {}  # coalesce parameter -> the runs that echo a file list in it
        self._anonymous = 0

    def add(self, executions: Iterable[Execution], *, listed: bool = True) -> list[Execution]:
        """Takes what a read saw (`listed`), or a run this container started: new runs indexed, known ones'
        statuses (and a filled echo) updated; the new."""
        new = []
        for execution in executions:
            key = execution.execution_id or f"#{self._anonymous}"
            self._anonymous += execution.execution_id is None
            before = self.runs.get(key)
            self._listed(key, execution, listed, before is None)
            self.runs[key] = (
                execution if before is None or execution.parameters is not None else _status(before, execution)
            )
            (self._going.add if execution.going else self._going.discard)(key)
            if before is None:
                new.append(execution)
                self._date(execution)
            if before is None or (before.parameters is None and execution.parameters is not None):
                self._index(key, execution)
        return new

    def _listed(self, key: str, execution: Execution, listed: bool, new: bool) -> None:
        """Where the listing stood when last read: its newest run, and the runs it has not shown yet."""
        if not listed:
            if new:
                self.unlisted.add(key)
            return
        self.unlisted.discard(key)
        if execution.created is not None and (self.listed_newest is None or execution.created > self.listed_newest):
            self.listed_newest = execution.created

    def _date(self, execution: Execution) -> None:
        if execution.created is None:
            self._undated += 1
        else:
            insort(self._dates, execution.created.timestamp())

    def _index(self, key: str, execution: Execution) -> None:
        if execution.parameters is None:
            self._opaque.add(key)
            return
        self._opaque.discard(key)
        for pair in execution.parameters.items():
            self._pairs.setdefault(pair, []).append(key)
        names = frozenset(execution.parameters)
        self._names.setdefault(names, {}).setdefault(frozenset(execution.parameters.items()), []).append(key)
        for parameter, hashes in (execution.files or {}).items():
            self.files += len(hashes)
            self._lists.setdefault(parameter, []).append(key)

    @property
    def oversized(self) -> bool:
        return len(self.runs) > KEPT_MOST_RUNS or self.files > KEPT_MOST_FILES

    def in_window(self, since: datetime) -> int:
        return len(self._dates) - bisect_left(self._dates, since.timestamp()) + self._undated

    def opaque_since(self, since: datetime, condition: Mapping[str, Any] | None) -> list[str]:
        """Runs of the window that echo nothing (for their own pages to be read)."""
        return [key for key in self._opaque if _fits(self.runs[key], since, condition)]

    def going(self, since: datetime) -> list[Execution]:
        """Runs READY or RUNNING as last read, created since `since`."""
        return [run for key in self._going if _after(run := self.runs[key], since)]

    def between(self, since: datetime, until: datetime | None = None) -> list[Execution]:
        """Every kept run created in the span (undated ones too), newest first."""
        chosen = [run for run in self.runs.values() if _after(run, since) and (until is None or _before(run, until))]
        return sorted(chosen, key=_newest_first_key)

    def find(self, identity: Identity, reason: str | None) -> Lookup:
        """Ours among the kept runs of the identity's window; "absent" only where `reason` is None (the
        window was read whole). A run of ours is found even where the rest could not be read."""
        ours: list[Execution] = []
        unidentified = 0
        for execution, mine in self._candidates(identity):
            if mine:
                ours.append(execution)
            else:
                unidentified += 1
        if ours:
            # Newest first; within one second (createdDate's grain) a run still going comes first: it may
            # be the newer, and no step is run again while one of its runs may still be going.
            ours.sort(key=lambda run: (_newest_first_key(run), not run.going))
            return Found(tuple((run.execution_id, run.status) for run in ours), unidentified)
        if reason is not None:
            return Unknown(reason, unidentified)
        if unidentified:
            return Unknown(
                f"{unidentified} execution(s) since {identity.since.isoformat()} cannot be told apart "
                "(the service echoes too little of their parameters to identify them)",
                unidentified,
            )
        return Absent(self.in_window(identity.since))

    def _candidates(self, identity: Identity) -> Iterator[tuple[Execution, bool]]:
        """Each run of the window that may be ours: (run, True) where it surely is, False where it cannot be told."""
        sent, dedup = identity.parameters, identity.dedup_parameter
        if dedup is not None and dedup in sent:
            # The run's own identity: no difference elsewhere in how the service stores things outweighs it.
            for key in self._pairs.get((dedup, comparable(sent[dedup])), ()):
                yield from self._ours(key, identity, True, condition=False)
        names = frozenset(sent)
        for echoed, signatures in self._names.items():
            if (dedup is not None and dedup in echoed) or not echoed <= names:
                continue  # decided by the dedup key above, or a run with parameters this one never sends
            projected = frozenset((name, comparable(sent[name])) for name in echoed)
            mine = dedup is None and echoed == names
            for key in signatures.get(projected, ()):
                yield from self._ours(key, identity, mine)
        empty_is_ours = identity.echo_known and dedup is None and not names
        for key in self._opaque:
            yield from self._ours(key, identity, empty_is_ours)

    def _ours(
        self, key: str, identity: Identity, mine: bool, *, condition: bool = True
    ) -> Iterator[tuple[Execution, bool]]:
        run = self.runs[key]
        if not _after(run, identity.since) or (run.execution_id is not None and run.execution_id in identity.others):
            return
        if condition and not same_condition(identity.job_condition, run.condition):
            return
        yield run, mine

    def cover(self, covering: Covering, members: Sequence[Member], reason_of: Mapping[str, str]) -> Coverage:
        """Which members a kept run covers: one that names the file, created since the member's time, with
        the route's fixed parameters and none it never sends. A run that echoes too little may cover any
        member older than itself (unknown); so does every member whose window could not be read
        (`reason_of`: file key -> why)."""
        covered: dict[str, str | None] = {}
        maybe = {member.file_key for member in members if member.file_key in reason_of}
        judged = [member for member in members if member.file_key not in reason_of]
        oldest = min((member.since for member in judged), default=None)
        wanted = {member.key: file_hash(member.key) for member in judged}  # hashed once, looked up in every run
        for run in self._listing(covering, oldest):
            sure = all(name in (run.parameters or {}) for name in covering.fixed)
            hashes = (run.files or {})[covering.parameter]
            for member in judged:
                if _after(run, member.since) and lists(hashes, wanted[member.key]):
                    if sure:
                        covered.setdefault(member.file_key, run.execution_id)
                    else:
                        maybe.add(member.file_key)
        latest = self._newest_unsure(covering)
        maybe.update(m.file_key for m in judged if latest is not None and latest >= m.since.timestamp())
        unknown = frozenset(maybe - covered.keys())
        why = next(iter(reason_of.values()), None) if any(key in reason_of for key in unknown) else None
        said = why or f"{len(unknown)} object(s) may be covered by runs that echo too little to tell"
        return Coverage(covered, unknown, said if unknown else "")

    def _listing(self, covering: Covering, oldest: datetime | None) -> Iterator[Execution]:
        """The runs since `oldest` that name files in the route's parameter and may be the route's."""
        if oldest is None:
            return
        for key in self._lists.get(covering.parameter, ()):
            run = self.runs[key]
            if _after(run, oldest) and _may_be(run, covering):
                yield run

    def _newest_unsure(self, covering: Covering) -> float | None:
        """The newest creation time of a run of the route that does not say which files it covers."""
        unsure = [key for key in self._opaque if same_condition(covering.condition, self.runs[key].condition)]
        for echoed, signatures in self._names.items():
            if covering.parameter in echoed or not echoed <= covering.names:
                continue
            for signature, keys in signatures.items():
                if all(comparable(covering.fixed.get(name, value)) == value for name, value in signature):
                    unsure += [key for key in keys if same_condition(covering.condition, self.runs[key].condition)]
        dates = [self.runs[key].created for key in unsure]
        if any(date is None for date in dates):
            return float("inf")
        return max((date.timestamp() for date in dates if date is not None), default=None)


def _may_be(run: Execution, covering: Covering) -> bool:
    """The run can be the route's for this bucket: same condition, no fixed value differs, no foreign name."""
    echoed = run.parameters or {}
    if not same_condition(covering.condition, run.condition) or not set(echoed) <= covering.names:
        return False
    return all(echoed.get(name, value) == comparable(value) for name, value in covering.fixed.items())


def _status(before: Execution, now: Execution) -> Execution:
    """A kept run with the status a later read showed (its echo kept where the later answer had none)."""
    return Execution(
        before.execution_id,
        now.status,
        before.created,
        before.parameters,
        condition=before.condition,
        files=before.files,
        shape=before.shape,
        minutes=now.minutes,
    )


def _fits(run: Execution, since: datetime, condition: Mapping[str, Any] | None) -> bool:
    return _after(run, since) and same_condition(condition, run.condition)


def _after(run: Execution, since: datetime) -> bool:
    return run.created is None or run.created >= since


def _before(run: Execution, until: datetime) -> bool:
    return run.created is None or run.created <= until


def _newest_first_key(run: Execution) -> float:
    return -(run.created.timestamp() if run.created is not None else float("inf"))
