"""Delivery guarantees in every reading of the service: redeliveries into new processes, new events, re-uploads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulator.server import Emulator
from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeClock,
    connected,
    container,
    lose_the_answer_and_the_lookup,
    result_of,
    runs_of,
    upload,
)

JOB = "gqigvH123456"
# The default configuration: no dedupParameter, DATAFLOW_DEDUP_CHECK=always, DATAFLOW_DEDUP_UNVERIFIABLE=submit.
PARAMETERS = '{"$input": "{bucket}/{key}"}'
ECHOING: dict[str, dict[str, Any]] = {
    "object": {"echo": "object"},
    "name/value items": {"echo": "list"},
    "only the declared parameter": {"echo": "list", "echo_only": frozenset({"$input"})},
}
READINGS: dict[str, dict[str, Any]] = {**ECHOING, "nothing": {"echo": "none"}}


@pytest.fixture(params=list(READINGS), ids=list(READINGS))
def reading(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def service(clock: FakeClock, reading: str, **options: Any) -> Emulator:
    return Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, **READINGS[reading], **options)


@pytest.fixture
def api(clock: FakeClock, reading: str) -> Iterator[Emulator]:
    with service(clock, reading) as emulator:
        yield emulator


def defaults(api: Emulator, **more: str) -> dict[str, str]:
    return connected(api.url, **{"DATAFLOW_JOB_ID": JOB, "DATAFLOW_PARAMETERS": PARAMETERS, **more})


@pytest.mark.parametrize("reading", list(ECHOING), ids=list(ECHOING))
def test_a_redelivery_into_a_new_process_is_a_duplicate_where_the_service_echoes(
    clock: FakeClock, api: Emulator
) -> None:
    event = upload("incoming/a.csv", at=clock.wall() - 2)
    first = result_of(container(clock), defaults(api), event)
    clock.advance(60)  # the platform redelivers a minute later, to another container
    again = result_of(container(clock), defaults(api), event)
    [skip] = again["skipped"]
    assert (skip["reason"], skip["jobExecutionId"]) == ("duplicate", first["submitted"][0]["jobExecutionId"])
    assert len(api.all_executions()) == 1


def test_new_events_in_a_second_process_are_all_submitted(clock: FakeClock, api: Emulator) -> None:
    for index in range(5):
        result_of(container(clock), defaults(api), upload(f"incoming/old-{index}.csv", at=clock.wall() - 1))
        clock.advance(1)
    second = container(clock)
    results = [result_of(second, defaults(api), upload(f"incoming/new-{i}.csv", at=clock.wall())) for i in range(5)]
    assert [len(result["submitted"]) for result in results] == [1] * 5
    assert len(api.all_executions()) == 10


def test_new_events_with_a_dedup_parameter_are_submitted_where_nothing_is_echoed(clock: FakeClock) -> None:
    # The reviewer's case: the window holds five runs of another process that echo nothing.
    with service(clock, "nothing") as api:
        config = defaults(api, DATAFLOW_DEDUP_PARAMETER="$dedup")
        for index in range(5):
            result_of(container(clock), config, upload(f"incoming/old-{index}.csv", at=clock.wall()))
        second = container(clock)
        results = [result_of(second, config, upload(f"incoming/new-{i}.csv", at=clock.wall())) for i in range(5)]
        assert [len(result["submitted"]) for result in results] == [1] * 5
        assert len(api.all_executions()) == 10


@pytest.mark.parametrize("reading", list(ECHOING), ids=list(ECHOING))
def test_the_same_key_uploaded_again_after_its_run_started_is_a_new_run(clock: FakeClock, api: Emulator) -> None:
    first = upload("incoming/a.csv", at=clock.wall() - 1, etag="v1", sequencer="01")
    result_of(container(clock), defaults(api), first)
    clock.advance(20)
    again = upload("incoming/a.csv", at=clock.wall(), etag="v2", sequencer="02")
    second = result_of(container(clock), defaults(api), again)
    assert len(second["submitted"]) == 1
    assert runs_of(api) == ["raw-data/incoming/a.csv"] * 2


@pytest.mark.parametrize("reading", list(ECHOING), ids=list(ECHOING))
def test_a_lost_answer_then_a_redelivery_into_a_new_process_is_one_run(clock: FakeClock, api: Emulator) -> None:
    event = upload("incoming/a.csv", at=clock.wall())
    lose_the_answer_and_the_lookup(api)
    first = result_of(container(clock), defaults(api), event)
    assert first["failed"][0]["code"] == "unknown-outcome"
    assert first["failed"][0]["retryable"] is True  # a redelivery can tell
    clock.advance(60)
    again = result_of(container(clock), defaults(api), event)
    [execution] = api.all_executions()
    assert again["skipped"][0]["jobExecutionId"] == execution["jobExecutionId"]


def test_with_nothing_echoed_and_fail_no_second_run_ever(clock: FakeClock) -> None:
    with service(clock, "nothing") as api:
        config = defaults(api, DATAFLOW_DEDUP_UNVERIFIABLE="fail")
        event = upload("incoming/a.csv", at=clock.wall())
        assert len(result_of(container(clock), config, event)["submitted"]) == 1
        clock.advance(60)
        again = result_of(container(clock), config, event)
        [failed] = again["failed"]
        assert (failed["code"], failed["retryable"]) == ("unknown-outcome", True)
        assert failed["error"].startswith("unknown-outcome: cannot prove this event has no run yet")
        lost = upload("incoming/b.csv", at=clock.wall())
        lose_the_answer_and_the_lookup(api)
        assert result_of(container(clock), config, lost)["failed"][0]["code"] == "unknown-outcome"
        clock.advance(60)
        assert result_of(container(clock), config, lost)["failed"][0]["code"] == "unknown-outcome"
        assert len(api.posts) == 2
        assert sorted(runs_of(api)) == ["raw-data/incoming/a.csv", "raw-data/incoming/b.csv"]


def test_unidentifiable_runs_are_warned_once_per_container_and_job_and_counted(clock: FakeClock, logs: Any) -> None:
    with service(clock, "nothing") as api:
        result_of(container(clock), defaults(api), upload("incoming/other.csv", at=clock.wall()))
        launcher = container(clock)  # its own runs it can tell apart; the other container's it cannot
        results = [result_of(launcher, defaults(api), upload(f"incoming/{i}.csv", at=clock.wall())) for i in range(3)]
    warnings = [r for r in logs.records if r["message"] == "the duplicate check cannot identify runs"]
    assert len(warnings) == 1
    assert warnings[0]["follows"] == "DATAFLOW_DEDUP_UNVERIFIABLE=submit: this container submits them anyway"
    submitted = [r for r in logs.records if r["message"] == "submitted"]
    assert [r.get("dedupUnverifiable") for r in submitted] == [None, True, True, True]
    assert all(len(result["submitted"]) == 1 for result in results)


def test_the_reading_learned_is_logged_once_per_container_and_job(clock: FakeClock, logs: Any) -> None:
    with service(clock, "name/value items", create_echo=False) as api:
        launcher = container(clock)
        for index in range(3):
            result_of(launcher, defaults(api), upload(f"incoming/{index}.csv", at=clock.wall()))
    readings = [(r["answer"], r["echo"]) for r in logs.records if r["message"] == "service reading"]
    # The create answer echoes nothing (as the seed page's example does); the list echoes the items in full.
    assert readings == [("create", "none"), ("list", "items")]


def seed(api: Emulator, count: int, *, minutes_before: float, clock: FakeClock) -> None:
    """`count` runs of other events, the newest `minutes_before` minutes before now, one a minute."""
    for index in range(count):
        at = clock.wall() - 60 * (minutes_before + count - index)
        parameters = {"$input": f"raw-data/old/{index}.csv", "$dedup": f"old-key-{index}"}
        api.plant(JOB, at, "COMPLETED", parameters, execution_id=f"old{index:04d}")


SHAPES = {
    "newest first, count of the page": {"count_means": "page"},
    "oldest first, total count": {"newest_first": False},
    "oldest first, no count": {"newest_first": False, "count_means": "missing"},
    "oldest first, count as a string": {"newest_first": False, "count_means": "string"},
    "oldest first, count of the page": {"newest_first": False, "count_means": "page"},
    "a limit the service caps at 20": {"newest_first": False, "limit_cap": 20},
}


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_a_redelivery_is_a_duplicate_in_every_listing_shape(clock: FakeClock, shape: str) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, **SHAPES[shape]) as api:  # type: ignore[arg-type]
        seed(api, 150, minutes_before=5, clock=clock)
        config = defaults(api, DATAFLOW_DEDUP_PARAMETER="$dedup")
        event = upload("incoming/a.csv", at=clock.wall() - 3600)  # an hour-old event: its run is deep in the list
        result_of(container(clock), config, event)
        clock.advance(60)
        again = result_of(container(clock), config, event)
        assert again["skipped"][0]["reason"] == "duplicate", again
        assert len(api.all_executions()) == 151


def test_runs_pruned_while_paging_oldest_first_do_not_hide_a_redelivery(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, newest_first=False, count_means="missing") as api:
        seed(api, 150, minutes_before=5, clock=clock)
        config = defaults(api, DATAFLOW_DEDUP_PARAMETER="$dedup")
        event = upload("incoming/a.csv", at=clock.wall() - 3600)
        result_of(container(clock), config, event)
        api.prune_after_page = 0  # retention deletes the oldest run while the lookup pages
        clock.advance(60)
        again = result_of(container(clock), config, event)
        assert again["skipped"][0]["reason"] == "duplicate"
        assert len(api.posts) == 1


@pytest.mark.parametrize(
    ("shape", "options", "reason"),
    [
        ("an answer without a list", {"omit_list": True}, "without a list"),
    ],
)
def test_a_listing_that_cannot_cover_the_window_never_starts_a_second_run_with_fail(
    clock: FakeClock, shape: str, options: dict[str, Any], reason: str
) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        seed(api, 150, minutes_before=5, clock=clock)
        config = defaults(api, DATAFLOW_DEDUP_PARAMETER="$dedup", DATAFLOW_DEDUP_UNVERIFIABLE="fail")
        event = upload("incoming/a.csv", at=clock.wall() - 3600)
        result_of(container(clock), config, event)
        for name, value in options.items():
            setattr(api, name, value)
        clock.advance(60)
        again = result_of(container(clock), config, event)
        [failed] = again["failed"]
        assert failed["code"] == "unknown-outcome" and reason in failed["error"], shape
        assert len(api.posts) == 1


def test_an_event_stamped_ahead_of_the_clock_is_found_by_its_key_later(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        config = defaults(api, DATAFLOW_DEDUP_PARAMETER="$dedup")
        event = upload("incoming/a.csv", at=clock.wall() + 600)  # the source's clock is ten minutes ahead
        result_of(container(clock), config, event)
        clock.advance(120)  # redelivered two minutes later: still before the event's own time
        again = result_of(container(clock), config, event)
        assert again["skipped"][0]["reason"] == "duplicate"
        assert len(api.all_executions()) == 1
