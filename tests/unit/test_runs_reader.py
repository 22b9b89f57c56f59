"""The one reader: each reading of the service that once answered wrong, asked of `Runs` as its users ask."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from handler.runs.reader import Runs, Source
from handler.runs.view import Absent, Covering, Found, Identity, Member, Unknown

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class Listing:
    """A job's runs listed newest first in pages, with a total count; a test edits `runs` between reads."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs  # newest first
        self.requests = 0
        self.before_page: dict[int, Any] = {}

    def __call__(self, page: int, limit: int) -> Mapping[str, Any]:
        self.requests += 1
        if page in self.before_page:
            self.before_page.pop(page)(self.runs)
        chunk = self.runs[page * limit : (page + 1) * limit]
        return {"list": chunk, "count": len(self.runs), "page": page, "limit": limit}

    def source(self, splits: Mapping[str, str] | None = None) -> Source:
        return Source("J", self, lambda run: {}, splits=splits or {})


def run(
    execution_id: str, seconds_ago: float, parameters: dict[str, str] | None, status: str = "COMPLETED"
) -> dict[str, Any]:
    created = (NOW - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")
    return {"jobExecutionId": execution_id, "createdDate": created, "status": status, "parsedParameters": parameters}


def others(count: int, start: float, step: float = 1.0) -> list[dict[str, Any]]:
    """`count` runs of other events, newest first, the newest `start` seconds ago."""
    return [run(f"O{index}", start + index * step, {"$dedup": f"other-{index}"}) for index in range(count)]


def ours(since: datetime) -> Identity:
    return Identity({"$dedup": "mine"}, None, "$dedup", since)


def test_a_flip_at_the_top_of_page_0_does_not_turn_the_listing_oldest_first() -> None:
    # Finding 5: in a burst, the top run of page 0 is a second older than the rest of the page.
    burst = [run(f"B{index}", 10, {"$dedup": f"b{index}"}) for index in range(99)]
    flipped = [run("FLIP", 11, {"$dedup": "flip"}), *burst, run("MINE", 11, {"$dedup": "mine"}), *others(150, 12)]
    lookup = Runs(lambda: 0.0).find(
        Listing(flipped).source(), ours(NOW - timedelta(hours=1)), None, NOW - timedelta(hours=1)
    )
    assert lookup == Found((("MINE", "COMPLETED"),))


def test_a_late_run_below_the_kept_top_is_found_by_a_warm_container() -> None:
    # Finding 6: a run shows up after 150 newer ones; a warm container's kept listing must not hide it.
    listing = Listing(others(300, 200))
    runs, since = Runs(lambda: 0.0), NOW - timedelta(hours=1)
    assert isinstance(runs.find(listing.source(), ours(since), None, since), Absent)
    listing.runs[:0] = others(150, 30)[::1]
    listing.runs[:150] = [run(f"N{index}", 30 + index * 0.5, {"$dedup": f"n{index}"}) for index in range(150)]
    listing.runs.insert(150, run("MINE", 150, {"$dedup": "mine"}))
    assert runs.find(listing.source(), ours(since), None, since) == Found((("MINE", "COMPLETED"),))


def test_a_run_that_leaves_the_top_between_two_pages_never_hides_another() -> None:
    # Finding 6: the newest run goes between the page 0 and page 1 reads; page 1's first run moves up.
    listing = Listing([*others(100, 10), run("MINE", 120, {"$dedup": "mine"}), *others(100, 200)])
    listing.before_page[1] = lambda runs: runs.pop(0)
    since = NOW - timedelta(hours=1)
    assert Runs(lambda: 0.0).find(listing.source(), ours(since), None, since) == Found((("MINE", "COMPLETED"),))


def test_runs_pushed_onto_the_next_page_by_a_create_are_counted_once() -> None:
    # Finding 10: a create between two page reads repeats a run on the next page.
    listing = Listing([run(f"G{index}", 10 + index, {"$dedup": f"g{index}"}, "RUNNING") for index in range(150)])
    listing.before_page[1] = lambda runs: runs.insert(0, run("NEW", 1, {"$dedup": "new"}, "RUNNING"))
    runs = Runs(lambda: 0.0)
    going, rule = runs.going(listing.source(), NOW - timedelta(hours=6), None)
    assert (going, rule) == (150, None)
    listed, short = runs.between(listing.source(), NOW - timedelta(hours=6))
    assert short is None and len(listed) == len({execution.execution_id for execution in listed})


def test_a_count_reads_back_over_the_jobs_timeout_however_busy_the_job_was() -> None:
    # Finding 1: 1,300 finished runs in the last 5 hours and none running: the count finishes, at 0.
    listing = Listing(others(1300, 10, step=13.0))
    going, rule = Runs(lambda: 0.0).going(listing.source(), NOW - timedelta(hours=6), None)
    assert (going, rule) == (0, None)


def test_one_listing_serves_every_lookup_of_an_invocation() -> None:
    # Finding 9: the lookups of one invocation share its read; a later invocation reads only the top page.
    listing = Listing(others(3000, 10))
    clock = [0.0]
    runs, since = Runs(lambda: clock[0]), NOW - timedelta(hours=24)
    invocation = runs.asked("J")
    for index in range(50):
        identity = Identity({"$dedup": f"other-{index}"}, None, "$dedup", since)
        assert isinstance(runs.find(listing.source(), identity, invocation, since), Found)
    first = listing.requests
    assert first == 30
    listing.runs[:0] = [run("NEW", 1, {"$dedup": "new"})]
    clock[0] += 2.0  # a later invocation: the read is older than a second
    assert isinstance(runs.find(listing.source(), ours(since), runs.asked("J"), since), Absent)
    assert listing.requests == first + 1


def covering() -> Covering:
    return Covering("$files", {"$bucket": "lake"}, frozenset({"$files", "$bucket", "$count"}), None)


def test_a_sibling_routes_run_on_the_same_job_covers_no_file() -> None:
    # Finding 3: a schedule route's run (it sends $date, never $files) is another route's, not "maybe".
    listing = Listing([run("NIGHTLY", 10, {"$date": "2026-12-06"}), *others(5, 100)])
    members = [Member(f"f{index}", f"in/{index}.csv", NOW - timedelta(minutes=5)) for index in range(50)]
    cover = Runs(lambda: 0.0).cover(
        listing.source({"$files": ","}), covering(), members, None, NOW - timedelta(hours=1)
    )
    assert cover.unknown == frozenset() and cover.covered == {}


def test_one_old_member_of_a_batch_is_unknown_alone() -> None:
    # Finding 4: a member whose window cannot be read fails alone, never its neighbours.
    listing = Listing(
        [run(f"B{index}", 10 + index * 16, {"$bucket": "lake", "$files": f"x/{index}.csv"}) for index in range(10_500)]
    )
    covered = run("COVER", 5, {"$bucket": "lake", "$files": "in/1.csv,in/2.csv"})
    listing.runs.insert(0, covered)
    fresh = [Member(f"f{index}", f"in/{index}.csv", NOW - timedelta(minutes=1)) for index in range(1, 4)]
    old = Member("old", "in/old.csv", NOW - timedelta(hours=60))
    cover = Runs(lambda: 0.0).cover(
        listing.source({"$files": ","}), covering(), [*fresh, old], None, NOW - timedelta(hours=1)
    )
    assert cover.covered == {"f1": "COVER", "f2": "COVER"}
    assert cover.unknown == frozenset({"old"})


def test_an_unknown_answer_says_what_could_not_be_read() -> None:
    listing = Listing([run(f"S{index}", 10, None) for index in range(3)])
    since = NOW - timedelta(hours=1)
    lookup = Runs(lambda: 0.0).find(listing.source(), ours(since), None, since)
    assert isinstance(lookup, Unknown) and lookup.unidentified == 3


def test_coalesced_runs_at_the_largest_max_bytes_cost_their_names_hashes_not_their_text() -> None:
    # Finding 7: 1,200 runs at maxBytes 262,144 grew a container by 376 MB: the kept view holds 8 bytes a
    # file name. Measured here on 99 such runs (25 MB of echoed text).
    names = [f"landing/part-{index:06d}.parquet" for index in range(8_000)]  # about 256 KiB joined
    listed = [run(f"C{index}", 10 + index, {"$bucket": "lake", "$files": ",".join(names)}) for index in range(99)]
    listing = Listing(listed)
    members = [Member("f1", names[5], NOW - timedelta(minutes=5))]
    gc.collect()
    tracemalloc.start()
    try:
        runs = Runs(lambda: 0.0)
        cover = runs.cover(listing.source({"$files": ","}), covering(), members, None, NOW - timedelta(hours=1))
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cover.covered == {"f1": "C0"}
    assert kept < 99 * 80_000  # 8,000 names at 8 bytes, and a little per run: under a third of the text
