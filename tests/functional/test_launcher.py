"""The launcher with an in-memory Data Flow behind the wiring seam: what a defect of ours does to a batch."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from handler.dataflow.client import CreateAnswer, DataflowClient, ExecutionRequest
from handler.launcher import Launcher
from handler.settings import Settings
from handler.wiring import Wiring
from tests.conftest import FakeClock, load_event

if TYPE_CHECKING:
    from handler.wiring import Submitter


class Broken:
    """Starts runs in memory, except for one job, where something of ours fails as a defect would."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.lock = threading.Lock()

    def create_execution(
        self, request: ExecutionRequest, *, deadline: float | None = None, headers: Mapping[str, str] | None = None
    ) -> CreateAnswer:
        if request.job.job_id == "Broken1":
            raise RuntimeError("a defect")
        with self.lock:
            self.started.append(request.job.job_id)
        return CreateAnswer({"jobExecutionId": f"E-{request.job.job_id}", "status": "READY"}, 1)

    def list_executions(self, job_id: str, *, page: int, limit: int, **_: Any) -> dict[str, Any]:
        return {"list": [], "count": 0, "page": page, "limit": limit}

    def get_execution(self, job_id: str, execution_id: str, **_: Any) -> dict[str, Any]:
        return {"jobExecutionId": execution_id}

    def get_job(self, job_id: str, **_: Any) -> dict[str, Any]:
        return {"jobId": job_id}


def test_a_defect_in_one_worker_fails_its_step_alone_and_keeps_the_event() -> None:
    memory = Broken()

    def connect(settings: Settings, client: DataflowClient) -> Submitter:
        return memory

    routes = [{"name": name, "match": {"source": "object"}, "jobId": name} for name in ("Good1", "Broken1", "Good2")]
    config = {
        "NCLOUD_ACCESS_KEY": "AK",
        "NCLOUD_SECRET_KEY": "SK",
        "DATAFLOW_ROUTES": json.dumps(routes),
        "DATAFLOW_MAX_CONCURRENCY": "3",
    }
    report = Launcher(Wiring(FakeClock().clocks(), connect=connect)).invoke(
        load_event("s3-put.json"), config, platform="aws", remaining_ms=30_000
    )
    assert sorted(memory.started) == ["Good1", "Good2"]
    assert [entry["route"] for entry in report.result["submitted"]] == ["Good1", "Good2"]
    [failed] = report.result["failed"]
    assert (failed["route"], failed["code"], failed["retryable"]) == ("Broken1", "internal-error", False)
    assert failed["error"] == "internal-error: RuntimeError inside the handler; the execution may exist"
    assert report.keep
