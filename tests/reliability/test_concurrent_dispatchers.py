"""N = 2, 4, 8 dispatcher PROCESSES on one database (SQLite, and PostgreSQL in the second pass), all
started at the same instant with their own worker ids and the real provider adapters: every due
step reaches the provider exactly once."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlalchemy import Engine, select

from tests.fakes.providers import FakeProviders
from tests.reliability.crash_campaign import STEP
from tests.reliability.dispatcher_process import DispatcherServer, Job
from tests.reliability.ledger import ENROLLMENTS, OUTBOX, T0, receipts, seed_relay

pytestmark = pytest.mark.db
LEADS = 160


def run_round(
    server: DispatcherServer, database_url: str, fake: FakeProviders, workers: int, round_: int
) -> list[dict[str, object]]:
    start_at = time.time() + 0.3  # every process is forked and connected before it starts claiming
    now = T0 + round_ * 10 * STEP  # one minute apart: the next step of every enrollment is due
    jobs = [
        Job(
            database_url=database_url,
            provider_url=fake.url,
            now=now.isoformat(),
            worker_id=f"worker-{round_}-{n}",
            batch_size=10,
            start_at=start_at,
        )
        for n in range(workers)
    ]
    results = server.run(jobs)
    assert [r.error for r in results] == [None] * workers
    assert not any(r.killed for r in results)
    return [r.result for r in results if r.result is not None]


@pytest.mark.parametrize("workers", [2, 4, 8])
def test_concurrent_dispatcher_processes_never_send_twice(
    engine: Engine,
    database_url: str,
    fake: FakeProviders,
    dispatcher_server: DispatcherServer,
    workers: int,
) -> None:
    seed_relay(engine, LEADS)
    fake.latency = 0.002  # each request takes a little while, so the processes overlap
    for round_, step in enumerate(("hello", "ping", "bye")):
        results = run_round(dispatcher_server, database_url, fake, workers, round_)
        assert sum(int(r["sent"]) for r in results) == LEADS  # type: ignore[call-overload]
        assert sum(1 for r in results if int(r["claimed"]) > 0) >= 2, f"only one worker claimed {step}"  # type: ignore[call-overload]
        started = max(float(r["started"]) for r in results)  # type: ignore[arg-type]
        assert started < min(float(r["finished"]) for r in results)  # type: ignore[arg-type]

    per_outbox = receipts(fake)
    assert sum(per_outbox.values()) == len(per_outbox) == 3 * LEADS
    with engine.connect() as conn:
        rows = conn.execute(select(OUTBOX.c.enrollment_id, OUTBOX.c.step_id, OUTBOX.c.state)).all()
        steps = Counter(conn.execute(select(ENROLLMENTS.c.state, ENROLLMENTS.c.step_index)).all())
    assert Counter(state for _, _, state in rows) == {"sent": 3 * LEADS}
    assert len({(enrollment, step) for enrollment, step, _ in rows}) == 3 * LEADS
    assert steps == {("completed", 3): LEADS}
