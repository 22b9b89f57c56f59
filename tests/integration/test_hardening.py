"""A misbehaving server or network cannot hold, crash or mislead an invocation."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emulator.server import Emulator, Fault, gateway_error
from handler.clocks import Clocks
from handler.dataflow.client import DataflowClient, retry_after_seconds
from handler.dataflow.signing import Credentials
from handler.errors import RequestError
from handler.launcher import Launcher
from handler.wiring import Wiring
from tests.conftest import ACCESS_KEY, SECRET_KEY, FakeClock, JsonLines, load_event, result_of


def outcome(launcher: Launcher, config: dict[str, str], event: Any, remaining_ms: float = 30_000) -> dict[str, Any]:
    return result_of(launcher, config, event, remaining_ms=remaining_ms)


def test_a_dripping_server_cannot_hold_the_invocation_past_its_deadline(config: dict[str, str]) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:  # real clocks: this test is about real time
        config["DATAFLOW_ENDPOINT"] = api.url
        api.inject(Fault(drip=0.25, method="POST"))  # a valid answer, one byte every 250 ms
        started = time.monotonic()
        result = outcome(
            Launcher(Wiring(Clocks(sleep=lambda _: None))), config, load_event("schedule-classic.json"), 3_000
        )
        spent = time.monotonic() - started
    assert spent < 3.5
    [entry] = result["failed"]
    assert entry["error"].startswith("unknown-outcome: no complete answer within 2.")


def test_a_status_line_that_arrived_before_the_cut_off_counts_as_accepted(
    config: dict[str, str], logs: JsonLines
) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:
        config |= {"DATAFLOW_ENDPOINT": api.url, "DATAFLOW_DEDUP_CHECK": "off"}
        # The 17-byte status line in 0.4 s; the 165 bytes of headers would take 4.1 s, past the
        # attempt's 3.5 s (4 s left less the deadline margin): the cut falls inside the headers, and a
        # loaded machine that delays the status line has 3 s of slack before the test says nothing.
        api.inject(Fault(drip=0.025, method="POST"))
        started = time.monotonic()
        result = outcome(
            Launcher(Wiring(Clocks(sleep=lambda _: None))), config, load_event("schedule-classic.json"), 4_000
        )
        assert time.monotonic() - started < 4.0
        [execution] = api.all_executions()
    [entry] = result["submitted"]
    assert entry["jobExecutionId"] is None  # accepted, but its id was in the body that never came
    # Headers cut short parse as complete and the body as empty: only the cut-off says the body was lost.
    assert [record.get("bodyLost") for record in logs.records if record["message"] == "submitted"] == [True]
    assert execution["status"] == "READY"


def test_one_poisoned_message_fails_alone_in_an_sqs_batch(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    event = load_event("sqs-s3.json")
    good = event["Records"][0]
    records = []
    for index, size in enumerate(["10", "²", "11"]):
        body = json.loads(good["body"])
        body["Records"][0]["s3"]["object"] |= {"key": f"in/{index}.csv", "size": size}
        records.append(good | {"messageId": f"m{index}", "body": json.dumps(body)})
    result = result_of(launcher, config, {"Records": records})
    assert result["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    assert result["failed"][0]["error"].startswith("bad-event: Records[0].s3.object.size is string '²'")
    assert sorted(request.json["parameters"] == {} for request in emulator.posts) == [True, True]


def test_the_clock_offset_is_re_learned_in_either_direction(config: dict[str, str], clock: FakeClock) -> None:
    offset = [600.0]
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=lambda: clock.wall() + offset[0]) as api:
        config["DATAFLOW_ENDPOINT"] = api.url
        launcher = Launcher(Wiring(clock.clocks()))
        outcome(launcher, config, load_event("schedule-classic.json"))
        offset[0] = 0.0  # our host's clock was corrected: the learned offset is now wrong
        result = outcome(launcher, config, {"schedule": "other", "time": "2026-11-28T00:00:00Z"})
        # Each invocation: its lookup refused, re-signed and answered, then its create.
        assert [r.status for r in api.received] == [401, 200, 200, 401, 200, 200]
    assert result["failed"] == []


def test_an_authentication_failure_says_which_numbers_are_which_and_why(
    launcher: Launcher, config: dict[str, str], emulator: Emulator, logs: JsonLines
) -> None:
    config["NCLOUD_SECRET_KEY"] = "wrong-secret"
    result = outcome(launcher, config, load_event("schedule-classic.json"))
    assert result["failed"][0]["error"] == "200: HTTP 401 Authentication Failed (gateway code 200; signature mismatch)"
    [warning] = [record for record in logs.records if record["message"] == "authentication failed"]
    assert "wrong access key, wrong secret key" in warning["likelyCauses"]
    assert warning["gatewayClockOffsetSeconds"] == 0.0
    assert "wrong-secret" not in logs.text


class SilentServer:
    """Accepts TCP connections and never says a word: a TLS endpoint whose handshake never finishes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_tls_handshake_that_never_finishes_is_retried_like_a_refused_connection(
    launcher: Launcher, config: dict[str, str], silent_server: SilentServer
) -> None:
    config |= {"DATAFLOW_ENDPOINT": f"https://127.0.0.1:{silent_server.port}", "DATAFLOW_CONNECT_TIMEOUT": "0.2"}
    result = outcome(launcher, config, load_event("schedule-classic.json"))
    [entry] = result["failed"]
    assert re.fullmatch(r"tls: the TLS handshake did not finish after 0\.\d\ds; nothing was sent", entry["error"])
    assert entry["retryable"] is True
    assert len(silent_server.accepted) == 4  # every attempt, as for a refused connection


def test_a_schedule_that_starts_nothing_is_a_warning_naming_the_known_schedules(
    launcher: Launcher, config: dict[str, str], logs: JsonLines
) -> None:
    del config["DATAFLOW_JOB_ID"]
    config["DATAFLOW_ROUTES"] = json.dumps(
        [{"name": "n", "match": {"source": "schedule", "schedule": "nightly"}, "jobId": "J1"}]
    )
    result = outcome(launcher, config, {"schedule": "Nightly", "time": "2026-11-28T00:00:00Z"})
    assert result["skipped"][0]["reason"] == "no-route"
    [warning] = [record for record in logs.records if record["message"] == "schedule started nothing"]
    assert warning["level"] == "WARNING"
    assert (warning["schedule"], warning["knownSchedules"]) == ("Nightly", ["nightly"])
    assert "case matters" in warning["hint"]
    outcome(launcher, config, load_event("s3-put.json"))
    assert [r["level"] for r in logs.records if r["message"] == "skipped"] == ["INFO", "INFO"]


def test_object_filters_without_a_source_never_fire_on_a_schedule(
    launcher: Launcher, config: dict[str, str], emulator: Emulator
) -> None:
    del config["DATAFLOW_JOB_ID"]
    config["DATAFLOW_ROUTES"] = json.dumps(
        [{"name": "raw", "match": {"bucket": "raw-data", "prefix": "in"}, "jobId": "J1"}]
    )
    result = outcome(launcher, config, load_event("schedule-classic.json"))
    assert result["skipped"][0]["reason"] == "no-route"
    assert emulator.posts == []


def test_a_direct_call_naming_no_route_is_a_failure(launcher: Launcher, config: dict[str, str]) -> None:
    result = outcome(launcher, config, {"route": "nigthly"})
    [entry] = result["failed"]
    assert entry["error"] == "unknown-route: no route is named 'nigthly' (routes: default)"
    assert entry["retryable"] is False


def test_results_are_capped_but_batch_item_failures_stay_complete(launcher: Launcher, config: dict[str, str]) -> None:
    records = [{"eventSource": "aws:sqs", "messageId": f"m{index}", "body": "not json"} for index in range(250)]
    result = outcome(launcher, config, {"Records": records})
    assert len(result["failed"]) == 100
    assert result["omitted"] == {"failed": 150}
    assert len(result["batchItemFailures"]) == 250


header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(retry_after=header_values, date=header_values)
@example(retry_after="6", date="")  # a wait past the cap: the 429 is the answer (random runs found it)
@example(retry_after="2", date="")
def test_any_retry_after_or_date_header_is_read_safely(
    emulator: Emulator, clock: FakeClock, retry_after: str, date: str
) -> None:
    client = DataflowClient(emulator.url, Credentials(ACCESS_KEY, SECRET_KEY), clocks=clock.clocks())
    asked = retry_after_seconds(retry_after, clock.wall())
    too_long = asked is not None and asked > client.policy.retry_after_cap
    emulator.inject(
        Fault(status=429, headers={"Retry-After": retry_after}),
        Fault(status=401, body=gateway_error("200", "Authentication Failed"), headers={"Date": date}),
    )
    started = clock.monotonic()
    try:
        client.list_executions("gqigvH123456", page=0, limit=1, deadline=started + 10)
    except RequestError as exc:
        # A longer wait than an invocation should make is not made; otherwise the retry meets the 401.
        assert exc.code == ("420" if too_long else "200")
    else:  # the Date happened to be a real date far off ours: the offset was learnt, the retry passed
        assert not too_long
    assert clock.monotonic() - started <= 10
    emulator.faults.clear()


def test_routing_stops_at_the_deadline_and_says_so(launcher: Launcher, config: dict[str, str]) -> None:
    records = load_event("s3-multi-record.json")["Records"] * 50
    result = outcome(launcher, config, {"Records": records}, remaining_ms=400)  # less than the 0.5 s margin
    assert len(result["failed"]) == 100 and result["omitted"] == {"failed": 50}
    assert {entry["error"] for entry in result["failed"]} == {
        "timeout: the invocation's time ran out before this event was routed"
    }
    assert all(entry["retryable"] for entry in result["failed"])


def test_without_a_deadline_an_attempt_still_ends_after_its_two_timeouts(config: dict[str, str]) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:
        config |= {"DATAFLOW_ENDPOINT": api.url, "DATAFLOW_READ_TIMEOUT": "0.5", "DATAFLOW_CONNECT_TIMEOUT": "0.2"}
        config["DATAFLOW_DEDUP_CHECK"] = "off"
        api.inject(Fault(drip=0.1, method="POST"))  # every byte within the read timeout, the whole far beyond it
        started = time.monotonic()
        launcher = Launcher(Wiring(Clocks(sleep=lambda _: None)))
        # the command line: no deadline
        result = result_of(launcher, config, load_event("schedule-classic.json"), remaining_ms=None)
        spent = time.monotonic() - started
    assert spent < 1.5
    assert result["failed"][0]["error"].startswith("unknown-outcome: no complete answer within 0.7")
