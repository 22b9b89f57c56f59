"""Submissions of one invocation run concurrently: forced interleavings against the emulator."""

from __future__ import annotations

import json
import threading

from emulator.server import Emulator, Received
from handler.launcher import Launcher
from tests.conftest import ACCESS_KEY, SECRET_KEY, FakeClock, load_event, result_of

# A barrier that a broken test would otherwise wait on forever: fail in seconds instead.
WAIT_S = 5.0


def two_routes(endpoint: str) -> dict[str, str]:
    routes = [
        {"name": "a", "match": {"source": "object"}, "jobId": "JobA", "parameters": {"$k": "{key}"}},
        {"name": "b", "match": {"source": "object"}, "jobId": "JobB", "parameters": {"$k": "{key}"}},
    ]
    return {
        "NCLOUD_ACCESS_KEY": ACCESS_KEY,
        "NCLOUD_SECRET_KEY": SECRET_KEY,
        "DATAFLOW_ENDPOINT": endpoint,
        "DATAFLOW_ROUTES": json.dumps(routes),
        "DATAFLOW_MAX_CONCURRENCY": "2",
    }


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
