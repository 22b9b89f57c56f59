"""The emulator answers in each reading the public docs leave open, over real loopback HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from emulator.server import Emulator, Fault
from handler.dataflow.signing import Credentials, signed_headers
from tests.conftest import ACCESS_KEY, SECRET_KEY, FakeClock

JOB = "gqigvH123456"
PATH = f"/api/v1/jobs/{JOB}/executions"
CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
Make = Callable[..., Emulator]  # starts an emulator with the given options


def send(
    api: Emulator, clock: FakeClock, method: str, path: str, body: Any = None, credentials: Credentials = CREDENTIALS
) -> requests.Response:
    headers = signed_headers(credentials, method, path, str(int(clock.wall() * 1000)))
    data = None
    if method == "POST":
        headers["Content-Type"] = "application/json"
        data = json.dumps(body if body is not None else {})
    return requests.request(method, f"{api.url}{path}", data=data, headers=headers, timeout=5)


def create(api: Emulator, clock: FakeClock, body: Any = None) -> dict[str, Any]:
    response = send(api, clock, "POST", PATH, body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def listing(api: Emulator, clock: FakeClock, page: int = 0, limit: int = 10) -> dict[str, Any]:
    response = send(api, clock, "GET", f"{PATH}?page={page}&limit={limit}")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["jobExecutionId"] for item in answer["list"]]


def runs(api: Emulator, clock: FakeClock, count: int) -> list[str]:
    """Creates `count` executions, oldest first, and returns their ids in that order."""
    return [create(api, clock, {"parameters": {"$n": str(n)}})["jobExecutionId"] for n in range(count)]


@pytest.fixture
def make(clock: FakeClock) -> Iterator[Make]:
    """An emulator with the given options, on the test's clock, stopped after the test."""
    started: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        api = Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, **options).start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


# Listing shapes ----------------------------------------------------------------------------


def test_listings_are_newest_first_by_default(emulator: Emulator, clock: FakeClock) -> None:
    created = runs(emulator, clock, 3)
    assert ids(listing(emulator, clock)) == created[::-1]


def test_listings_can_be_oldest_first(make: Make, clock: FakeClock) -> None:
    api = make(newest_first=False)
    created = runs(api, clock, 3)
    assert ids(listing(api, clock)) == created


@pytest.mark.parametrize(
    ("count_means", "rest"),
    [
        ("total", {"count": 5, "page": 0, "limit": 2}),
        ("page", {"count": 2, "page": 0, "limit": 2}),
        ("missing", {"page": 0, "limit": 2}),
        ("string", {"count": "5", "page": 0, "limit": 2}),
    ],
)
def test_count_is_answered_in_each_reading(
    make: Make, clock: FakeClock, count_means: str, rest: dict[str, Any]
) -> None:
    api = make(count_means=count_means)
    created = runs(api, clock, 5)
    answer = listing(api, clock, page=0, limit=2)
    assert ids(answer) == [created[4], created[3]]
    assert {key: value for key, value in answer.items() if key != "list"} == rest


def test_count_of_a_short_last_page_is_its_items_when_count_means_page(make: Make, clock: FakeClock) -> None:
    api = make(count_means="page")
    runs(api, clock, 5)
    assert listing(api, clock, page=2, limit=2)["count"] == 1


def test_an_unknown_count_reading_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="count_means"):
        Emulator(count_means="pages")


def test_a_capped_limit_is_said_in_the_answer(make: Make, clock: FakeClock) -> None:
    api = make(limit_cap=20)
    created = runs(api, clock, 25)
    first = listing(api, clock, page=0, limit=100)
    assert (len(first["list"]), first["count"], first["page"], first["limit"]) == (20, 25, 0, 20)
    assert ids(first) == created[::-1][:20]
    second = listing(api, clock, page=1, limit=100)  # pages are cut at the capped size
    assert (ids(second), second["limit"]) == (created[::-1][20:], 20)


def test_a_limit_under_the_cap_is_served_as_asked(make: Make, clock: FakeClock) -> None:
    api = make(limit_cap=20)
    runs(api, clock, 25)
    answer = listing(api, clock, limit=5)
    assert (len(answer["list"]), answer["limit"]) == (5, 5)


def test_a_capping_service_caps_a_limit_above_a_thousand_instead_of_refusing_it(make: Make, clock: FakeClock) -> None:
    capped = make(limit_cap=20)
    assert listing(capped, clock, limit=5000)["limit"] == 20
    uncapped = make()
    response = send(uncapped, clock, "GET", f"{PATH}?page=0&limit=5000")
    assert (response.status_code, response.json()) == (
        400,
        {"errorType": "bad-parameter", "detail": "page must be >= 0 and limit 1-1000"},
    )


def test_retention_between_pages_shifts_the_newest_first_listing(make: Make, clock: FakeClock) -> None:
    api = make(prune_after_page=0, prune_count=2)
    created = runs(api, clock, 5)
    first = listing(api, clock, page=0, limit=2)
    assert (ids(first), first["count"]) == ([created[4], created[3]], 5)
    second = listing(api, clock, page=1, limit=2)
    # The two oldest are gone: newest first the remaining three are 4, 3, 2, so page 1 holds only run 2.
    assert (ids(second), second["count"]) == ([created[2]], 3)
    assert [item["jobExecutionId"] for item in api.pruned] == created[:2]


def test_retention_between_pages_makes_an_oldest_first_reader_skip_runs(make: Make, clock: FakeClock) -> None:
    api = make(newest_first=False, prune_after_page=0, prune_count=2)
    created = runs(api, clock, 5)
    assert ids(listing(api, clock, page=0, limit=2)) == created[:2]
    # Runs 0 and 1 were pruned after page 0: the remaining 2, 3, 4 put run 4 on page 1, so 2 and 3 are never seen.
    assert ids(listing(api, clock, page=1, limit=2)) == [created[4]]


def test_retention_runs_every_time_that_page_is_served(make: Make, clock: FakeClock) -> None:
    api = make(prune_after_page=0, prune_count=1)
    created = runs(api, clock, 3)
    listing(api, clock)
    listing(api, clock)
    assert ids(listing(api, clock)) == [created[2]]  # served from what was left, then pruned again
    assert [item["jobExecutionId"] for item in api.pruned] == created
    assert listing(api, clock)["list"] == []


def test_a_pruned_execution_is_not_found(emulator: Emulator, clock: FakeClock) -> None:
    created = runs(emulator, clock, 2)
    assert [item["jobExecutionId"] for item in emulator.prune(JOB, 1)] == created[:1]
    response = send(emulator, clock, "GET", f"{PATH}/{created[0]}")
    assert (response.status_code, response.json()) == (
        404,
        {"errorType": "not-found", "detail": f"execution {created[0]} does not exist"},
    )
    assert send(emulator, clock, "GET", f"{PATH}/{created[1]}").status_code == 200


def test_a_listing_can_answer_without_a_list(make: Make, clock: FakeClock) -> None:
    api = make(omit_list=True)
    runs(api, clock, 3)
    assert listing(api, clock) == {"count": 3, "page": 0, "limit": 10}


def test_listing_options_set_after_start_apply_to_the_next_request(emulator: Emulator, clock: FakeClock) -> None:
    runs(emulator, clock, 3)
    emulator.count_means = "string"
    emulator.omit_list = True
    assert listing(emulator, clock, limit=2) == {"count": "3", "page": 0, "limit": 2}


# Echo readings -----------------------------------------------------------------------------

SENT_CONDITION = {
    "workerType": "default",
    "numWorker": 2,
    "timeout": 60,
    "nrn": "nrn:PUB:IAM::1:Role/r",
    "scriptPath": "bucket/scripts/",
    "logPath": "bucket/sparkHistoryLogs/",
}
SENT = {"jobCondition": SENT_CONDITION, "parameters": {"$on": "true", "$off": "false", "$dir": "a/", "$n": "True"}}
NORMALISED_CONDITION = {
    **SENT_CONDITION,
    "workerType": "DEFAULT",
    "scriptPath": "bucket/scripts",
    "logPath": "bucket/sparkHistoryLogs",
}
NORMALISED_PARAMETERS = {"$on": True, "$off": False, "$dir": "a/", "$n": "True"}


def test_a_normalising_service_answers_normalised_values_everywhere(make: Make, clock: FakeClock) -> None:
    api = make(normalise_echo=True)
    created = create(api, clock, SENT)
    assert (created["jobCondition"], created["parsedParameters"]) == (NORMALISED_CONDITION, NORMALISED_PARAMETERS)
    item = listing(api, clock)["list"][0]
    assert (item["jobCondition"], item["parsedParameters"]) == (NORMALISED_CONDITION, NORMALISED_PARAMETERS)
    one = send(api, clock, "GET", f"{PATH}/{created['jobExecutionId']}").json()
    assert (one["jobCondition"], one["parsedParameters"]) == (NORMALISED_CONDITION, NORMALISED_PARAMETERS)


def test_normalising_keeps_the_stored_execution_as_sent(make: Make, clock: FakeClock) -> None:
    api = make(normalise_echo=True)
    create(api, clock, SENT)
    (stored,) = api.all_executions()
    assert (stored["jobCondition"], stored["parsedParameters"]) == (SENT_CONDITION, SENT["parameters"])


def test_a_normalised_list_echo_carries_json_booleans(make: Make, clock: FakeClock) -> None:
    api = make(normalise_echo=True, echo="list")
    created = create(api, clock, {"parameters": {"$on": "true"}})
    assert created["parsedParameters"] == [{"key": "$on", "value": True}]
    assert created["jobCondition"]["workerType"] == "DEFAULT"  # the emulator's default, already upper-case


def test_without_normalising_the_answers_echo_what_was_sent(emulator: Emulator, clock: FakeClock) -> None:
    created = create(emulator, clock, SENT)
    assert (created["jobCondition"], created["parsedParameters"]) == (SENT_CONDITION, SENT["parameters"])


def test_a_create_answer_can_leave_parameters_out_while_listings_echo_them(make: Make, clock: FakeClock) -> None:
    api = make(create_echo=False)
    created = create(api, clock, {"parameters": {"$a": "b"}})
    assert created["parsedParameters"] == []
    assert listing(api, clock)["list"][0]["parsedParameters"] == {"$a": "b"}
    one = send(api, clock, "GET", f"{PATH}/{created['jobExecutionId']}").json()
    assert one["parsedParameters"] == {"$a": "b"}


# Execution status --------------------------------------------------------------------------


def statuses(api: Emulator, clock: FakeClock) -> list[str]:
    return [item["status"] for item in listing(api, clock)["list"]]


def test_runs_are_created_ready_and_finish_ends_every_going_run(emulator: Emulator, clock: FakeClock) -> None:
    created = runs(emulator, clock, 3)
    assert statuses(emulator, clock) == ["READY", "READY", "READY"]
    emulator.set_status(JOB, created[0], "RUNNING")
    assert statuses(emulator, clock) == ["READY", "READY", "RUNNING"]  # newest first
    assert [item["jobExecutionId"] for item in emulator.going(JOB)] == created
    finished = emulator.finish(JOB)
    assert [item["jobExecutionId"] for item in finished] == created
    assert statuses(emulator, clock) == ["COMPLETED", "COMPLETED", "COMPLETED"]
    assert (emulator.going(JOB), emulator.finish(JOB)) == ([], [])


def test_finish_one_execution_with_a_chosen_status(emulator: Emulator, clock: FakeClock) -> None:
    created = runs(emulator, clock, 2)
    emulator.finish(JOB, created[1], status="FAILED")
    one = send(emulator, clock, "GET", f"{PATH}/{created[1]}").json()
    assert one["status"] == "FAILED"
    assert statuses(emulator, clock) == ["FAILED", "READY"]
    emulator.finish(JOB, status="CANCELED")  # only the going one changes
    assert statuses(emulator, clock) == ["FAILED", "CANCELED"]


def test_an_unknown_status_or_execution_is_refused(emulator: Emulator, clock: FakeClock) -> None:
    runs(emulator, clock, 1)
    with pytest.raises(ValueError, match="status"):
        emulator.finish(JOB, status="DONE")
    with pytest.raises(KeyError, match="nosuchid"):
        emulator.set_status(JOB, "nosuchid", "COMPLETED")


# Gateway rate limit and quota --------------------------------------------------------------

RATE_LIMITED = {
    "error": {"errorCode": "420", "message": "Rate Limited", "details": "over 1 requests per second (burst 2)"}
}


def test_requests_over_the_rate_are_answered_rate_limited(make: Make, clock: FakeClock) -> None:
    api = make(rate_limit=1.0, burst=2)
    answers = [send(api, clock, "POST", PATH) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].json() == RATE_LIMITED
    assert "Retry-After" not in answers[2].headers
    assert (api.throttled, len(api.all_executions())) == (1, 2)  # the refused request created nothing
    assert api.received[2].verdict == "limited: 420 Rate Limited"
    clock.advance(1.0)
    assert send(api, clock, "POST", PATH).status_code == 200


def test_the_bucket_refills_at_the_rate_up_to_the_burst(make: Make, clock: FakeClock) -> None:
    api = make(rate_limit=2.0, burst=2)
    assert [send(api, clock, "GET", PATH).status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(0.5)  # one token back
    assert [send(api, clock, "GET", PATH).status_code for _ in range(2)] == [200, 429]
    clock.advance(60)  # never more than the burst
    assert [send(api, clock, "GET", PATH).status_code for _ in range(3)] == [200, 200, 429]
    assert api.throttled == 3


def test_the_rate_limit_can_answer_throttle_limited(make: Make, clock: FakeClock) -> None:
    api = make(rate_limit=1.0, rate_limit_code="410")
    send(api, clock, "GET", PATH)
    answer = send(api, clock, "GET", PATH)
    assert (answer.status_code, answer.json()) == (
        429,
        {
            "error": {
                "errorCode": "410",
                "message": "Throttle Limited",
                "details": "over 1 requests per second (burst 1)",
            }
        },
    )


def test_an_unknown_rate_limit_code_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="rate_limit_code"):
        Emulator(rate_limit_code="400")


def test_retry_after_is_sent_on_rate_limited_answers(make: Make, clock: FakeClock) -> None:
    api = make(rate_limit=0.5, retry_after=2.5)
    assert "Retry-After" not in send(api, clock, "GET", PATH).headers
    assert send(api, clock, "GET", PATH).headers["Retry-After"] == "2.5"
    api.retry_after = 3
    assert send(api, clock, "GET", PATH).headers["Retry-After"] == "3"


def test_unauthenticated_requests_spend_no_tokens(make: Make, clock: FakeClock) -> None:
    api = make(rate_limit=1.0, burst=1)
    assert send(api, clock, "GET", PATH, credentials=Credentials("OTHER", SECRET_KEY)).status_code == 401
    assert send(api, clock, "GET", PATH).status_code == 200
    assert api.throttled == 0


def test_a_limited_request_consumes_no_injected_fault(make: Make, clock: FakeClock) -> None:
    api = make(rate_limit=1.0, burst=1)
    send(api, clock, "GET", PATH)
    api.inject(Fault(status=503))
    assert send(api, clock, "GET", PATH).status_code == 429
    clock.advance(1.0)
    assert send(api, clock, "GET", PATH).status_code == 503


def test_a_rate_limit_set_after_start_applies(emulator: Emulator, clock: FakeClock) -> None:
    assert [send(emulator, clock, "GET", PATH).status_code for _ in range(3)] == [200, 200, 200]
    emulator.rate_limit = 1.0
    assert [send(emulator, clock, "GET", PATH).status_code for _ in range(2)] == [200, 429]


def test_after_the_quota_every_request_is_quota_exceeded(make: Make, clock: FakeClock) -> None:
    api = make(quota=2)
    assert [send(api, clock, "POST", PATH).status_code for _ in range(2)] == [200, 200]
    clock.advance(3600)  # a quota waits for the day or month, not seconds
    for method in ("POST", "GET"):
        answer = send(api, clock, method, PATH)
        assert (answer.status_code, answer.json()) == (
            429,
            {"error": {"errorCode": "400", "message": "Quota Exceeded", "details": "quota of 2 requests used"}},
        )
    assert (api.accepted, api.throttled, api.quota_refused, len(api.all_executions())) == (2, 2, 2, 2)


def test_rate_limited_requests_do_not_count_towards_the_quota(make: Make, clock: FakeClock) -> None:
    api = make(quota=2, rate_limit=1.0, burst=1, retry_after=1)
    codes = [send(api, clock, "GET", PATH).status_code for _ in range(2)]
    clock.advance(1.0)
    codes.append(send(api, clock, "GET", PATH).status_code)
    clock.advance(1.0)
    quota = send(api, clock, "GET", PATH)
    assert [*codes, quota.status_code] == [200, 429, 200, 429]
    assert quota.json()["error"]["errorCode"] == "400"
    assert "Retry-After" not in quota.headers  # only the rate limit's answers carry it
    assert (api.accepted, api.throttled, api.quota_refused) == (2, 2, 1)


# Latency -----------------------------------------------------------------------------------


def test_answer_delay_may_be_a_callable_asked_once_per_request(make: Make, clock: FakeClock) -> None:
    asked: list[int] = []

    def no_wait() -> float:
        asked.append(1)
        return 0.0

    api = make(answer_delay=no_wait)
    create(api, clock)
    listing(api, clock)
    assert len(asked) == 2


def test_answer_delay_defaults_to_none_and_still_takes_seconds(emulator: Emulator) -> None:
    assert emulator.delay() == 0.0
    emulator.answer_delay = 0.25  # a float, as the bench sets it (not served here: tests do not sleep)
    assert emulator.delay() == 0.25


# The job and its concurrency limit -----------------------------------------------------------


def test_the_job_answers_its_max_concurrent_runs_or_null_without_one(make: Make, clock: FakeClock) -> None:
    api = make(max_concurrent_runs={JOB: 2})
    job = send(api, clock, "GET", f"/api/v1/jobs/{JOB}").json()
    assert (job["jobId"], job["name"], job["status"], job["maxConcurrentRuns"]) == (JOB, f"job-{JOB}", "READY", 2)
    assert job["lastExecutionStatus"] is None
    create(api, clock)
    assert send(api, clock, "GET", f"/api/v1/jobs/{JOB}").json()["lastExecutionStatus"] == "READY"
    assert send(api, clock, "GET", "/api/v1/jobs/OtherJob1").json()["maxConcurrentRuns"] is None


def test_an_older_service_answers_the_job_without_a_limit_or_not_at_all(make: Make, clock: FakeClock) -> None:
    legacy = send(make(job_reading="legacy"), clock, "GET", f"/api/v1/jobs/{JOB}")
    assert legacy.status_code == 200 and "maxConcurrentRuns" not in legacy.json()
    absent = send(make(job_reading="none"), clock, "GET", f"/api/v1/jobs/{JOB}")
    assert (absent.status_code, absent.json()["error"]["errorCode"]) == (404, "300")


def test_a_create_at_the_limit_is_refused_bad_state_until_a_run_ends(make: Make, clock: FakeClock) -> None:
    api = make(max_concurrent_runs={JOB: 2})
    first, _ = runs(api, clock, 2)
    refused = send(api, clock, "POST", PATH, {"parameters": {"$n": "2"}})
    assert refused.status_code == 400
    assert refused.json() == {
        "errorType": "bad-state",
        "detail": f"job {JOB} has reached its maximum number of concurrent executions (maxConcurrentRuns 2): "
        "2 executions are READY or RUNNING",
    }
    assert len(api.all_executions()) == 2  # nothing was created
    api.finish(JOB, first)
    assert create(api, clock)["status"] == "READY"


def test_in_the_queue_reading_a_create_past_the_limit_is_accepted_and_stays_ready(make: Make, clock: FakeClock) -> None:
    api = make(max_concurrent_runs={JOB: 1}, at_limit="queue")
    runs(api, clock, 3)
    assert [item["status"] for item in api.all_executions()] == ["READY"] * 3


def test_a_job_that_cannot_run_is_refused_bad_state_in_other_words(make: Make, clock: FakeClock) -> None:
    api = make(job_status={JOB: "STOPPED"}, max_concurrent_runs={JOB: 5})
    refused = send(api, clock, "POST", PATH, {"parameters": {}})
    assert refused.status_code == 400
    assert refused.json() == {
        "errorType": "bad-state",
        "detail": f"job {JOB} is not runnable in its current status (STOPPED)",
    }
    assert api.all_executions() == []


def test_concurrent_creates_never_pass_the_limit(make: Make, clock: FakeClock) -> None:
    api = make(max_concurrent_runs={JOB: 3})
    codes: list[int] = []
    threads = [
        threading.Thread(target=lambda: codes.append(send(api, clock, "POST", PATH, {"parameters": {}}).status_code))
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200] * 3 + [400] * 7
    assert len(api.all_executions()) == 3


def test_an_unknown_limit_reading_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="at_limit"):
        Emulator(at_limit="drop")
