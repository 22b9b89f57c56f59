"""Finding a lost execution: every reading of the echo, either list order, bounded paging."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from handler.runs.execution import Execution, echoed_parameters, parse
from handler.runs.listing import Read, read_top, read_window
from handler.runs.view import Absent, Found, Identity, JobView, Lookup, Unknown

if TYPE_CHECKING:
    from handler.runs.listing import ListPage


def find(list_page: ListPage, identity: Identity, *, limit: int, max_pages: int) -> Lookup:
    """The lookup as the reader makes it: read the window, then find ours among what was read."""
    read = read_window(list_page, identity.since, limit=limit, budget=max_pages)
    return viewed(read).find(identity, read.reason)


def viewed(read: Read) -> JobView:
    view = JobView(SINCE, read.newest_first, read.total, 0)
    view.add(read.executions)
    return view


def verdict(listed: dict[str, Any], identity: Identity) -> str:
    """One run alone: ours (found), unknown (cannot tell) or other (absent)."""
    view = JobView(SINCE, True, None, 0)
    view.add([parse(listed)])
    found = view.find(identity, None)
    return "ours" if isinstance(found, Found) else "unknown" if isinstance(found, Unknown) else "other"


def known_from(list_page: ListPage) -> tuple[dict[str, Execution], datetime]:
    """What a whole read keeps for a refresh: the runs by id and the newest creation time."""
    read = read_window(list_page, SINCE, limit=1000, budget=2)
    assert read.reason is None and read.newest_first is True
    dates = [run.created for run in read.executions if run.created is not None]
    return {run.execution_id: run for run in read.executions if run.execution_id}, max(dates)


def refreshed(
    known: tuple[dict[str, Execution], datetime], list_page: ListPage, *, limit: int, max_pages: int
) -> Read | None:
    return read_top(list_page, known[0], known[1], limit=limit, budget=max_pages)


SINCE = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
OURS = {"$input": "raw/a.csv", "$day": "2026-11-28"}


def item(execution_id: str, minutes: int, echo: Any = None, **extra: Any) -> dict[str, Any]:
    created = (SINCE + timedelta(minutes=minutes)).astimezone(UTC).isoformat()
    return {
        "jobExecutionId": execution_id,
        "createdDate": created,
        "status": "READY",
        "parsedParameters": echo,
        **extra,
    }


def identity(**changes: Any) -> Identity:
    return Identity(**({"parameters": OURS, "job_condition": None, "dedup_parameter": None, "since": SINCE} | changes))


@pytest.mark.parametrize(
    ("echo", "expected"),
    [
        ({"$a": "1", "$b": 2}, {"$a": "1", "$b": "2"}),
        ([{"key": "$a", "value": "1"}, {"name": "$b", "value": None}], {"$a": "1", "$b": ""}),
        ([{"parameterName": "$a", "parameterValue": "1"}, "junk", {"value": "orphan"}], {"$a": "1"}),
        ([], None),
        (None, None),
        ("text", None),
    ],
    ids=["object", "name-value", "other-item-names", "empty-list", "absent", "not-a-container"],
)
def test_every_reading_of_the_echo(echo: Any, expected: dict[str, str] | None) -> None:
    assert echoed_parameters({"parsedParameters": echo}) == expected


@pytest.mark.parametrize(
    ("echo", "expected"),
    [
        (OURS, "ours"),
        ([{"key": name, "value": value} for name, value in OURS.items()], "ours"),
        ({**OURS, "$input": "raw/b.csv"}, "other"),
        ({"$day": "2026-11-28"}, "unknown"),  # consistent, but too little to tell
        ([], "unknown"),
    ],
)
def test_verdict_by_parameters(echo: Any, expected: str) -> None:
    assert verdict(item("E1", 1, echo), identity()) == expected


def test_a_dedup_parameter_decides_alone_and_other_keys_are_others() -> None:
    ours = identity(parameters={"$input": "x", "$dedup": "K1"}, dedup_parameter="$dedup")
    assert verdict(item("E1", 1, {"$dedup": "K1"}), ours) == "ours"
    assert verdict(item("E2", 1, {"$dedup": "K2"}), ours) == "other"
    assert verdict(item("E3", 1, {"$input": "x"}), ours) == "unknown"  # the key is not echoed: cannot tell
    assert verdict(item("E4", 1, {"$input": "y"}), ours) == "other"  # what is echoed already differs


def test_an_echoed_dedup_key_outweighs_how_the_service_stores_the_rest() -> None:
    ours = identity(
        parameters={"$flag": "true", "$dedup": "K1"},
        dedup_parameter="$dedup",
        job_condition={"workerType": "default", "scriptPath": "b/scripts/"},
    )
    stored = item(
        "E1", 1, {"$flag": True, "$dedup": "K1"}, jobCondition={"workerType": "DEFAULT", "scriptPath": "b/scripts"}
    )
    assert verdict(stored, ours) == "ours"
    assert verdict(stored | {"parsedParameters": {"$flag": "true", "$dedup": "K2"}}, ours) == "other"


def test_without_a_dedup_parameter_an_identical_run_covers_the_event() -> None:
    # Before submitting too: a run with exactly these parameters, created since the event, saw what it brought.
    assert verdict(item("E1", 1, OURS), identity()) == "ours"


def test_a_stored_spelling_of_the_job_condition_is_the_same_run() -> None:
    condition = {"workerType": "default", "scriptPath": "b/scripts/", "numWorker": 4}
    stored = item("E1", 1, OURS, jobCondition={"workerType": "DEFAULT", "scriptPath": "b/scripts", "numWorker": 4})
    assert verdict(stored, identity(job_condition=condition)) == "ours"


def test_an_empty_echo_is_no_parameters_only_where_the_service_echoes_in_full() -> None:
    nothing_sent = identity(parameters={})
    assert verdict(item("E1", 1, []), nothing_sent) == "unknown"
    assert verdict(item("E1", 1, []), identity(parameters={}, echo_known=True)) == "ours"


def test_executions_started_here_for_other_events_are_never_ours() -> None:
    assert verdict(item("E1", 1, []), identity(others=frozenset({"E1"}))) == "other"


def test_a_different_job_condition_is_another_run() -> None:
    found = item("E1", 1, OURS, jobCondition={"numWorker": 2, "timeout": 360})
    assert verdict(found, identity(job_condition={"numWorker": 4})) == "other"
    assert verdict(found, identity(job_condition={"numWorker": 2})) == "ours"


class Pages:
    """A listing split in pages the way the API pages it, counting requests."""

    def __init__(
        self,
        items: list[dict[str, Any]],
        *,
        count: str = "total",
        cap: int | None = None,
        prune_after: int | None = None,
        newest_first: bool = True,
    ) -> None:
        self.items = items
        self.count = count  # "total", "page" (this page's length), "missing" or "string"
        self.cap = cap
        self.prune_after = prune_after  # after serving this page, the oldest run is deleted
        self.newest_first = newest_first
        self.requests: list[int] = []

    def __call__(self, page: int, limit: int) -> Mapping[str, Any]:
        self.requests.append(page)
        size = min(limit, self.cap or limit)
        chunk = self.items[page * size : (page + 1) * size]
        if page == self.prune_after:
            self.items.pop(0 if not self.newest_first else -1)
        counts = {"total": len(self.items), "page": len(chunk), "string": str(len(self.items))}
        answer: dict[str, Any] = {"list": chunk, "page": page, "limit": size}
        if self.count in counts:
            answer["count"] = counts[self.count]
        return answer


def history(count: int, *, newest_first: bool, start: int = -100) -> list[dict[str, Any]]:
    items = [item(f"E{index}", start + index, {"$input": f"raw/{index}.csv"}) for index in range(count)]
    return list(reversed(items)) if newest_first else items


def test_newest_first_stops_at_the_first_page_that_reaches_the_window() -> None:
    pages = Pages(history(1000, newest_first=True, start=-100))  # 100 minutes before SINCE onwards
    found = read_window(pages, SINCE, limit=100, budget=3)
    assert pages.requests == [0, 1, 2]  # 900 executions are newer than SINCE
    assert found.reason is not None and "do not cover the window" in found.reason
    assert len(found.executions) == 300  # what was read is kept: a run of ours among it is still found
    pages = Pages(history(1000, newest_first=True, start=-950))
    assert read_window(pages, SINCE, limit=100, budget=3).reason is None
    assert pages.requests == [0]


def test_oldest_first_reads_the_last_pages_backwards() -> None:
    pages = Pages(history(1000, newest_first=False, start=-950))
    collected = read_window(pages, SINCE, limit=100, budget=3)
    assert pages.requests == [0, 9]
    assert collected.reason is None
    assert {run.execution_id for run in collected.executions} >= {f"E{index}" for index in range(950, 1000)}


def test_oldest_first_without_a_total_finds_its_last_page_in_a_few_requests() -> None:
    # The API reference's own "number of response results": the count is this page's length.
    pages = Pages(history(2000, newest_first=False, start=-1990), count="page")
    collected = read_window(pages, SINCE, limit=100, budget=12)
    assert collected.reason is None
    assert pages.requests == [0, 1, 2, 4, 8, 16, 32, 24, 20, 18, 19]  # doubling, then halving: page 19 is the last
    assert {run.execution_id for run in collected.executions} >= {f"E{index}" for index in range(1990, 2000)}


def test_a_page_shorter_than_asked_with_a_count_saying_more_is_a_silent_cap() -> None:
    capped = history(120, newest_first=False, start=-119)

    def silent(page: int, limit: int) -> Mapping[str, Any]:
        return {"list": capped[page * 50 : (page + 1) * 50], "count": 120, "limit": limit}  # caps at 50, says 100

    collected = read_window(silent, SINCE - timedelta(hours=3), limit=100, budget=12)
    assert collected.reason is None
    assert len({run.execution_id for run in collected.executions}) == 120


def test_a_listing_without_count_or_order_is_read_to_its_short_page() -> None:
    same_time = [item(f"E{index}", 0, {}) for index in range(150)]
    pages = Pages(same_time, count="missing")
    collected = read_window(pages, SINCE, limit=100, budget=3)
    assert collected.reason is None and len(collected.executions) == 150
    assert pages.requests == [0, 1, 0]  # page 0 again: the oldest run is still first, so none was pruned


def test_runs_pruned_while_paging_a_listing_without_order_cannot_be_proven_absent() -> None:
    same_time = [item(f"E{index}", 0, {}) for index in range(150)]
    collected = read_window(
        Pages(same_time, count="missing", prune_after=0, newest_first=False), SINCE, limit=100, budget=3
    )
    assert collected.reason is not None and "pruned" in collected.reason


def test_too_many_pages_without_an_order_cannot_be_covered() -> None:
    same_time = [item(f"E{index}", 0, {}) for index in range(400)]
    assert read_window(Pages(same_time, count="missing"), SINCE, limit=100, budget=3).reason is not None


OURS_KEYED = {"$input": "raw/a.csv", "$dedup": "K1"}


def keyed(count: int, *, newest_first: bool) -> list[dict[str, Any]]:
    """`count` runs of other events, then this event's own run as the newest, in the listing's order."""
    runs = [
        item(f"E{index}", index - count, {"$input": f"raw/{index}.csv", "$dedup": f"K{index + 2}"})
        for index in range(count)
    ]
    runs.append(item("MINE", 1, OURS_KEYED))
    return list(reversed(runs)) if newest_first else runs


def keyed_identity() -> Identity:
    return identity(parameters=OURS_KEYED, dedup_parameter="$dedup", since=SINCE - timedelta(hours=24))


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ("oldest first, no count", {"count": "missing", "newest_first": False}),
        ("oldest first, count as a string", {"count": "string", "newest_first": False}),
        ("oldest first, count of the page", {"count": "page", "newest_first": False}),
        ("newest first, count of the page", {"count": "page", "newest_first": True}),
        ("a limit the service caps", {"cap": 20, "newest_first": False}),
        ("capped and newest first", {"cap": 20, "newest_first": True}),
    ],
)
def test_a_redelivery_is_found_in_every_listing_shape(shape: str, options: dict[str, Any]) -> None:
    pages = Pages(keyed(150, newest_first=options["newest_first"]), **options)
    lookup = find(pages, keyed_identity(), limit=100, max_pages=12)
    assert lookup == Found((("MINE", "READY"),)), shape


def test_runs_pruned_while_paging_oldest_first_are_read_back_whole() -> None:
    # Read backwards from the last page, a prune shifts runs onto pages still to read, never past them.
    runs = keyed(150, newest_first=False)
    pages = Pages(runs, count="missing", newest_first=False, prune_after=0)
    assert find(pages, keyed_identity(), limit=100, max_pages=5) == Found((("MINE", "READY"),))
    others = [run for run in keyed(150, newest_first=False) if run["jobExecutionId"] != "MINE"]
    pages = Pages(others, count="missing", newest_first=False, prune_after=0)
    assert find(pages, keyed_identity(), limit=100, max_pages=5) == Absent(149)


def test_a_run_of_ours_is_found_among_what_was_read_though_the_window_was_not_covered() -> None:
    busy = keyed(520, newest_first=True)  # ours is the newest; 520 others since the event
    found = find(Pages(busy), keyed_identity(), limit=100, max_pages=3)
    assert found == Found((("MINE", "READY"),))


def test_a_run_with_parameters_this_one_did_not_send_is_another_routes() -> None:
    assert verdict(item("E1", 1, {**OURS, "$mode": "full"}), identity()) == "other"


def test_an_answer_without_a_list_cannot_be_proven_absent() -> None:
    lookup = find(lambda page, limit: {"count": 0}, keyed_identity(), limit=100, max_pages=5)
    assert isinstance(lookup, Unknown) and "without a list" in lookup.reason


def test_an_empty_page_before_the_window_is_reached_cannot_be_proven_absent() -> None:
    full = [item(f"E{index}", -index, {"$dedup": f"K{index + 2}"}) for index in range(100)]

    def vanishing(page: int, limit: int) -> Mapping[str, Any]:
        return {"list": full if page == 0 else [], "limit": limit}

    lookup = find(vanishing, keyed_identity(), limit=100, max_pages=5)
    assert isinstance(lookup, Unknown) and "empty" in lookup.reason


def test_find_reports_found_absent_and_unknown() -> None:
    ours = item("MINE", 5, OURS)
    others = history(5, newest_first=True, start=1)
    assert find(Pages([ours, *others]), identity(), limit=100, max_pages=3) == Found((("MINE", "READY"),))
    assert find(Pages(others), identity(), limit=100, max_pages=3) == Absent(5)
    silent = [item("E1", 1, [])]
    lookup = find(Pages(silent), identity(), limit=100, max_pages=3)
    assert isinstance(lookup, Unknown) and "cannot be told apart" in lookup.reason


def test_executions_older_than_the_window_are_ignored() -> None:
    old_silent = [item("OLD", -10, [])]
    assert find(Pages(old_silent), identity(), limit=100, max_pages=3) == Absent(0)


def test_a_known_listing_takes_new_runs_on_top_only_where_a_page_reaches_below_its_top() -> None:
    old = history(300, newest_first=True, start=-100)
    known = known_from(Pages(old))
    new = [item(f"N{index}", 300 + index, {"$input": f"raw/n{index}.csv"}) for index in range(3)][::-1]
    again = refreshed(known, Pages(new + old), limit=100, max_pages=3)
    assert again is not None and [run.execution_id for run in again.executions[:4]] == ["N2", "N1", "N0", "E299"]
    crowd = [item(f"M{i}", 400 - i, {}) for i in range(400)]  # more new runs than the pages it may read
    assert refreshed(known, Pages(crowd + old), limit=100, max_pages=3) is None


def test_an_oldest_first_listing_is_said_so() -> None:
    # Oldest first, read from the last page backwards: its two ends are in order, its pages are not.
    backwards = Pages(history(1500, newest_first=False, start=-900), newest_first=False)
    read = read_window(backwards, SINCE, limit=1000, budget=3)
    assert read.reason is None and backwards.requests == [0, 1, 0] and read.newest_first is False


def test_a_top_second_that_runs_past_page_0_is_read_past_that_second() -> None:
    # 150 runs in the newest second; a new run of that second sorts below page 0 (ties by id, say).
    same = [item(f"S{index:03d}", 10, {"$input": f"raw/s{index}.csv"}) for index in range(150)]
    older = history(50, newest_first=True, start=-40)
    known = known_from(Pages(same + older))
    theirs = item("S120x", 10, OURS)
    listing = Pages([*same[:121], theirs, *same[121:], *older])
    again = refreshed(known, listing, limit=100, max_pages=3)
    assert again is not None and "S120x" in {run.execution_id for run in again.executions}
    assert listing.requests == [0, 1]  # page 0 alone ends inside the top's second
    assert refreshed(known, listing, limit=100, max_pages=1) is None


def test_a_run_created_between_two_pages_of_a_refresh_is_no_mismatch() -> None:
    old = history(300, newest_first=True, start=-100)
    known = known_from(Pages(old))
    new = [item(f"N{index:03d}", 200, {}) for index in range(150)][::-1]  # more than page 0 holds
    listing = Pages(new + old)

    def shifting(page: int, limit: int) -> Mapping[str, Any]:
        if page == 1:  # another container creates two runs after page 0 was read: the rest moves down
            listing.items[:0] = [item("X1", 201, {}), item("X2", 201, {})]
        return listing(page, limit)

    again = refreshed(known, shifting, limit=100, max_pages=12)
    assert again is not None
    ids = [run.execution_id for run in again.executions]
    assert len(ids) == len(set(ids)) and "E299" in ids


def test_new_runs_out_of_order_on_top_of_a_kept_listing_read_it_whole() -> None:
    old = history(300, newest_first=True, start=-100)
    known = known_from(Pages(old))
    shuffled = [item("N0", 250, {}), item("N1", 260, {}), item("N2", 270, {})]  # oldest first on top
    assert refreshed(known, Pages(shuffled + old), limit=100, max_pages=3) is None
    assert refreshed(known, Pages(shuffled[::-1] + old), limit=100, max_pages=3) is not None
