"""Issue 22's findings, each as a user met it through the emulator: every read of a job's runs goes through one reader."""

from __future__ import annotations

import json
from typing import Any

from emulator.server import Emulator, Fault, Received
from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeClock,
    connected,
    container,
    result_of,
    runs_of,
    sqs_batch,
    upload,
)

JOB = "J1"
INPUT = '{"$input": "{bucket}/{key}"}'


def settings(api: Emulator, **more: str) -> dict[str, str]:
    return connected(api.url, DATAFLOW_JOB_ID=JOB, DATAFLOW_PARAMETERS=INPUT, **more)


def guarded(api: Emulator, max_running: int) -> dict[str, str]:
    """One object route with maxRunning."""
    route = {"name": "r", "match": {"source": "object"}, "jobId": JOB, "maxRunning": max_running, "parameters": {}}
    return connected(api.url, DATAFLOW_ROUTES=json.dumps([route | {"parameters": json.loads(INPUT)}]))


def plant_others(api: Emulator, count: int, start: float, step: float, status: str = "COMPLETED") -> None:
    for index in range(count):
        api.plant(JOB, start + index * step, status, {"$input": f"raw-data/other/{start}-{index}"})


def test_max_running_counts_a_busy_jobs_last_hours_and_admits(clock: FakeClock) -> None:
    # Finding 1: 1,300 finished runs in the last 5 hours and none running: maxRunning 5 admits the upload.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        plant_others(api, 1300, clock.wall_now - 5 * 3600, 13.0)
        out = result_of(container(clock), guarded(api, 5), upload("in/a.csv", at=clock.wall()))
        assert len(out["submitted"]) == 1 and out["failed"] == []
        assert sum(request.method == "GET" for request in api.received) == 13  # 1,300 runs in pages of 100


def test_a_top_of_page_flip_does_not_turn_the_listing_oldest_first(clock: FakeClock) -> None:
    # Finding 5: in a burst, page 0's top run is a second older than the rest: still newest first.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, flip_top=True) as api:
        plant_others(api, 300, clock.wall_now - 86_000, 10.0)
        event_at = clock.wall_now - 60
        api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
        api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/other/x"}, execution_id="X")
        plant_others(api, 120, event_at + 2, 0.001)
        out = result_of(container(clock), settings(api), upload("incoming/a.csv", at=event_at))
        assert [skip["jobExecutionId"] for skip in out["skipped"]] == ["MINE"]
        assert runs_of(api).count("raw-data/incoming/a.csv") == 1


def test_a_late_run_is_found_by_a_warm_container(clock: FakeClock) -> None:
    # Finding 6: a run listed only after newer ones: a warm container reusing its kept listing must see it.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        plant_others(api, 300, clock.wall_now - 20_000, 10.0)
        event_at = clock.wall_now - 100
        api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
        api.hide(JOB, "MINE")
        plant_others(api, 150, event_at + 2, 0.5)  # listed before it, though created after it
        warm = container(clock)
        assert result_of(warm, settings(api), upload("incoming/warm-up.csv", at=event_at - 10))["submitted"]
        plant_others(api, 50, clock.wall_now + 1, 0.01)
        api.reveal(JOB, "MINE")
        clock.advance(10)
        out = result_of(warm, settings(api), upload("incoming/a.csv", at=event_at))
        assert [skip["jobExecutionId"] for skip in out["skipped"]] == ["MINE"]


def test_a_run_leaving_the_top_between_two_pages_hides_no_other(clock: FakeClock) -> None:
    # Finding 6: the newest run goes between the page 0 and page 1 reads; ours, first on page 1, moves up.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, vanish_after_page=0) as api:
        event_at = clock.wall_now - 3000
        plant_others(api, 100, event_at - 100, 0.5)
        api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
        plant_others(api, 100, event_at + 10, 10.0)
        out = result_of(container(clock), settings(api), upload("incoming/a.csv", at=event_at))
        assert [skip["jobExecutionId"] for skip in out["skipped"]] == ["MINE"]
        assert len(api.vanished) == 1


def coalescing(**more: Any) -> dict[str, Any]:
    return {
        "name": "files",
        "match": {"source": "object", "prefix": "in/"},
        "jobId": JOB,
        "parameters": {"$bucket": "{bucket}"},
        "coalesce": {"parameter": "$files"},
        **more,
    }


def nightly() -> dict[str, Any]:
    return {
        "name": "nightly",
        "match": {"source": "schedule"},
        "jobId": JOB,
        "parameters": {"$date": "{time:%Y-%m-%d}"},
    }


def test_a_sibling_routes_run_does_not_fail_a_coalesced_batch(clock: FakeClock) -> None:
    # Finding 3: the schedule route's run on the same job (it sends $date, never $files) covers no file.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        api.plant(JOB, clock.wall_now - 30, "RUNNING", {"$date": "2026-12-06"}, execution_id="NIGHTLY")
        config = connected(
            api.url, DATAFLOW_ROUTES=json.dumps([coalescing(), nightly()]), DATAFLOW_DEDUP_UNVERIFIABLE="fail"
        )
        batch = sqs_batch([upload(f"in/{index}.csv", at=clock.wall() - 60) for index in range(50)])
        out = result_of(container(clock), config, batch)
        assert out["failed"] == [] and len(out["submitted"]) == 1


def test_one_old_member_of_a_coalesced_batch_fails_alone(clock: FakeClock) -> None:
    # Finding 4: one message redriven 60 h late, more runs in its span than a read may take: it alone fails.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        plant_others(api, 10_300, clock.wall_now - 59 * 3600, 20.0)
        config = connected(
            api.url,
            DATAFLOW_ROUTES=json.dumps([coalescing()]),
            DATAFLOW_DEDUP_UNVERIFIABLE="fail",
            DATAFLOW_DEDUP_WINDOW_HOURS="72",
        )
        fresh = [upload(f"in/{index}.csv", at=clock.wall() - 30) for index in range(99)]
        old = upload("in/old.csv", at=clock.wall() - 60 * 3600)
        out = result_of(container(clock), config, sqs_batch([*fresh, old]))
        assert len(out["submitted"]) == 1 and out["submitted"][0]["objects"] == 99
        assert [entry["source"]["key"] for entry in out["failed"]] == ["in/old.csv"]


def test_where_only_a_runs_own_page_echoes_the_check_stays_exact(clock: FakeClock, logs: Any) -> None:
    # The reading of getJobExecution: the list echoes nothing, a run's own page echoes its parameters.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, list_echo="none") as api:
        config = settings(api, DATAFLOW_DEDUP_UNVERIFIABLE="fail")
        event = upload("incoming/a.csv", at=clock.wall())
        assert result_of(container(clock), config, event)["submitted"]
        clock.advance(30)
        other = result_of(container(clock), config, upload("incoming/b.csv", at=clock.wall()))
        again = result_of(container(clock), config, event)
        assert len(other["submitted"]) == 1  # the first run is older than b's upload: not in its window
        assert [skip["reason"] for skip in again["skipped"]] == ["duplicate"]
        assert len(api.all_executions()) == 2
        pages = [request for request in api.received if request.method == "GET" and "/executions/" in request.path]
        assert len(pages) == 2  # the redelivery's window holds both runs: each one's page, read once


def test_a_read_that_fails_before_anything_was_sent_says_so(clock: FakeClock) -> None:
    # Finding 8: a failed GET was reported as "unknown-outcome ... the execution may exist".
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        api.inject(Fault(drop=True, method="GET", times=10))
        out = result_of(container(clock), settings(api), upload("incoming/a.csv", at=clock.wall()))
        [failed] = out["failed"]
        assert failed["code"] == "lookup-failed" and failed["retryable"] is True
        assert "may exist" not in failed["error"] and "nothing was sent" in failed["error"]
        assert api.posts == []


def test_an_unclear_refusal_at_the_jobs_own_limit_is_deferred_by_the_runs_going(clock: FakeClock) -> None:
    # maxConcurrentRuns: a 400 bad-state whose words say neither; the job's limit against its runs going does.
    with Emulator(
        {ACCESS_KEY: SECRET_KEY}, clock=clock.wall, max_concurrent_runs={JOB: 1}, limit_detail="request rejected"
    ) as api:
        api.plant(JOB, clock.wall_now - 600, "RUNNING", {"$input": "raw-data/other/long"})
        out = result_of(container(clock), settings(api), upload("incoming/a.csv", at=clock.wall()))
        [failed] = out["failed"]
        assert (failed["code"], failed["retryable"]) == ("deferred", True)
        assert "1 READY or RUNNING runs are at its maxConcurrentRuns 1" in failed["error"]
        api.finish(JOB)
        again = result_of(container(clock), settings(api), upload("incoming/a.csv", at=clock.wall()))
        assert len(again["submitted"]) == 1


def test_an_unclear_refusal_of_a_job_under_its_limit_stays_permanent(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, job_status={JOB: "STOPPED"}) as api:
        api.inject(Fault(status=400, body={"errorType": "bad-state", "detail": "request rejected"}, method="POST"))
        out = result_of(container(clock), settings(api), upload("incoming/a.csv", at=clock.wall()))
        [failed] = out["failed"]
        assert (failed["code"], failed["retryable"]) == ("bad-state", False)


def test_one_listing_serves_every_event_of_an_invocation(clock: FakeClock) -> None:
    # Finding 9: each event read the job's listing again (pages 1-11 thousands of times in a burst).
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        plant_others(api, 3000, clock.wall_now - 3000, 0.9)
        warm = container(clock)
        batch = sqs_batch([upload(f"incoming/{index}.csv", at=clock.wall() - 60) for index in range(50)])
        assert len(result_of(warm, settings(api), batch)["submitted"]) == 50
        gets = [request for request in api.received if request.method == "GET"]
        assert len(gets) == 1  # the window (the last minute) whole, once: page 0 already reaches before it
        clock.advance(30)
        api.received.clear()
        plant_others(api, 20, clock.wall_now - 10, 0.1)  # another container's runs meanwhile
        again = sqs_batch([upload(f"incoming/more-{index}.csv", at=clock.wall() - 5) for index in range(50)])
        assert len(result_of(warm, settings(api), again)["submitted"]) == 50
        assert [request.query["page"] for request in api.received if request.method == "GET"] == [["0"]]


def test_runs_created_between_two_pages_by_another_container_are_neither_lost_nor_doubled(clock: FakeClock) -> None:
    # Finding 10: creates of other containers between two page reads push runs across the boundary.
    def others_create(request: Received) -> None:
        if request.method == "GET" and request.query.get("page") == ["1"]:
            for index in range(3):
                api.plant(JOB, clock.wall_now, "RUNNING", {"$input": f"raw-data/pushed/{index}"})

    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, on_request=others_create) as api:
        event_at = clock.wall_now - 600
        api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
        plant_others(api, 99, event_at + 2, 1.0, status="RUNNING")  # ours last on page 0, then pushed to page 1
        out = result_of(container(clock), guarded(api, 200), upload("incoming/a.csv", at=event_at))
        assert [skip["jobExecutionId"] for skip in out["skipped"]] == ["MINE"]
        deferred = result_of(container(clock), guarded(api, 99), upload("incoming/new.csv", at=clock.wall()))
        # Every run going counted once, but the last three: created after page 0 was read, they are above it.
        assert f"the job has {len(api.going(JOB)) - 3} executions" in deferred["failed"][0]["error"]


def test_a_guarded_batch_counts_from_one_read_without_asking_each_run(clock: FakeClock) -> None:
    # The runs going that one read showed are counted as it showed them, by every event of the invocation.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        plant_others(api, 5, clock.wall_now - 600, 10.0, status="RUNNING")
        batch = sqs_batch([upload(f"incoming/{index}.csv", at=clock.wall()) for index in range(10)])
        out = result_of(container(clock), guarded(api, 12), batch)
        assert len(out["submitted"]) == 7 and {entry["code"] for entry in out["failed"]} == {"deferred"}
        assert [
            request.path.split("?")[0].rsplit("/", 1)[-1] for request in api.received if request.method == "GET"
        ] == ["executions"]
