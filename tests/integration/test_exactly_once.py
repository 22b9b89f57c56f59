"""Lost answers and redeliveries into warm and cold containers start one execution, never two."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from emulator.server import Emulator, Fault
from handler.exactly_once import DedupMemory
from handler.launcher import Launcher
from handler.wiring import Wiring
from tests.conftest import FakeClock, JsonLines, load_event, lose_the_answer_and_the_lookup, result_of

IDENTIFYING = '{"$input": "{bucket}/{key}"}'


def run(launcher: Launcher, config: dict[str, str], event: Any) -> dict[str, Any]:
    return result_of(launcher, config, event)


@pytest.fixture
def identifying(config: dict[str, str]) -> dict[str, str]:
    return config | {"DATAFLOW_PARAMETERS": IDENTIFYING, "DATAFLOW_DEDUP_PARAMETER": "$dedup"}


@pytest.mark.parametrize("check", ["always", "ambiguous"])
def test_lost_answer_then_redelivery_to_the_same_container_starts_one_run(
    launcher: Launcher, identifying: dict[str, str], emulator: Emulator, check: str
) -> None:
    identifying["DATAFLOW_DEDUP_CHECK"] = check
    lose_the_answer_and_the_lookup(emulator)
    first = run(launcher, identifying, load_event("s3-put.json"))
    assert first["failed"][0]["error"].startswith("unknown-outcome: the connection dropped after the request was sent")
    again = run(launcher, identifying, load_event("s3-put.json"))
    [execution] = emulator.all_executions()
    [skip] = again["skipped"]
    assert skip["reason"] == "duplicate"
    assert skip["jobExecutionId"] == execution["jobExecutionId"]
    assert len(emulator.posts) == 1


def test_lost_answer_then_redelivery_to_a_cold_container_starts_one_run(
    clock: FakeClock, identifying: dict[str, str], emulator: Emulator
) -> None:
    lose_the_answer_and_the_lookup(emulator)
    run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    again = run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    [execution] = emulator.all_executions()
    assert again["skipped"][0]["jobExecutionId"] == execution["jobExecutionId"]
    assert len(emulator.posts) == 1


def test_always_skips_a_cold_container_redelivery_with_the_existing_id(
    clock: FakeClock, identifying: dict[str, str], emulator: Emulator
) -> None:
    first = run(Launcher(Wiring(clock.clocks())), identifying, load_event("sqs-s3.json"))
    again = run(Launcher(Wiring(clock.clocks())), identifying, load_event("sqs-s3.json"))
    assert len(emulator.all_executions()) == 1
    assert again["submitted"] == []
    [skip] = again["skipped"]
    assert skip["reason"] == "duplicate"
    assert skip["jobExecutionId"] == first["submitted"][0]["jobExecutionId"]
    assert skip["dedupKey"] == first["submitted"][0]["dedupKey"]
    assert again["batchItemFailures"] == first["batchItemFailures"]  # the sample's unparseable message


def test_one_key_uploaded_twice_is_two_runs_never_a_false_duplicate(
    clock: FakeClock, identifying: dict[str, str], emulator: Emulator
) -> None:
    first, second = load_event("s3-put.json"), load_event("s3-put.json")
    second["Records"][0]["s3"]["object"] |= {"sequencer": "0055AED6DCD90281F9", "eTag": "another"}
    run(Launcher(Wiring(clock.clocks())), identifying, first)
    again = run(Launcher(Wiring(clock.clocks())), identifying, second)
    # Equal parameters, but two uploads: the check before submitting trusts only the dedupParameter.
    assert again["skipped"] == []
    assert [execution["parsedParameters"]["$input"] for execution in emulator.all_executions()] == [
        "raw-data/incoming/orders/2026-11-27 batch+1.csv"
    ] * 2


def test_without_a_dedup_parameter_a_redelivery_to_a_cold_container_is_covered_by_its_run(
    clock: FakeClock, identifying: dict[str, str], emulator: Emulator
) -> None:
    identifying["DATAFLOW_DEDUP_PARAMETER"] = ""
    first = run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    again = run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    assert [request.method for request in emulator.received] == ["GET", "POST", "GET"]
    [skip] = again["skipped"]
    assert (skip["reason"], skip["jobExecutionId"]) == ("duplicate", first["submitted"][0]["jobExecutionId"])


def test_ambiguous_does_not_look_before_a_first_submission(
    clock: FakeClock, identifying: dict[str, str], emulator: Emulator
) -> None:
    identifying["DATAFLOW_DEDUP_CHECK"] = "ambiguous"
    run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    assert [request.method for request in emulator.received] == ["POST", "POST"]  # what "ambiguous" leaves open


def test_a_dedup_parameter_carries_the_key_and_finds_the_run_without_other_echo(
    clock: FakeClock, config: dict[str, str]
) -> None:
    with Emulator(
        {"TESTACCESSKEY": "test-secret-key-never-logged"}, clock=clock.wall, echo_only=frozenset({"$dedup"})
    ) as api:
        config |= {
            "DATAFLOW_ENDPOINT": api.url,
            "DATAFLOW_DEDUP_PARAMETER": "$dedup",
            "DATAFLOW_PARAMETERS": '{"$a": "1"}',
        }
        first = run(Launcher(Wiring(clock.clocks())), config, load_event("s3-put.json"))
        again = run(Launcher(Wiring(clock.clocks())), config, load_event("s3-put.json"))
        [execution] = api.all_executions()
    assert execution["parsedParameters"] == {"$a": "1", "$dedup": first["submitted"][0]["dedupKey"]}
    assert again["skipped"][0]["jobExecutionId"] == execution["jobExecutionId"]


def test_a_two_xx_with_a_cut_body_is_a_submission_whose_id_the_lookup_finds(
    launcher: Launcher, identifying: dict[str, str], emulator: Emulator
) -> None:
    emulator.inject(Fault(cut=True, method="POST"))
    result = run(launcher, identifying, load_event("s3-put.json"))
    [execution] = emulator.all_executions()
    assert result["failed"] == []
    assert result["submitted"][0]["jobExecutionId"] == execution["jobExecutionId"]
    assert len(emulator.posts) == 1


def test_a_two_xx_that_is_not_an_execution_is_reconciled_not_counted(
    launcher: Launcher, identifying: dict[str, str], emulator: Emulator
) -> None:
    emulator.inject(Fault(status=200, raw=b"<html>proxy login</html>", method="POST"))
    result = run(launcher, identifying, load_event("s3-put.json"))
    # The lookup proves the HTML answer started nothing, so the request is sent once more.
    assert len(emulator.posts) == 2
    [execution] = emulator.all_executions()
    assert result["submitted"][0]["jobExecutionId"] == execution["jobExecutionId"]


def test_with_the_check_off_a_two_xx_that_is_not_an_execution_fails_as_bad_response(
    launcher: Launcher, identifying: dict[str, str], emulator: Emulator
) -> None:
    identifying["DATAFLOW_DEDUP_CHECK"] = "off"
    emulator.inject(Fault(status=200, raw=b"[1, 2]", method="POST"))
    result = run(launcher, identifying, load_event("s3-put.json"))
    assert result["submitted"] == []
    assert result["failed"][0]["error"].startswith("bad-response: HTTP 200 answer is not a JSON object")


def test_a_found_run_is_claimed_by_one_event_only() -> None:
    memory = DedupMemory(capacity=64)
    assert memory.claim("event-a", "E1") is True
    assert memory.claim("event-b", "E1") is False  # another event of this container holds it
    assert memory.claim("event-a", "E1") is True  # its owner may take it again
    assert memory.claim("event-b", "E2") is True
    start = threading.Barrier(8)
    won: list[str] = []

    def race(key: str) -> None:
        start.wait(timeout=5)
        if memory.claim(key, "E3"):
            won.append(key)

    threads = [threading.Thread(target=race, args=(f"racer-{index}",)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_the_dedup_memory_holds_under_concurrent_use() -> None:
    memory = DedupMemory(capacity=64)
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for index in range(2000):
                key = f"k{(offset + index) % 200}"
                memory.mark_ambiguous(key)
                memory.remember(key, f"E{offset}-{index}")
                memory.submitted(key)
                assert f"E{offset}-{index}" not in memory.others_than(key)
        except BaseException as exc:  # any error in a thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(memory._submitted) <= 64 and len(memory._owners) <= 64


def sqs_batch(keys: list[str]) -> dict[str, Any]:
    template = load_event("sqs-s3.json")["Records"][0]
    records = []
    for index, key in enumerate(keys):
        body = json.loads(template["body"])
        body["Records"][0]["s3"]["object"]["key"] = key
        records.append(template | {"messageId": f"m{index}", "body": json.dumps(body)})
    return {"Records": records}


def test_a_batch_is_submitted_concurrently_in_order_and_exactly_once(
    launcher: Launcher, identifying: dict[str, str], emulator: Emulator
) -> None:
    keys = [f"in/{index}.csv" for index in range(10)]
    emulator.inject(Fault(hold=0.2, times=10, method="POST"))  # each answer takes 200 ms
    batch = sqs_batch([*keys, keys[3]])  # the last message is a second delivery of the fourth
    started = time.monotonic()
    result = run(launcher, identifying, batch)
    spent = time.monotonic() - started
    assert spent < 1.5  # one after the other would take at least 2 s
    assert [entry["source"]["key"] for entry in result["submitted"]] == keys
    assert [(skip["reason"], skip["source"]["messageId"]) for skip in result["skipped"]] == [("duplicate", "m10")]
    assert result["skipped"][0]["jobExecutionId"] == result["submitted"][3]["jobExecutionId"]
    assert len(emulator.all_executions()) == 10
    assert result["batchItemFailures"] == []


def test_a_batch_reports_only_its_failed_messages(
    launcher: Launcher, identifying: dict[str, str], emulator: Emulator
) -> None:
    emulator.inject(Fault(status=400, body={"errorType": "bad-parameter", "detail": "no"}, method="POST"))
    result = run(launcher, identifying, sqs_batch([f"in/{index}.csv" for index in range(5)]))
    assert len(result["submitted"]) == 4
    [failure] = result["batchItemFailures"]
    assert failure["itemIdentifier"] == result["failed"][0]["source"]["messageId"]


def test_a_destination_record_replays_exactly_the_executions_of_its_original_event(
    clock: FakeClock, identifying: dict[str, str], emulator: Emulator
) -> None:
    record = load_event("lambda-destination-record.json")
    assert record["requestPayload"] == load_event("s3-put.json")
    original = run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    replayed = run(Launcher(Wiring(clock.clocks())), identifying, record)  # a cold container, as a replay is
    assert [skip["dedupKey"] for skip in replayed["skipped"]] == [entry["dedupKey"] for entry in original["submitted"]]
    assert {skip["reason"] for skip in replayed["skipped"]} == {"duplicate"}
    emulator.executions.clear()
    fresh = run(Launcher(Wiring(clock.clocks())), identifying, record)  # the original never ran: now it does
    assert [entry["dedupKey"] for entry in fresh["submitted"]] == [entry["dedupKey"] for entry in original["submitted"]]
    assert len(emulator.all_executions()) == 1


def test_an_unknown_outcome_is_replay_safe_only_with_a_dedup_parameter(
    launcher: Launcher, identifying: dict[str, str], emulator: Emulator
) -> None:
    lose_the_answer_and_the_lookup(emulator)
    entry = run(launcher, identifying, load_event("s3-put.json"))["failed"][0]
    assert entry["retryable"] is True  # any container looks for the $dedup value before resubmitting


def test_a_submission_record_times_the_whole_decision_lookup_included(
    clock: FakeClock, identifying: dict[str, str], emulator: Emulator, logs: JsonLines
) -> None:
    # The lookup takes 1 s and the POST 0.5 s: the record says 1.5 s, not only the POST's share.
    emulator.on_request = lambda request: clock.advance(1.0 if request.method == "GET" else 0.5)
    run(Launcher(Wiring(clock.clocks())), identifying, load_event("s3-put.json"))
    [submitted] = [r for r in logs.records if r["message"] == "submitted"]
    assert submitted["elapsedMs"] == 1500.0
    assert submitted["lookups"] == ["absent (0 executions in the window)"]
    assert [r["message"] for r in logs.records if r["message"] != "service reading"] == ["submitted"]
