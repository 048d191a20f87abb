"""Reading back what the Prefect server recorded: flow runs, task runs and artifacts."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact, FlowRun, TaskRun
from prefect.states import State


def flow_run_id(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def read_flow_run(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def task_runs(run_id: UUID, *, at_least: int, timeout: float = 15.0) -> list[TaskRun]:
    """The task runs of a flow run. The server records them asynchronously (from events): wait
    until at least ``at_least`` are there, then for the count to stay put briefly."""
    deadline = time.monotonic() + timeout
    runs: list[TaskRun] = []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            found = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            if len(found) >= at_least and len(found) == len(runs):
                return found
            runs = found
            time.sleep(0.3)
    return runs


def artifacts(run_id: UUID, key: str) -> list[Artifact]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])
            )
        )
