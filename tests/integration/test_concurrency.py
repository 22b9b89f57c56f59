"""Submissions of one invocation run concurrently: forced interleavings against the emulator."""

from __future__ import annotations

import json
import threading

from emulator.server import Emulator, Fault, Received
from handler.launcher import Launcher
from tests.conftest import ACCESS_KEY, SECRET_KEY, FakeClock, connected, load_event, result_of, sqs_batch, upload

# A barrier that a broken test would otherwise wait on forever: fail in seconds instead.
WAIT_S = 5.0


def two_routes(endpoint: str) -> dict[str, str]:
    routes = [
        {"name": "a", "match": {"source": "object"}, "jobId": "JobA", "parameters": {"$k": "{key}"}},
        {"name": "b", "match": {"source": "object"}, "jobId": "JobB", "parameters": {"$k": "{key}"}},
    ]
    return connected(endpoint, DATAFLOW_ROUTES=json.dumps(routes), DATAFLOW_MAX_CONCURRENCY="2")


class SkewRace:
    """Both first POSTs are refused for the skewed clock; the second refusal leaves only after the
    first request was re-signed and accepted, so its thread meets an offset a sibling already fixed."""

    def __init__(self) -> None:
        self.both_refused = threading.Barrier(2, timeout=WAIT_S)
        self.corrected = threading.Event()
        self.lock = threading.Lock()
        self.refusals = 0

    def __call__(self, request: Received) -> None:
        if request.status == 200:
            self.corrected.set()
            return
        with self.lock:
            self.refusals += 1
            order = self.refusals
        if order <= 2:
            self.both_refused.wait()
        if order == 2:
            assert self.corrected.wait(WAIT_S), "the first thread never re-signed"


def test_a_refusal_signed_with_an_older_offset_is_re_signed_not_failed(launcher: Launcher, clock: FakeClock) -> None:
    race = SkewRace()
    # The host clock is 7 minutes behind the gateway's: every first signature is outside its window.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=lambda: clock.wall() + 420, on_request=race) as api:
        result = result_of(launcher, two_routes(api.url), load_event("s3-put.json"))
        statuses = sorted(request.status or 0 for request in api.received)
    assert result["failed"] == []
    assert sorted(entry["route"] for entry in result["submitted"]) == ["a", "b"]
    assert statuses == [200, 200, 200, 200, 401, 401]  # two lookups refused, re-signed; two creates


class SettleTogether:
    """Both creates are in flight before either is answered; later requests (the lookups, the resend) pass
    freely. The two lookups that follow the lost creates cannot list at once: the reader answers one
    question of a job at a time (the claim race after them is test_a_found_run_is_claimed_by_one_event_only's)."""

    def __init__(self) -> None:
        self.posts = 0
        self.creates = threading.Barrier(2, timeout=WAIT_S)
        self.lock = threading.Lock()

    def __call__(self, request: Received) -> None:
        with self.lock:
            self.posts += request.method == "POST"
            first_two_creates = request.method == "POST" and self.posts <= 2
        if first_two_creates:
            self.creates.wait()


def test_two_uploads_of_one_key_whose_answers_were_lost_end_in_two_runs(launcher: Launcher, clock: FakeClock) -> None:
    # One key uploaded twice in one batch: same parameters, no dedupParameter. Both creates answer 500;
    # the first ran, the second did not. Both lookups see the one run: only one may take it.
    race = SettleTogether()
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, on_request=race) as api:
        api.inject(Fault(status=500, execute=True, method="POST"), Fault(status=500, method="POST"))
        # Looking only after a lost answer: a check before each create would leave the two workers' creates
        # and lookups in an order the job's turns decide, not the test.
        config = connected(
            api.url,
            DATAFLOW_JOB_ID="gqigvH123456",
            DATAFLOW_PARAMETERS='{"$input": "{bucket}/{key}"}',
            DATAFLOW_DEDUP_CHECK="ambiguous",
        )
        first = upload("in/a.csv", at=clock.wall() - 5, etag="v1", sequencer="01")
        second = upload("in/a.csv", at=clock.wall() - 4, etag="v2", sequencer="02")
        result = result_of(launcher, config, sqs_batch([first, second]))
        executions = api.all_executions()
        creates = [request.status for request in api.posts]
    assert result["failed"] == []
    ids = sorted(entry["jobExecutionId"] for entry in result["submitted"])
    assert ids == sorted(execution["jobExecutionId"] for execution in executions)
    assert len(set(ids)) == 2
    # Both answers lost, one run found and taken by one lookup; the other's resend answered: two runs.
    assert creates == [500, 500, 200]


def test_a_lookup_never_sees_a_siblings_run_before_it_is_remembered(launcher: Launcher, clock: FakeClock) -> None:
    # Nothing echoed, a dedupParameter, and fail: a sibling's run that a lookup cannot tell apart would
    # fail a new event. The first lookup is held: without the job's turns, siblings would create meanwhile.
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo="none") as api:
        api.inject(Fault(hold=0.3, method="GET"))
        config = connected(
            api.url,
            DATAFLOW_JOB_ID="gqigvH123456",
            DATAFLOW_PARAMETERS='{"$input": "{bucket}/{key}"}',
            DATAFLOW_DEDUP_PARAMETER="$dedup",
            DATAFLOW_DEDUP_UNVERIFIABLE="fail",
        )
        batch = sqs_batch([upload(f"in/{index}.csv", at=clock.wall()) for index in range(20)])
        result = result_of(launcher, config, batch)
        assert len(api.all_executions()) == 20
    assert result["failed"] == []
    assert len(result["submitted"]) == 20
