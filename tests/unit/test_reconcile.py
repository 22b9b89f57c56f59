"""Finding a lost execution: every reading of the echo, either list order, bounded paging."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handler.dataflow.reconcile import Absent, Found, Identity, Unknown, collect, echoed_parameters, find, verdict

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
    assert verdict(item("E3", 1, {"$input": "x"}), ours) == "unknown"


def test_before_submitting_equal_parameters_prove_nothing() -> None:
    assert verdict(item("E1", 1, OURS), identity(by_parameters=False)) == "unknown"


def test_executions_started_here_for_other_events_are_never_ours() -> None:
    assert verdict(item("E1", 1, []), identity(others=frozenset({"E1"}))) == "other"


def test_a_different_job_condition_is_another_run() -> None:
    found = item("E1", 1, OURS, jobCondition={"numWorker": 2, "timeout": 360})
    assert verdict(found, identity(job_condition={"numWorker": 4})) == "other"
    assert verdict(found, identity(job_condition={"numWorker": 2})) == "ours"


class Pages:
    """A listing split in pages the way the API pages it, counting requests."""

    def __init__(self, items: list[dict[str, Any]], *, count: bool = True) -> None:
        self.items = items
        self.count = count
        self.requests: list[int] = []

    def __call__(self, page: int, limit: int) -> Mapping[str, Any]:
        self.requests.append(page)
        chunk = self.items[page * limit : (page + 1) * limit]
        return {"list": chunk, "page": page, "limit": limit} | ({"count": len(self.items)} if self.count else {})


def history(count: int, *, newest_first: bool, start: int = -100) -> list[dict[str, Any]]:
    items = [item(f"E{index}", start + index, {"$input": f"raw/{index}.csv"}) for index in range(count)]
    return list(reversed(items)) if newest_first else items


def test_newest_first_stops_at_the_first_page_that_reaches_the_window() -> None:
    pages = Pages(history(1000, newest_first=True, start=-100))  # 100 minutes before SINCE onwards
    found = collect(pages, SINCE, limit=100, max_pages=3)
    assert pages.requests == [0, 1, 2]  # 900 executions are newer than SINCE
    assert isinstance(found, str) and "do not reach back" in found
    pages = Pages(history(1000, newest_first=True, start=-950))
    assert isinstance(collect(pages, SINCE, limit=100, max_pages=3), list)
    assert pages.requests == [0]


def test_oldest_first_reads_the_last_pages_backwards() -> None:
    pages = Pages(history(1000, newest_first=False, start=-950))
    collected = collect(pages, SINCE, limit=100, max_pages=3)
    assert pages.requests == [0, 9]
    assert isinstance(collected, list)
    assert {entry["jobExecutionId"] for entry in collected} >= {f"E{index}" for index in range(950, 1000)}


def test_a_listing_without_count_or_order_cannot_be_covered() -> None:
    same_time = [item(f"E{index}", 0, {}) for index in range(100)]
    assert isinstance(collect(Pages(same_time, count=False), SINCE, limit=100, max_pages=3), str)


def test_find_reports_found_absent_and_unknown() -> None:
    ours = item("MINE", 5, OURS)
    others = history(5, newest_first=True, start=1)
    assert find(Pages([ours, *others]), identity(), limit=100, max_pages=3) == Found("MINE", "READY")
    assert find(Pages(others), identity(), limit=100, max_pages=3) == Absent(5)
    silent = [item("E1", 1, [])]
    lookup = find(Pages(silent), identity(), limit=100, max_pages=3)
    assert isinstance(lookup, Unknown) and "cannot be told apart" in lookup.reason


def test_executions_older_than_the_window_are_ignored() -> None:
    old_silent = [item("OLD", -10, [])]
    assert find(Pages(old_silent), identity(), limit=100, max_pages=3) == Absent(0)
