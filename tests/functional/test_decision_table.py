"""The exactly-once decision, row by row, against an in-memory Data Flow: what the reader answers, what is done."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from handler.dataflow.client import CreateAnswer, DataflowClient, ExecutionRequest
from handler.errors import RequestError
from handler.launcher import Launcher
from handler.settings import Settings
from handler.wiring import Wiring
from tests.conftest import FakeClock, upload

if TYPE_CHECKING:
    from handler.wiring import Submitter


class InMemory:
    """A job's runs in a list, echoed as `echo` says ("object" or "none"); creates may lose their answer."""

    def __init__(self, clock: FakeClock, echo: str = "object", lose: int = 0) -> None:
        self.clock, self.echo, self.lose = clock, echo, lose
        self.runs: list[dict[str, Any]] = []

    def plant(self, parameters: Mapping[str, str], status: str = "COMPLETED") -> str:
        run_id = f"R{len(self.runs)}"
        created = datetime.fromtimestamp(self.clock.wall(), UTC).isoformat(timespec="seconds")
        self.runs.append(
            {"jobExecutionId": run_id, "status": status, "createdDate": created, "parameters": dict(parameters)}
        )
        return run_id

    def create_execution(self, request: ExecutionRequest, **_: Any) -> CreateAnswer:
        run_id = self.plant(request.parameters, "READY")
        if self.lose > 0:
            self.lose -= 1
            raise RequestError("unknown-outcome", "the answer was lost; the execution may exist", kind="ambiguous")
        return CreateAnswer({"jobExecutionId": run_id, "status": "READY"}, 1)

    def list_executions(self, job_id: str, *, page: int, limit: int, **_: Any) -> dict[str, Any]:
        shown = [self._shown(run) for run in reversed(self.runs)][page * limit : (page + 1) * limit]
        return {"list": shown, "count": len(self.runs), "page": page, "limit": limit}

    def get_execution(self, job_id: str, execution_id: str, **_: Any) -> dict[str, Any]:
        return next(self._shown(run) for run in self.runs if run["jobExecutionId"] == execution_id)

    def get_job(self, job_id: str, **_: Any) -> dict[str, Any]:
        return {"jobId": job_id}

    def _shown(self, run: Mapping[str, Any]) -> dict[str, Any]:
        echoed = run["parameters"] if self.echo == "object" else []
        return {**{k: v for k, v in run.items() if k != "parameters"}, "parsedParameters": echoed}


def decided(memory: InMemory, clock: FakeClock, **settings: str) -> dict[str, Any]:
    def connect(settings: Settings, client: DataflowClient) -> Submitter:
        return memory

    config = {
        "NCLOUD_ACCESS_KEY": "AK",
        "NCLOUD_SECRET_KEY": "SK",
        "DATAFLOW_JOB_ID": "J1",
        "DATAFLOW_PARAMETERS": json.dumps({"$input": "{bucket}/{key}"}),
        **settings,
    }
    if "DATAFLOW_ROUTES" in config:
        del config["DATAFLOW_JOB_ID"], config["DATAFLOW_PARAMETERS"]
    launcher = Launcher(Wiring(clock.clocks(), connect=connect))
    return dict(launcher.invoke(upload("in/a.csv", at=clock.wall() - 1), config, platform="aws").result)


@pytest.mark.parametrize(
    ("row", "echo", "before", "settings", "lose", "expected"),
    [
        ("its run exists: duplicate", "object", "ours", {}, 0, ("skipped", "duplicate", 1)),
        ("another event's run only: submitted", "object", "other", {}, 0, ("submitted", None, 2)),
        ("nothing can be told, submit: submitted", "none", "other", {}, 0, ("submitted", None, 2)),
        (
            "nothing can be told, fail: kept",
            "none",
            "other",
            {"DATAFLOW_DEDUP_UNVERIFIABLE": "fail"},
            0,
            ("failed", "unknown-outcome", 1),
        ),
        ("a lost answer, its run found: submitted once", "object", None, {}, 1, ("submitted", None, 1)),
        ("guarded and a run going: deferred", "object", "going", {}, 0, ("failed", "deferred", 1)),
    ],
)
def test_each_row_of_the_decision(
    row: str, echo: str, before: str | None, settings: dict[str, str], lose: int, expected: tuple[Any, ...]
) -> None:
    clock = FakeClock()
    memory = InMemory(clock, echo, lose)
    if before == "ours":
        memory.plant({"$input": "raw-data/in/a.csv"})
    elif before == "other":
        memory.plant({"$input": "raw-data/in/other.csv"})
    elif before == "going":
        memory.plant({"$input": "raw-data/in/other.csv"}, "RUNNING")
        route = {"name": "r", "match": {"source": "object"}, "jobId": "J1", "maxRunning": 1}
        settings = {"DATAFLOW_ROUTES": json.dumps([route | {"parameters": {"$input": "{bucket}/{key}"}}])}
    clock.advance(1)
    result = decided(memory, clock, **settings)
    kind, code, runs = expected
    [entry] = result[kind]
    assert code is None or (entry.get("reason") or entry.get("code")) == code, row
    assert len(memory.runs) == runs, row
