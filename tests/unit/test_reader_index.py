"""The one reader's index gives the verdicts a plain scan gave (the code before it, kept in old_reconcile)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.runs.execution import parse
from handler.runs.view import Identity, JobView
from tests.unit import old_reconcile as old

BASE = datetime(2026, 11, 28, tzinfo=UTC)
NAMES = ["$a", "$b", "$d", "$x"]
LONG = "L" * 300
VALUES = st.sampled_from(["1", "2", "true", "", LONG, LONG + "z"])
ECHO_VALUES = st.one_of(VALUES, st.just(True), st.just(False), st.none(), st.just(2))
CONDITIONS = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "workerType": st.sampled_from(["DEFAULT", "default", "X"]),
            "numWorker": st.sampled_from([2, "2", 3]),
        },
    ),
)


@st.composite
def items(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 8))
    out = []
    for index in range(n):
        item: dict[str, Any] = {"status": draw(st.sampled_from(["READY", "RUNNING", "COMPLETED", "FAILED"]))}
        if draw(st.integers(0, 9)):
            item["jobExecutionId"] = f"E{index}"
        if draw(st.integers(0, 9)):
            item["createdDate"] = (BASE + timedelta(seconds=draw(st.integers(0, 20)))).isoformat()
        shape = draw(st.sampled_from(["dict", "items", "empty-list", "empty-dict", "missing"]))
        params = draw(st.dictionaries(st.sampled_from(NAMES), ECHO_VALUES, max_size=4))
        if shape == "dict":
            item["parsedParameters"] = params
        elif shape == "items":
            item["parsedParameters"] = [{"key": k, "value": v} for k, v in params.items()]
        elif shape == "empty-list":
            item["parsedParameters"] = []
        elif shape == "empty-dict":
            item["parsedParameters"] = {}
        condition = draw(CONDITIONS)
        if condition is not None:
            item["jobCondition"] = condition
        out.append(item)
    return out


@st.composite
def identities(draw: Any) -> dict[str, Any]:
    return {
        "parameters": draw(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=4)),
        "job_condition": draw(CONDITIONS),
        "dedup_parameter": draw(st.one_of(st.none(), st.sampled_from(NAMES))),
        "since": BASE + timedelta(seconds=draw(st.integers(0, 20))),
        "others": frozenset(draw(st.lists(st.sampled_from([f"E{i}" for i in range(8)]), max_size=3))),
        "echo_known": draw(st.booleans()),
    }


def summary(lookup: Any) -> tuple[Any, ...]:
    kind = type(lookup).__name__
    if kind == "Found":
        return kind, frozenset(lookup.candidates), lookup.unidentified
    if kind == "Unknown":
        return kind, lookup.unidentified
    return kind, lookup.examined


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(items(), identities(), st.booleans())
def test_find_agrees_with_the_old_verdict(listing: list[dict[str, Any]], who: dict[str, Any], whole: bool) -> None:
    reason = None if whole else "short"
    before = old.find_in(old.Collected(listing, reason), old.Identity(**who))
    view = JobView(BASE - timedelta(days=1), True, None, 0)
    view.add([parse(item) for item in listing])
    now = view.find(Identity(**who), reason)
    assert summary(now) == summary(before)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(items(), identities(), st.booleans(), st.data())
def test_find_after_rereads_agrees(listing: list[dict[str, Any]], who: dict[str, Any], whole: bool, data: Any) -> None:
    # The view first sees some runs without echo (list_echo none), then the runs as listed again or their pages.
    reason = None if whole else "short"
    view = JobView(BASE - timedelta(days=1), True, None, 0)
    first = []
    for item in listing:
        if data.draw(st.booleans()):
            first.append({**item, "parsedParameters": [], "status": "READY"})
    view.add([parse(item) for item in first])
    view.add([parse(item) for item in listing])
    final = (
        [item for item in listing if "jobExecutionId" in item]
        + [item for item in listing if "jobExecutionId" not in item]
        + [item for item in first if "jobExecutionId" not in item]
    )
    before = old.find_in(old.Collected(final, reason), old.Identity(**who))
    now = view.find(Identity(**who), reason)
    assert summary(now) == summary(before)
