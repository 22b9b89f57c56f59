"""The review's defects, each as the user met it: through the emulator, with the defaults unless the defect needs more."""

from __future__ import annotations

import json
from typing import Any

from emulator.server import Emulator, Fault, dataflow_error, gateway_error
from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeClock,
    cli,
    connected,
    container,
    lose_the_answer_and_the_lookup,
    result_of,
    runs_of,
    sqs_batch,
    upload,
)

JOB = "J1"


def settings(api: Emulator, routes: list[dict[str, Any]] | None = None, **more: str) -> dict[str, str]:
    config = connected(api.url, **more)
    if routes is None:
        return {"DATAFLOW_JOB_ID": JOB, "DATAFLOW_PARAMETERS": '{"$input": "{bucket}/{key}"}', **config}
    return {"DATAFLOW_ROUTES": json.dumps(routes), **config}


def coalescing(name: str, **parameters: str) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"source": "object"},
        "jobId": JOB,
        "parameters": parameters,
        "coalesce": {"parameter": "$files"},
    }


def fail_first_post(api: Emulator) -> None:
    """The first create is refused (400 bad-state), every later one goes through."""
    api.inject(Fault(status=400, body=dataflow_error("bad-state", "busy"), method="POST"))


def test_a_redelivery_finds_its_run_on_the_first_page_though_hundreds_came_after(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        event = upload("incoming/a.csv", at=clock.wall_now - 3 * 3600)  # a queue backlog of three hours
        for index in range(520):
            api.plant(JOB, clock.wall_now - 3 * 3600 + 10 + 20 * index, "COMPLETED", {"$input": f"raw-data/o/{index}"})
        assert result_of(container(clock), settings(api), event)["submitted"]
        clock.advance(60)
        again = result_of(container(clock), settings(api), event)
        assert [skip["reason"] for skip in again["skipped"]] == ["duplicate"]
        assert runs_of(api).count("raw-data/incoming/a.csv") == 1


def test_max_running_counts_runs_started_long_before_the_event(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        route = {"name": "r", "match": {"source": "object"}, "jobId": JOB, "maxRunning": 2}
        route["parameters"] = {"$input": "{bucket}/{key}"}
        api.plant(JOB, clock.wall_now - 7200, "RUNNING", {"$input": "a"})
        api.plant(JOB, clock.wall_now - 7100, "RUNNING", {"$input": "b"})
        for index in range(100):
            api.plant(JOB, clock.wall_now - 3600 + 30 * index, "COMPLETED", {"$input": f"c{index}"})
        out = result_of(container(clock), settings(api, [route]), upload("incoming/new.csv", at=clock.wall_now))
        assert [failure["code"] for failure in out["failed"]] == ["deferred"]
        assert len(api.going(JOB)) == 2


def test_two_coalescing_routes_on_one_job_each_run_once_when_one_was_refused(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        config = settings(api, [coalescing("full", **{"$mode": "full"}), coalescing("delta", **{"$mode": "delta"})])
        config["DATAFLOW_MAX_CONCURRENCY"] = "1"
        fail_first_post(api)
        batch = sqs_batch([upload("incoming/x.csv", at=clock.wall_now - 10)])
        first = result_of(container(clock), config, batch)
        assert len(first["submitted"]) == 1 and len(first["failed"]) == 1
        clock.advance(30)
        again = result_of(container(clock), config, batch)
        assert [entry["route"] for entry in again["submitted"]] == [first["failed"][0]["route"]]
        assert sorted(runs_of(api, "$mode")) == ["delta", "full"]


def test_a_coalesced_create_whose_answer_and_lookup_were_lost_is_looked_up_again(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        config = settings(api, [coalescing("c")], DATAFLOW_DEDUP_CHECK="ambiguous")
        lose_the_answer_and_the_lookup(api, Fault(status=503, method="GET", times=10))
        batch = sqs_batch([upload(f"incoming/{name}.csv", at=clock.wall_now - 10) for name in "ab"])
        launcher = container(clock)
        first = result_of(launcher, config, batch)
        assert [f["code"] for f in first["failed"]] == ["unknown-outcome"]  # one entry for the group
        assert [item["itemIdentifier"] for item in first["batchItemFailures"]] == ["m0", "m1"]
        api.faults.clear()
        clock.advance(60)
        again = result_of(launcher, config, batch)  # the same warm container
        assert [skip["reason"] for skip in again["skipped"]] == ["duplicate", "duplicate"]
        assert len(api.posts) == 1


def test_a_create_answered_without_a_body_is_remembered_by_the_container(clock: FakeClock) -> None:
    for check, echo in (("off", "object"), ("always", "none")):
        with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo=echo) as api:
            config = settings(api, DATAFLOW_DEDUP_CHECK=check)
            api.inject(Fault(status=200, cut=True, execute=True, method="POST"))
            launcher, event = container(clock), upload("incoming/a.csv", at=clock.wall_now - 10)
            assert [entry["jobExecutionId"] for entry in result_of(launcher, config, event)["submitted"]] == [None]
            again = result_of(launcher, config, event)
            assert [skip["reason"] for skip in again["skipped"]] == ["duplicate"], (check, echo)
            assert len(api.all_executions()) == 1


def test_rerun_failed_takes_the_newest_run_of_a_step_on_an_oldest_first_service() -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, newest_first=False) as api:  # the real clock: the command signs with it
        now = api.clock()
        api.plant(JOB, now - 3 * 86400, "FAILED", {"$date": "2026-11-01"})
        for index in range(120):
            api.plant(JOB, now - 2 * 86400 + index, "COMPLETED", {"$date": f"other-{index}"})
        api.plant(JOB, now - 3600, "COMPLETED", {"$date": "2026-11-01"})  # the rerun that succeeded
        route = {"name": "nightly", "match": {"source": "schedule", "schedule": "nightly"}, "jobId": JOB}
        route["parameters"] = {"$date": "{time:%Y-%m-%d}"}
        done = cli(
            "backfill", "--route", "nightly", "--from", "2026-11-01", "--to", "2026-11-01", "--rerun-failed",
            env=settings(api, [route]),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert runs_of(api, "$date").count("2026-11-01") == 2 and not api.posts


def test_one_object_delivered_twice_in_a_batch_is_named_once(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        event = upload("incoming/a.csv", at=clock.wall_now - 10)
        batch = sqs_batch([event, upload("incoming/b.csv", at=clock.wall_now - 9), event])
        out = result_of(container(clock), settings(api, [coalescing("c")]), batch)
        assert runs_of(api, "$files") == ["incoming/a.csv,incoming/b.csv"]
        [entry] = out["submitted"]
        assert entry["keys"] == ["incoming/a.csv", "incoming/b.csv"] and out["batchItemFailures"] == []


def test_a_long_oldest_first_history_still_finds_the_newest_run(clock: FakeClock) -> None:
    for unverifiable in ("submit", "fail"):
        with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, newest_first=False, count_means="page") as api:
            for index in range(600):
                api.plant(JOB, clock.wall_now - 30 * 86400 + 60 * index, "COMPLETED", {"$input": f"raw-data/o/{index}"})
            config = settings(api, DATAFLOW_DEDUP_UNVERIFIABLE=unverifiable)
            event = upload("incoming/a.csv", at=clock.wall_now - 10)
            assert result_of(container(clock), config, event)["submitted"], unverifiable
            again = result_of(container(clock), config, event)
            assert [skip["reason"] for skip in again["skipped"]] == ["duplicate"], unverifiable
            assert runs_of(api).count("raw-data/incoming/a.csv") == 1


def test_a_route_sending_fewer_parameters_is_not_skipped_for_a_fuller_routes_run(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        plain = {"name": "plain", "match": {"source": "object"}, "jobId": JOB}
        plain["parameters"] = {"$input": "{bucket}/{key}"}
        full = {**plain, "name": "full", "parameters": {"$input": "{bucket}/{key}", "$mode": "full"}}
        config = {**settings(api, [plain, full]), "DATAFLOW_MAX_CONCURRENCY": "1"}
        fail_first_post(api)
        event = upload("incoming/a.csv", at=clock.wall_now - 10)
        assert [failure["route"] for failure in result_of(container(clock), config, event)["failed"]] == ["plain"]
        clock.advance(60)
        again = result_of(container(clock), config, event)
        assert [entry["route"] for entry in again["submitted"]] == ["plain"]
        assert [skip["route"] for skip in again["skipped"]] == ["full"]
        assert len(api.all_executions()) == 2


def test_a_retry_after_past_the_cap_fails_at_once_for_the_queue_to_wait(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        body = {"error": {"errorCode": "420", "message": "Rate Limited"}}
        api.inject(Fault(status=429, body=body, headers={"Retry-After": "30"}, times=10))
        config = settings(api, DATAFLOW_DEDUP_CHECK="off")
        out = result_of(container(clock), config, upload("incoming/a.csv", at=clock.wall_now), remaining_ms=60_000)
        [failure] = out["failed"]
        assert failure["retryable"] is True and "retry after 30 s" in failure["error"]
        assert len(api.received) == 1 and clock.sleeps == []


def test_a_not_found_after_a_lost_create_proves_nothing(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        lose_the_answer_and_the_lookup(api, Fault(status=404, body=gateway_error("300", "Not Found"), method="GET"))
        out = result_of(container(clock), settings(api), upload("incoming/a.csv", at=clock.wall_now - 5))
        assert [failure["code"] for failure in out["failed"]] == ["unknown-outcome"]
        assert len(api.all_executions()) == 1


def test_a_busy_window_read_whole_once_costs_later_lookups_page_0_only(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        for index in range(450):  # a burst's own runs since the events
            api.plant(JOB, clock.wall_now - 50 + index * 0.1, "COMPLETED", {"$input": f"raw-data/o/{index}"})
        launcher, config = container(clock), settings(api)

        def lists_for(key: str) -> tuple[int, dict[str, Any]]:
            before = sum(1 for request in api.received if request.method == "GET")
            out = result_of(launcher, config, upload(key, at=clock.wall_now - 60))
            return sum(1 for request in api.received if request.method == "GET") - before, out

        assert lists_for("incoming/a.csv")[0] == 5  # pages 0-4 of 100: the whole window
        assert lists_for("incoming/b.csv")[0] == 1  # page 0 only: a's run and b's come on top of it
        api.plant(JOB, clock.wall_now, "READY", {"$input": "raw-data/incoming/c.csv"}, execution_id="theirs")
        reads, out = lists_for("incoming/c.csv")  # another container ran c meanwhile: on top of page 0
        assert reads == 1 and [skip["jobExecutionId"] for skip in out["skipped"]] == ["theirs"]
        for index in range(150):  # more new runs than page 0 holds, all in the top's second: pages 0 and 1
            api.plant(JOB, clock.wall_now, "COMPLETED", {"$input": f"raw-data/p/{index}"})
        assert lists_for("incoming/d.csv")[0] == 2
        for index in range(400):  # a second more, 400 runs: the newest pages down to what was kept
            api.plant(JOB, clock.wall_now + 1, "COMPLETED", {"$input": f"raw-data/q/{index}"})
        # 1,004 runs, of which the newest 556 are new or in the kept top's second: pages 0-5, not 0-10
        assert lists_for("incoming/e.csv")[0] == 6
        assert runs_of(api).count("raw-data/incoming/d.csv") == runs_of(api).count("raw-data/incoming/e.csv") == 1
