"""Dispatch through Prefect: ``python -m benchmarks.dispatch --via-prefect [--leads N] [--json]``.

The ``dispatch`` flow (one flow run per tick, a handful of batch tasks) runs against a real Prefect
server (a temporary one, with the task-run recorder batched as in ``make server``) over N due
steps, with an in-process null provider. Measured side by side in one run:

- **value**: the tick through Prefect, flow run and task runs included (after one empty tick, so
  the client's one-time start-up is not counted);
- **baseline**: a naive flow with one task run per message, on a smaller set (``--naive``);
- **without Prefect**: the same engine called directly, with the same processes, over the same N
  steps (the flow's overhead);
- **one process**: the engine in one process over the same N steps, with its time per step in each
  phase. ``--processes`` times its rate bounds what that many processes can reach: each runs the
  same code on its own core, and they only lose to each other (SQLite's write lock, shared caches);
- **the protocol's writes alone**: the database work of the exactly-once protocol as raw SQL
  (``benchmarks.dispatch.raw_protocol``), the ceiling of SQLite's single writer.

The tick runs ``--processes`` dispatcher processes (default: one per core; ``DispatchParams.processes``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

# Batched recording on the server side: set before Prefect reads its settings.
for _name, _value in {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from sqlalchemy import Engine  # noqa: E402

from benchmarks.common import (  # noqa: E402
    BENCH_DIR,
    emit,
    fresh_sqlite,
    null_channels,
    peak_child_memory_mb,
    peak_memory_mb,
    timed,
    timed_tick,
)
from benchmarks.dispatch import NOW, SEQUENCES, raw_protocol, reset, setup  # noqa: E402
from flows.dispatch import dispatch, dispatching_with, tick_dispatcher  # noqa: E402
from flows.params import DispatchParams, load_settings  # noqa: E402
from models.claims import ClaimedEnrollment  # noqa: E402
from sequences.catalog import SequenceCatalog  # noqa: E402
from spirale.dispatch import Dispatcher, DispatchReport  # noqa: E402
from spirale.dispatch.parallel import default_processes, dispatch_in_processes  # noqa: E402

TARGET = 10_000
NAIVE_DEFAULT = 500
STEPS_PER_TASK = 20_000


@task(name="send-one", cache_policy=NO_CACHE)
def send_one(row: ClaimedEnrollment) -> int:
    """The naive way: one task run per message."""
    report = DispatchReport()
    tick_dispatcher(load_settings()).process([row], now=NOW, report=report)
    return report.total_sent


@flow(name="naive-dispatch")
def naive_dispatch() -> int:
    """Claim everything due, then send each message in its own task run."""
    dispatcher = tick_dispatcher(load_settings())
    sent = 0
    while claimed := dispatcher.claim(NOW):
        sent += sum(send_one(row) for row in claimed)
    return sent


@contextmanager
def environment(url: str, batch: int) -> Iterator[None]:
    """The settings the flows read, for this database."""
    values = {
        "SPIRALE_DATABASE_URL": url,
        "SPIRALE_SEQUENCES_DIR": str(SEQUENCES.resolve()),
        "SPIRALE_OUTBOX_DIR": str((BENCH_DIR / "outbox").resolve()),
        "SPIRALE_DISPATCH_BATCH_SIZE": str(batch),
        "SPIRALE_SECRET_KEY": "bench",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def null_dispatcher(engine: Engine) -> Dispatcher:
    settings = load_settings()
    return Dispatcher(
        engine=engine,
        catalog=SequenceCatalog.open(SEQUENCES),
        channels=null_channels(settings),
        settings=settings,
    )


def prepared(name: str, leads: int) -> tuple[str, Engine]:
    url, engine = fresh_sqlite(name)
    setup(engine, leads, SequenceCatalog.open(SEQUENCES))
    return url, engine


@dataclass
class BatchedRun:
    report: DispatchReport
    seconds: float
    task_runs: int
    direct_rate: float


@dataclass
class AloneRun:
    """The engine in one process and the protocol's writes alone, measured before any Prefect
    server or client thread exists in this process."""

    one_rate: float
    one_phases: dict[str, float]
    protocol_rate: float


def run_alone(url: str, engine: Engine, args: argparse.Namespace) -> AloneRun:
    """One dispatcher process over the N steps, then the protocol's writes alone (then reset)."""
    with environment(url, args.batch):
        one, one_s = timed_tick(lambda: null_dispatcher(engine).dispatch_due(now=NOW), args.leads)
    reset(engine)
    protocol, protocol_s = timed(lambda: raw_protocol(engine))
    reset(engine)
    return AloneRun(args.leads / one_s, one.per_step_us(), protocol / protocol_s)


def run_batched(url: str, engine: Engine, args: argparse.Namespace) -> BatchedRun:
    """The tick through Prefect, then the engine alone over the same (reset) steps."""
    processes = args.processes
    with environment(url, args.batch), dispatching_with(null_dispatcher(engine), channels=null_channels):
        # A first tick with nothing due yet: the one-time client start-up is not a tick's cost.
        assert dispatch(DispatchParams(now=NOW - timedelta(days=1))).claimed == 0
        start = time.perf_counter()
        # With several processes a task starts them all (about a second): one task per process
        # share of the backlog, rather than many short ones.
        share = args.leads * 11 // (10 * processes)  # shards are not exactly even
        per_task = max(STEPS_PER_TASK, share) if processes > 1 else STEPS_PER_TASK
        params = DispatchParams(now=NOW, steps_per_task=per_task, processes=processes)
        state = dispatch(params, return_state=True)
        report: DispatchReport = state.result()
        seconds = time.perf_counter() - start
    assert report.total_sent == args.leads, f"sent {report.total_sent} of {args.leads}: {report.summary()}"
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    reset(engine)
    with environment(url, args.batch):
        settings = load_settings()
        _, direct_s = timed_tick(
            lambda: dispatch_in_processes(settings, now=NOW, processes=processes, channels=null_channels),
            args.leads,
        )
    return BatchedRun(report, seconds, count_task_runs(run_id), args.leads / direct_s)


def count_task_runs(run_id: UUID, timeout: float = 20.0) -> int:
    """The task runs the server recorded for a flow run (recorded asynchronously: wait until the
    count stops moving)."""
    deadline, last = time.monotonic() + timeout, -1
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            if len(runs) == last and last > 0:
                return last
            last = len(runs)
            time.sleep(0.5)
    return last


def run_naive(count: int, batch: int) -> tuple[int, float]:
    url, engine = prepared("dispatch-prefect-naive", count)
    with environment(url, batch), dispatching_with(null_dispatcher(engine)):
        sent, seconds = timed(naive_dispatch)
    assert sent == count, f"naive flow sent {sent} of {count}"
    return sent, seconds


def main_via_prefect(args: argparse.Namespace) -> None:
    """Measure and print (or emit JSON): one process and the protocol alone (before any Prefect
    thread exists), then the batched tick, the engine alone and the naive flow."""
    naive_n = int(getattr(args, "naive", None) or NAIVE_DEFAULT)
    url, engine = prepared("dispatch-prefect", args.leads)
    alone = run_alone(url, engine, args)
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        batched = run_batched(url, engine, args)
        naive_sent, naive_s = run_naive(naive_n, args.batch)
    report, seconds, direct_rate = batched.report, batched.seconds, batched.direct_rate
    value, base = report.total_sent / seconds, naive_sent / naive_s
    bound = args.processes * alone.one_rate
    emit(
        args.json,
        {
            "name": "dispatch_via_prefect",
            "value": round(value),
            "unit": "steps/s",
            "baseline": round(base),
            "baseline_name": f"naive flow, one task run per message ({naive_n} messages)",
            "ratio": round(value / base, 1),
            "target": TARGET,
            "leads": args.leads,
            "without_prefect": round(direct_rate),
            "prefect_share": round(1 - value / direct_rate, 3),
            "one_process": round(alone.one_rate),
            "processes_bound": round(bound),
            "protocol_writes_alone": round(alone.protocol_rate),
            "one_process_us_per_step": {k: round(v, 1) for k, v in alone.one_phases.items()},
            "task_runs": batched.task_runs,
            "processes": args.processes,
            "peak_memory_mb": round(max(peak_memory_mb(), peak_child_memory_mb())),
        },
        [
            f"dispatch via Prefect: {report.total_sent:,} due steps in {seconds:.1f} s = "
            f"{value:,.0f} steps/s (target {TARGET:,}) in {batched.task_runs} task runs, "
            f"{args.processes} dispatcher processes",
            f"baseline naive flow, one task per message: {naive_sent:,} in {naive_s:.1f} s = "
            f"{base:,.0f} steps/s",
            f"ratio batched/naive: {value / base:,.0f}x; "
            f"the engine alone, same processes (same run): {direct_rate:,.0f} steps/s",
            f"the engine in one process (same run): {alone.one_rate:,.0f} steps/s; "
            f"{args.processes} x one process = {bound:,.0f} steps/s, the most {args.processes} "
            "processes can reach",
            "one process, µs per step: " + ", ".join(f"{k} {v:.1f}" for k, v in alone.one_phases.items()),
            f"the protocol's writes alone (raw SQL, 4 commits a batch, same run): "
            f"{alone.protocol_rate:,.0f} steps/s",
            f"report: {report.summary()}",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--naive", type=int, default=NAIVE_DEFAULT, help="messages for the naive flow")
    parser.add_argument("--processes", type=int, default=default_processes(), help="dispatcher processes")
    parser.add_argument("--json", action="store_true")
    main_via_prefect(parser.parse_args())


if __name__ == "__main__":
    main()
