"""read_window over random static listings: no run of the window is missing without a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.runs.listing import read_window

BASE = datetime(2026, 12, 6, tzinfo=UTC)


@st.composite
def listings(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(0, 700))
    gaps = draw(st.lists(st.sampled_from([0, 0, 0, 1, 2, 30]), min_size=n, max_size=n))
    seconds, at = [], 0
    for gap in gaps:
        at += gap
        seconds.append(at)  # oldest first
    runs: list[dict[str, Any]] = [
        {
            "jobExecutionId": f"R{i}",
            "status": "COMPLETED",
            "createdDate": (BASE + timedelta(seconds=s)).isoformat(),
            "parsedParameters": {"$k": str(i)},
        }
        for i, s in enumerate(seconds)
    ]
    newest_first = draw(st.booleans())
    listed = runs[::-1] if newest_first else runs
    if newest_first and draw(st.booleans()) and listed:
        top = str(listed[0]["createdDate"])
        below = next((i for i, r in enumerate(listed) if str(r["createdDate"]) < top), None)
        if below is not None:
            listed.insert(0, listed.pop(below))
    return {
        "listed": listed,
        "cap": draw(st.sampled_from([100, 20, 50, 7])),
        "count": draw(st.sampled_from(["total", "page", "missing"])),
        "since": BASE + timedelta(seconds=draw(st.integers(-5, max(seconds, default=0) + 5))),
    }


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(listings())
def test_no_run_of_the_window_is_missed_silently(case: dict[str, Any]) -> None:
    listed, cap, count = case["listed"], case["cap"], case["count"]

    def list_page(page: int, limit: int) -> dict[str, Any]:
        size = min(limit, cap)
        chunk = listed[page * size : (page + 1) * size]
        answer: dict[str, Any] = {"list": chunk, "page": page, "limit": size}
        if count == "total":
            answer["count"] = len(listed)
        elif count == "page":
            answer["count"] = len(chunk)
        return answer

    read = read_window(list_page, case["since"], limit=100, budget=102)
    if read.reason is not None:
        return
    got = {e.execution_id for e in read.executions}
    since = case["since"]
    wanted = {r["jobExecutionId"] for r in listed if datetime.fromisoformat(r["createdDate"]) >= since}
    assert wanted <= got, (sorted(wanted - got)[:5], read.newest_first, len(listed))
