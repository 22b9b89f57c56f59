"""Random and mutated envelopes: only results or project errors come out, nothing invalid is sent."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.server import Received, check_create
from handler.dataflow.client import CreateAnswer, DataflowClient, ExecutionRequest
from handler.dataflow.signing import Credentials
from handler.launcher import Launcher
from handler.wiring import Wiring
from tests.conftest import EVENTS, ROOT, FakeClock, result_of

if TYPE_CHECKING:
    from handler.events import Platform

ROUTES = (ROOT / "emulator" / "demo-routes.json").read_text(encoding="utf-8")
SAMPLES = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(EVENTS.glob("*.json"))}
CONFIGS = [
    {
        "NCLOUD_ACCESS_KEY": "AK",
        "NCLOUD_SECRET_KEY": "SK",
        "DATAFLOW_ROUTES": ROUTES,
        "DATAFLOW_TIMEZONE": "Asia/Seoul",
    },
    {
        "NCLOUD_ACCESS_KEY": "AK",
        "NCLOUD_SECRET_KEY": "SK",
        "DATAFLOW_JOB_ID": "J1",
        "DATAFLOW_PARAMETERS": '{"$k": "{key}", "$s": "{schedule}", "$t": "{time-1d:%Y%m%d}"}',
    },
]
# Reasons come from the normaliser's own checks; a generic wrapper of foreign exceptions would not match.
SPECIFIC_REASON = re.compile(
    r"(is missing|expected|not a|not an|is not JSON|nested|unrecognised|unknown field|is empty|must be|has no|is negative|"
    r"not accepted|inside another envelope|empty bucket name|longer than|not UTF-8|not valid Unicode|out of range)"
)
FOREIGN = re.compile(r"KeyError|TypeError|AttributeError|IndexError|Traceback")


class ValidatingSubmitter:
    """Builds each request exactly as the client would and checks it with the emulator's rules."""

    def __init__(self) -> None:
        self.client = DataflowClient(
            "https://dataflow.apigw.ntruss.com", Credentials("AK", "SK"), clocks=FakeClock().clocks()
        )
        self.sent: list[Received] = []
        self.invalid: list[str] = []

    def create_execution(
        self, request: ExecutionRequest, *, deadline: float | None = None, headers: Mapping[str, str] | None = None
    ) -> CreateAnswer:
        prepared = self.client.prepare_create(request, headers)
        body = prepared.body.decode() if isinstance(prepared.body, bytes) else str(prepared.body or "")
        received = Received("POST", prepared.path_url, {k.lower(): v for k, v in prepared.headers.items()}, body)
        problems = check_create(received)
        if not re.fullmatch(r"/api/v1/jobs/[A-Za-z0-9_-]{1,64}/executions(\?.*)?", prepared.path_url):
            problems.append(f"bad path {prepared.path_url}")
        self.invalid += problems
        self.sent.append(received)
        return CreateAnswer({"jobExecutionId": f"E{len(self.sent)}", "status": "READY"}, 1)

    def list_executions(self, job_id: str, *, page: int, limit: int, **_: Any) -> dict[str, Any]:
        return {"list": [], "count": 0, "page": page, "limit": limit}

    def get_execution(self, job_id: str, execution_id: str, **_: Any) -> dict[str, Any]:
        return {"jobExecutionId": execution_id}

    def get_job(self, job_id: str, **_: Any) -> dict[str, Any]:
        return {"jobId": job_id}


# Values that break naive code: surrogates, digits int() refuses or cannot hold, far-off times, huge numbers.
odd_scalars = st.one_of(
    st.text(st.characters(categories=["Cs", "No", "Nd", "Zs", "Cc", "Lo"]), max_size=12),
    st.sampled_from(["²", "9" * 5000, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00", "%C3%28", "\ud800"]),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | odd_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
interesting_keys = st.sampled_from(
    [
        "Records",
        "s3",
        "bucket",
        "object",
        "key",
        "name",
        "eventName",
        "eventSource",
        "body",
        "messageId",
        "Sns",
        "Message",
        "detail-type",
        "detail",
        "source",
        "resources",
        "route",
        "jobId",
        "schedule",
        "time",
        "parameters",
        "jobCondition",
        "bucketName",
        "objectName",
        "eventType",
        "size",
        "eventTime",
        "Event",
        "Type",
    ]
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def mutate(event: Any, path: tuple[Any, ...], action: str, replacement: Any) -> Any:
    if not path:
        return replacement
    event = copy.deepcopy(event)
    parent = event
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "stringify" and isinstance(parent[last], dict | list):
        parent[last] = json.dumps(parent[last])
    else:
        parent[last] = replacement
    return event


def run(event: Any, platform: Platform, config_index: int) -> tuple[Mapping[str, Any], ValidatingSubmitter]:
    submitter = ValidatingSubmitter()
    launcher = Launcher(Wiring(FakeClock().clocks(), connect=lambda _settings, _client: submitter))
    return result_of(launcher, CONFIGS[config_index], event, platform=platform, remaining_ms=None), submitter


def check(result: Mapping[str, Any], submitter: ValidatingSubmitter) -> None:
    assert submitter.invalid == []
    assert len(result["submitted"]) == len(submitter.sent)
    for entry in result["failed"]:
        error = entry["error"]
        if error.startswith("unknown-route: "):  # a mutated route name is a typo in a replay
            continue
        assert error.startswith("bad-event: "), error
        assert SPECIFIC_REASON.search(error), error
        assert not FOREIGN.search(error), error
    # Always JSON-serialisable, and encodable as UTF-8 (no lone surrogate reaches a result).
    json.dumps(result, ensure_ascii=False).encode("utf-8")


PROFILE = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROFILE
@given(
    st.one_of(json_values, st.dictionaries(interesting_keys, json_values, max_size=6)),
    st.sampled_from(["aws", "ncp"]),
    st.integers(0, 1),
)
def test_random_payloads(event: Any, platform: Platform, config_index: int) -> None:
    check(*run(event, platform, config_index))


@PROFILE
@given(st.data(), st.sampled_from(sorted(SAMPLES)), st.integers(0, 1))
def test_mutated_samples(data: st.DataObject, name: str, config_index: int) -> None:
    sample = SAMPLES[name]
    event = sample
    for _ in range(data.draw(st.integers(1, 3))):
        candidates = paths(event)
        path = data.draw(st.sampled_from(candidates))
        action = data.draw(st.sampled_from(["replace", "delete", "stringify"] if path else ["replace"]))
        event = mutate(event, path, action, data.draw(json_values))
    platform: Platform = "ncp" if name.startswith("ncp-") else "aws"
    check(*run(event, platform, config_index))
