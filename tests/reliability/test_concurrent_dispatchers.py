"""N = 2, 4, 8 dispatcher PROCESSES on one database (SQLite, and PostgreSQL in the second pass), all
started at the same instant with their own worker ids and the real provider adapters: every due
step reaches the provider exactly once."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, select

from tests.fakes.providers import FakeProviders
from tests.reliability.dispatcher_process import DispatcherServer, Job
from tests.reliability.ledger import ENROLLMENTS, OUTBOX, T0, receipts, seed_relay

pytestmark = pytest.mark.db
LEADS = 40  # per sequence: the first step of ``relay`` is an email, that of ``nudge`` an SMS


def start_together(
    server: DispatcherServer, database_url: str, fake: FakeProviders, workers: int
) -> list[dict[str, Any]]:
    start_at = time.time() + 0.8  # every process is forked and connected before it starts claiming
    jobs = [
        Job(
            database_url=database_url,
            provider_url=fake.url,
            now=T0.isoformat(),
            worker_id=f"worker-{n}",
            batch_size=5,
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
    seed_relay(engine, LEADS, sequence="nudge", first=LEADS)
    fake.latency = 0.002  # each request takes a little while, so the processes overlap
    results = start_together(dispatcher_server, database_url, fake, workers)
    assert sum(r["sent"] for r in results) == 2 * LEADS
    assert sum(1 for r in results if r["claimed"] > 0) >= 2
    assert max(r["started"] for r in results) < min(r["finished"] for r in results)

    per_outbox = receipts(fake)
    assert sum(per_outbox.values()) == len(per_outbox) == 2 * LEADS
    assert len(fake.processed("sendgrid")) == len(fake.processed("twilio")) == LEADS
    with engine.connect() as conn:
        rows = conn.execute(select(OUTBOX.c.enrollment_id, OUTBOX.c.step_id, OUTBOX.c.state)).all()
        steps = Counter(conn.execute(select(ENROLLMENTS.c.state, ENROLLMENTS.c.step_index)).all())
    assert Counter(state for _, _, state in rows) == {"sent": 2 * LEADS}
    assert len({(enrollment, step) for enrollment, step, _ in rows}) == 2 * LEADS
    assert steps == {("active", 1): 2 * LEADS}
