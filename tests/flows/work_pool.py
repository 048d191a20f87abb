"""A real Prefect process work pool for the tests: the pool, its queues, ``prefect worker start``
subprocesses, and what the server recorded about the runs they took."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect.workers.process import ProcessWorker

PREFECT = Path(sys.executable).parent / "prefect"
STOP_TIMEOUT = 20.0


@contextmanager
def process_pool(name: str, queues: Sequence[str]) -> Iterator[str]:
    """A process work pool (the default job template of ``prefect work-pool create --type process``)
    with ``queues``; deleted afterwards with its deployments."""
    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
        for queue in queues:
            client.create_work_queue(name=queue, work_pool_name=name)
    try:
        yield name
    finally:
        with get_client(sync_client=True) as client:
            for deployment in client.read_deployments():
                if deployment.work_pool_name == name:
                    client.delete_deployment(deployment.id)
            client.delete_work_pool(name)


def deploy_from_source(
    source: Path, entrypoint: str, *, name: str, pool: str, queue: str, parameters: dict[str, Any]
) -> UUID:
    """A deployment of the flow at ``entrypoint`` (a module path: ``flows.dispatch.dispatch``) that
    the pool's workers load from ``source``, one run at a time."""
    loaded = cast("Flow[..., Any]", Flow.from_source(source=str(source), entrypoint=entrypoint))
    deployed = loaded.deploy(
        name=name,
        work_pool_name=pool,
        work_queue_name=queue,
        parameters=parameters,
        concurrency_limit=1,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )
    return cast(UUID, deployed)


def start_run(deployment: str) -> FlowRun:
    """A run of ``flow/deployment``, scheduled now, without waiting for it."""
    return cast(FlowRun, run_deployment(deployment, timeout=0))


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""


@contextmanager
def process_workers(
    pool: str, queues: Sequence[str], *, envs: Sequence[Mapping[str, str]], log_dir: Path
) -> Iterator[list[Worker]]:
    """One ``prefect worker start --pool POOL --type process --work-queue QUEUE`` per queue, each with
    the current environment plus the matching ``envs`` item and the test server's API URL. Stopped
    with SIGTERM (then killed) on the way out; their output is printed (pytest shows it on failure)."""
    workers: list[Worker] = []
    try:
        for index, (queue, extra) in enumerate(zip(queues, envs, strict=True)):
            name = f"{pool}-worker-{index}"
            env = {
                **os.environ,
                "PREFECT_API_URL": str(PREFECT_API_URL.value()),
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
                **extra,
            }
            command = [
                str(PREFECT),
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--work-queue",
                queue,
                "--name",
                name,
                "--limit",
                "1",
            ]
            log = log_dir / f"{name}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            workers.append(Worker(name=name, process=process, log=log))
        yield workers
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            print(f"--- {worker.name} (exit {worker.process.returncode}) ---\n{worker.output()}")


def wait_until_final(run_ids: Sequence[UUID], workers: Sequence[Worker], *, timeout: float) -> list[FlowRun]:
    """The flow runs once every one is in a final state; fails early if a worker exits."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(run_id) for run_id in run_ids]
            if all(run.state is not None and run.state.is_final() for run in runs):
                return runs
            for worker in workers:
                if worker.process.poll() is not None:
                    raise AssertionError(f"{worker.name} exited early:\n{worker.output()}")
            if time.monotonic() > deadline:
                states = {run.name: run.state_name for run in runs}
                raise AssertionError(f"flow runs not finished after {timeout:.0f} s: {states}")
            time.sleep(0.5)


def submitted_by(run_id: UUID, worker_names: Sequence[str], *, timeout: float = 15.0) -> set[str]:
    """The workers whose "Worker '...' submitting flow run" line is in the run's logs (the logs reach
    the server in batches: wait until one shows up)."""
    deadline = time.monotonic() + timeout
    found: set[str] = set()
    with get_client(sync_client=True) as client:
        while not found and time.monotonic() < deadline:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            found = {
                name
                for name in worker_names
                for log in logs
                if f"Worker '{name}' submitting flow run '{run_id}'" in log.message
            }
            if not found:
                time.sleep(0.5)
    return found
