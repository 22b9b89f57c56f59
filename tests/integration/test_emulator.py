"""The emulator refuses what the gateway and Data Flow would refuse, for the same reasons."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from emulator.server import Emulator, Fault
from handler.dataflow.signing import Credentials, signed_headers
from tests.conftest import ACCESS_KEY, SECRET_KEY, FakeClock

PATH = "/api/v1/jobs/gqigvH123456/executions"


def post(
    api: Emulator,
    clock: FakeClock,
    body: Any = None,
    *,
    path: str = PATH,
    offset_s: float = 0.0,
    credentials: Credentials | None = None,
    content_type: str = "application/json",
    data: str | None = None,
) -> requests.Response:
    timestamp = str(int((clock.wall() + offset_s) * 1000))
    headers = signed_headers(credentials or Credentials(ACCESS_KEY, SECRET_KEY), "POST", path, timestamp)
    headers["Content-Type"] = content_type
    payload = data if data is not None else json.dumps(body if body is not None else {})
    return requests.post(f"{api.url}{path}", data=payload, headers=headers, timeout=5)


def test_a_valid_request_creates_an_execution(emulator: Emulator, clock: FakeClock) -> None:
    response = post(emulator, clock, {"parameters": {"$a": "b"}})
    assert response.status_code == 200
    assert response.json()["status"] == "READY"
    assert response.headers["Date"] == "Sat, 28 Nov 2026 00:00:00 GMT"


@pytest.mark.parametrize("offset_s", [-301, 301])
def test_timestamps_outside_five_minutes_are_refused(emulator: Emulator, clock: FakeClock, offset_s: float) -> None:
    response = post(emulator, clock, offset_s=offset_s)
    assert response.status_code == 401
    assert response.json()["error"]["errorCode"] == "200"


@pytest.mark.parametrize("offset_s", [-299, 299])
def test_timestamps_inside_the_window_pass(emulator: Emulator, clock: FakeClock, offset_s: float) -> None:
    assert post(emulator, clock, offset_s=offset_s).status_code == 200


def test_unknown_access_key_and_missing_headers_are_refused(emulator: Emulator, clock: FakeClock) -> None:
    assert post(emulator, clock, credentials=Credentials("OTHER", SECRET_KEY)).status_code == 401
    assert requests.post(f"{emulator.url}{PATH}", json={}, timeout=5).status_code == 401
    assert [r.verdict for r in emulator.received] == [
        "rejected: unknown access key",
        "rejected: missing signature headers",
    ]


def test_a_signature_for_another_path_is_refused(emulator: Emulator, clock: FakeClock) -> None:
    timestamp = str(int(clock.wall() * 1000))
    headers = signed_headers(Credentials(ACCESS_KEY, SECRET_KEY), "POST", "/api/v1/jobs/other/executions", timestamp)
    response = requests.post(f"{emulator.url}{PATH}", json={}, headers=headers, timeout=5)
    assert response.status_code == 401
    assert emulator.all_executions() == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"jobCondition": {"numWorker": 1}}, "jobCondition.numWorker must be an integer 2-10"),
        ({"jobCondition": {"timeout": 1441}}, "jobCondition.timeout must be an integer 1-1440"),
        ({"jobCondition": {"numWorker": "4"}}, "jobCondition.numWorker must be an integer 2-10"),
        ({"jobCondition": {"nrn": "x"}}, "jobCondition.nrn, scriptPath and logPath must be given together"),
        ({"parameters": {"$a": 1}}, "parameters must map names to strings"),
        ({"extra": 1}, "unknown body field extra"),
        ([], "body must be a JSON object"),
    ],
)
def test_bodies_outside_the_documented_ranges_are_bad_parameters(
    emulator: Emulator, clock: FakeClock, body: Any, detail: str
) -> None:
    response = post(emulator, clock, body)
    assert response.status_code == 400
    assert response.json() == {"errorType": "bad-parameter", "detail": detail}


def test_body_must_be_json_with_the_right_content_type(emulator: Emulator, clock: FakeClock) -> None:
    assert post(emulator, clock, data="{", content_type="application/json").json()["detail"] == "body is not JSON"
    assert "Content-Type must be application/json" in post(emulator, clock, content_type="text/plain").json()["detail"]


def test_query_ids_are_checked(emulator: Emulator, clock: FakeClock) -> None:
    response = post(emulator, clock, path=f"{PATH}?triggerId=a%20b&page=1")
    assert response.status_code == 400
    assert (
        response.json()["detail"] == "triggerId must be 1-64 letters, digits, '-' or '_'; unknown query parameter page"
    )


def test_unknown_paths_are_gateway_404s(emulator: Emulator, clock: FakeClock) -> None:
    response = post(emulator, clock, path="/api/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["errorCode"] == "300"


def raw_post(api: Emulator, clock: FakeClock, *, stream: bool = False) -> requests.Response:
    timestamp = str(int(clock.wall() * 1000))
    headers = signed_headers(Credentials(ACCESS_KEY, SECRET_KEY), "POST", PATH, timestamp)
    headers["Content-Type"] = "application/json"
    return requests.post(f"{api.url}{PATH}", data="{}", headers=headers, timeout=5, stream=stream)


def test_fault_raw_sends_exactly_those_bytes(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(status=202, raw=b"", execute=True))
    response = post(emulator, clock)
    assert (response.status_code, response.content) == (202, b"")
    assert len(emulator.all_executions()) == 1


def test_fault_status_without_execute_runs_nothing(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(status=500))
    assert post(emulator, clock).status_code == 500
    assert emulator.all_executions() == []


def test_fault_drop_closes_without_an_answer_and_execute_runs_first(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(drop=True), Fault(drop=True, execute=True))
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            post(emulator, clock)
    assert len(emulator.all_executions()) == 1


def test_fault_cut_announces_more_body_than_it_sends(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(cut=True))
    response = raw_post(emulator, clock, stream=True)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _ = response.content
    assert len(emulator.all_executions()) == 1


def test_fault_drip_sends_the_answer_byte_by_byte(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(drip=0.001))
    started = time.monotonic()
    response = post(emulator, clock)
    assert response.status_code == 200 and response.json()["status"] == "READY"
    assert time.monotonic() - started >= 0.001 * 200  # a few hundred bytes, each after a pause


def test_fault_hold_waits_until_released(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(hold=30))
    timestamp = str(int(clock.wall() * 1000))
    headers = signed_headers(Credentials(ACCESS_KEY, SECRET_KEY), "POST", PATH, timestamp)
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{emulator.url}{PATH}", json={}, headers=headers, timeout=(5, 0.2))


def test_fault_headers_times_and_method(emulator: Emulator, clock: FakeClock) -> None:
    emulator.inject(Fault(status=429, headers={"Retry-After": "7"}, times=2, method="POST"))
    answers = [post(emulator, clock) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    emulator.inject(Fault(status=503, method="GET"))
    assert post(emulator, clock).status_code == 200  # a GET-only fault leaves a POST alone
    assert emulator.faults and emulator.faults[0].method == "GET"


@pytest.mark.parametrize(
    ("echo", "shown"), [("object", {"$a": "b"}), ("list", [{"key": "$a", "value": "b"}]), ("none", [])]
)
def test_executions_echo_parameters_in_each_reading(clock: FakeClock, echo: str, shown: Any) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo=echo) as api:
        assert post(api, clock, {"parameters": {"$a": "b"}}).json()["parsedParameters"] == shown
        timestamp = str(int(clock.wall() * 1000))
        listing = requests.get(
            f"{api.url}{PATH}?page=0&limit=10",
            headers=signed_headers(Credentials(ACCESS_KEY, SECRET_KEY), "GET", f"{PATH}?page=0&limit=10", timestamp),
            timeout=5,
        ).json()
    assert listing["list"][0]["parsedParameters"] == shown


def test_a_client_hanging_up_is_not_reported_as_an_emulator_error(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # The handler cuts slow answers at its deadline: the emulator must not print a traceback for that.
    for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
        try:
            raise error
        except ConnectionError:
            emulator.server.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == ""
    try:
        raise ValueError("a real fault")
    except ValueError:
        emulator.server.handle_error(None, ("127.0.0.1", 1))
    assert "ValueError: a real fault" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fault", "credentials"),
    [(None, None), (None, Credentials("OTHER", SECRET_KEY)), (Fault(status=503), None), (Fault(drip=0.001), None)],
    ids=["answered", "rejected", "fault status", "dripped"],
)
def test_on_request_runs_before_the_answer_leaves(
    emulator: Emulator, clock: FakeClock, fault: Fault | None, credentials: Credentials | None
) -> None:
    # A test's reaction (advancing a clock, arming the next fault) must happen before the client can
    # read the answer: when the reaction fails, no answer has left at all.
    def fail(_: object) -> None:
        raise RuntimeError("the test's reaction failed")

    if fault is not None:
        emulator.inject(fault)
    emulator.on_request = fail
    with pytest.raises(requests.ConnectionError):
        post(emulator, clock, credentials=credentials)
    assert [str(error) for error in emulator.take_hook_errors()] == ["the test's reaction failed"]


def test_what_on_request_raised_is_raised_into_the_test_when_the_emulator_stops(clock: FakeClock) -> None:
    # In a server thread the hook's failure only drops one connection; a client that retries could
    # still pass the test by another path, so the test fails instead.
    def fail(_: object) -> None:
        raise RuntimeError("the test's reaction failed")

    api = Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, on_request=fail).start()
    with pytest.raises(requests.ConnectionError):
        post(api, clock)
    with pytest.raises(RuntimeError, match="the test's reaction failed"):
        api.stop()
