"""A hostile review of the one reader: each defect it found, as it reproduced it through the emulator."""

from __future__ import annotations

import json
from typing import Any

from emulator.server import Emulator, Received
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


def test_a_run_started_elsewhere_during_the_batch_is_seen_before_its_events_create(clock: FakeClock) -> None:
    # A listing serves the questions asked before it was read, and for a second after: a create that takes
    # longer than that (here two seconds) leaves the next event to read what another container started.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        at = clock.wall() - 30
        planted: list[dict[str, Any]] = []

        def elsewhere(request: Received) -> None:
            # While this container creates a.csv's run, another one (b.csv's duplicate message) creates b's.
            if request.method == "POST" and not planted:
                planted.append(api.plant(JOB, None, "READY", {"$input": "raw-data/incoming/b.csv"}))
                clock.advance(2)

        api.on_request = elsewhere
        config = settings(api, DATAFLOW_MAX_CONCURRENCY="1")
        batch = sqs_batch([upload("incoming/a.csv", at=at), upload("incoming/b.csv", at=at)])
        out = result_of(container(clock), config, batch)
        assert planted
        assert runs_of(api).count("raw-data/incoming/b.csv") == 1, out


def test_pages_that_shifted_twice_are_not_proof_of_absence(clock: FakeClock) -> None:
    # The newest run leaves after page 0, a new one comes after page 1, on every read: "cannot tell",
    # never "absent" (with fail, the event is kept instead of started twice).
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        event_at = clock.wall() - 3000
        for index in range(100):
            api.plant(JOB, event_at - 100 + index * 0.5, "COMPLETED", {"$input": f"raw-data/old/{index}"})
        api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
        for index in range(100):
            api.plant(JOB, event_at + 10 + index * 10, "COMPLETED", {"$input": f"raw-data/new/{index}"})

        def shift(request: Received) -> None:
            if request.method != "GET" or not request.path.split("?")[0].endswith("/executions"):
                return
            if request.query.get("page") == ["0"]:
                with api.lock:
                    api.vanished.append(api.executions[JOB].pop())
            elif request.query.get("page") == ["1"]:
                api.plant(JOB, None, "READY", {"$input": "raw-data/other/x"})

        api.on_request = shift
        out = result_of(
            container(clock), settings(api, DATAFLOW_DEDUP_UNVERIFIABLE="fail"), upload("incoming/a.csv", at=event_at)
        )
        api.on_request = None
        assert runs_of(api).count("raw-data/incoming/a.csv") == 1, out
        assert [entry["code"] for entry in out["failed"]] in ([], ["unknown-outcome"])


def test_a_burst_in_the_kept_tops_second_is_read_past_page_0(clock: FakeClock) -> None:
    # The top flip puts a kept run first on page 0: the refresh still reads down past the kept top's second.
    for count_means in ("total", "page"):
        with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, flip_top=True, count_means=count_means) as api:
            second = float(int(clock.wall())) - 20
            for index in range(50):
                api.plant(JOB, second - 100 + index, "COMPLETED", {"$input": f"raw-data/old/{index}"})
            for index in range(5):
                api.plant(JOB, second, "COMPLETED", {"$input": f"raw-data/burst-a/{index}"})
            api.plant(JOB, second, "COMPLETED", {"$input": "raw-data/incoming/w.csv"}, execution_id="W")
            warm = container(clock)  # its first event is a duplicate: it keeps the listing, creates nothing
            assert result_of(warm, settings(api), upload("incoming/w.csv", at=second - 1))["skipped"]
            api.plant(JOB, second, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
            for index in range(150):
                api.plant(JOB, second, "COMPLETED", {"$input": f"raw-data/burst-b/{index}"})
            clock.advance(2)  # a later invocation
            out = result_of(warm, settings(api), upload("incoming/a.csv", at=second - 1))
            assert runs_of(api).count("raw-data/incoming/a.csv") == 1, (count_means, out)


def test_a_run_whose_page_was_read_once_is_told_apart_after_a_whole_read(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, list_echo="none") as api:
        warm = container(clock)
        at = clock.wall()
        api.plant(JOB, at - 60, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="A_RUN")
        # b.csv was uploaded before a's run: the check reads A_RUN's own page and tells it apart.
        assert result_of(warm, settings(api), upload("incoming/b.csv", at=at - 90))["submitted"]
        clock.advance(5)
        # An older redelivery reaches further back than the kept runs: the window is read whole, anew.
        assert result_of(warm, settings(api), upload("incoming/c.csv", at=at - 600))["submitted"]
        clock.advance(5)
        out = result_of(warm, settings(api), upload("incoming/a.csv", at=at - 65))
        assert runs_of(api).count("raw-data/incoming/a.csv") == 1, out


def test_a_deferred_batch_costs_one_listing_not_a_page_per_run_per_event(clock: FakeClock) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        for index in range(5):
            api.plant(JOB, clock.wall() - 60 - index, "RUNNING", {"$input": f"going/{index}"})
        route = {"name": "r", "match": {"source": "object"}, "jobId": JOB, "maxRunning": 5, "parameters": {}}
        config = connected(api.url, DATAFLOW_ROUTES=json.dumps([route]))
        batch = sqs_batch([upload(f"in/{index}.csv", at=clock.wall() - 10) for index in range(40)])
        out = result_of(container(clock), config, batch)
        assert len(out["failed"]) == 40 and {f["code"] for f in out["failed"]} == {"deferred"}
        own = [r for r in api.received if r.method == "GET" and "/executions/" in r.path]
        assert own == []


def test_a_redelivered_coalesced_batch_is_covered_by_its_run_where_only_its_page_echoes(clock: FakeClock) -> None:
    route = {
        "name": "files",
        "match": {"source": "object", "prefix": "in/"},
        "jobId": JOB,
        "parameters": {"$bucket": "{bucket}"},
        "coalesce": {"parameter": "$files"},
    }
    for unverifiable in ("submit", "fail"):
        with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, list_echo="none") as api:
            config = connected(api.url, DATAFLOW_ROUTES=json.dumps([route]), DATAFLOW_DEDUP_UNVERIFIABLE=unverifiable)
            batch = sqs_batch([upload(f"in/{index}.csv", at=clock.wall() - 30) for index in range(5)])
            assert len(result_of(container(clock), config, batch)["submitted"]) == 1
            clock.advance(20)
            again = result_of(container(clock), config, batch)  # the batch redelivered to another container
            assert len(api.all_executions()) == 1, again
            assert again["failed"] == [] and len(again["skipped"]) == 5


def test_a_run_leaving_the_top_between_pages_hides_no_other_in_any_count_reading(clock: FakeClock) -> None:
    # Without a total to tell, page 0 read again shows the run that left: the window is read again.
    for count_means in ("total", "page", "missing"):
        with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, vanish_after_page=0, count_means=count_means) as api:
            event_at = clock.wall_now - 3000
            for index in range(100):
                api.plant(JOB, event_at - 100 + index * 0.5, "COMPLETED", {"$input": f"raw-data/old/{index}"})
            api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
            for index in range(100):
                api.plant(JOB, event_at + 10 + index * 10, "COMPLETED", {"$input": f"raw-data/new/{index}"})
            out = result_of(container(clock), settings(api), upload("incoming/a.csv", at=event_at))
            assert [skip["jobExecutionId"] for skip in out["skipped"]] == ["MINE"], count_means


def test_a_run_listed_late_is_found_by_a_warm_container_where_the_service_gives_no_total(clock: FakeClock) -> None:
    # Without a total to tell, a refresh reads 5 s below the newest run it kept: a run listed there late
    # (its create committed after newer ones) sends it to a whole read, so the redelivery is a duplicate.
    for count_means in ("page", "missing"):
        with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, count_means=count_means) as api:
            for index in range(300):
                api.plant(JOB, clock.wall_now - 20_000 + index * 10, "COMPLETED", {"$input": f"raw-data/old/{index}"})
            event_at = clock.wall_now - 4
            api.plant(JOB, event_at + 1, "COMPLETED", {"$input": "raw-data/incoming/a.csv"}, execution_id="MINE")
            api.hide(JOB, "MINE")
            for index in range(250):  # listed before it, though created after it: pages of them, in 4 s
                api.plant(JOB, event_at + 1 + index * 0.012, "COMPLETED", {"$input": f"raw-data/burst/{index}"})
            warm = container(clock)
            assert result_of(warm, settings(api), upload("incoming/warm-up.csv", at=event_at - 10))["submitted"]
            for index in range(50):
                api.plant(JOB, clock.wall_now + 1 + index * 0.01, "COMPLETED", {"$input": f"raw-data/new/{index}"})
            api.reveal(JOB, "MINE")
            clock.advance(10)
            out = result_of(warm, settings(api), upload("incoming/a.csv", at=event_at))
            assert [skip["jobExecutionId"] for skip in out["skipped"]] == ["MINE"], count_means
