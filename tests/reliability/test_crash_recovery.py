"""SIGKILL a dispatcher process at every point of a send, restart it, and check against the fake
provider's record that every due step was received exactly once (on SQLite and PostgreSQL)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import Engine, select

from tests.fakes.providers import FakeProviders
from tests.reliability.crash_campaign import STEP, CrashCampaign
from tests.reliability.dispatcher_process import (
    AFTER_ACCEPTED,
    AFTER_CLAIM,
    AFTER_PENDING,
    AFTER_SENDING,
    BEFORE_CLAIM,
    BEFORE_RECORD_COMMIT,
    CRASH_POINTS,
    PROJECT_ROOT,
    DispatcherServer,
    Job,
)
from tests.reliability.ledger import ENROLLMENTS, OUTBOX, SINGLE, T0, audit, receipts, seed_relay

pytestmark = pytest.mark.db

# Right after the kill, before any restart: enrollments still leased to the dead process, outbox
# states, and how many messages the provider received.
LEFT_BEHIND = {
    BEFORE_CLAIM: (0, {}, 0),
    AFTER_CLAIM: (3, {}, 0),
    AFTER_PENDING: (0, {"pending": 3}, 0),
    AFTER_SENDING: (0, {"sending": 3}, 0),
    AFTER_ACCEPTED: (0, {"sending": 3}, 1),
    BEFORE_RECORD_COMMIT: (0, {"sending": 3}, 3),
}


def outbox_states(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(select(OUTBOX.c.state)).scalars())


def test_fifty_sigkills_at_every_point_lose_and_duplicate_nothing(
    engine: Engine, database_url: str, fake: FakeProviders, dispatcher_server: DispatcherServer
) -> None:
    assert seed_relay(engine, 60) == 60
    fake.latency = 0.003  # so that a kill from outside can land in the middle of a provider call
    campaign = CrashCampaign(engine, database_url, fake, dispatcher_server, kills=56)
    figures = campaign.run()
    print("\n".join(figures.lines()))

    assert figures.kills >= 50
    assert all(figures.kills_by_point[point] >= 3 for point in (*CRASH_POINTS, "random"))
    assert figures.audit.expected == 180
    assert figures.audit.duplicates == 0
    assert figures.audit.losses == 0
    assert figures.audit.problems == []
    assert figures.audit.processed == 180


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_what_a_kill_leaves_behind_is_finished_by_the_next_process(
    engine: Engine,
    database_url: str,
    fake: FakeProviders,
    dispatcher_server: DispatcherServer,
    point: str,
) -> None:
    seed_relay(engine, 3, sequence=SINGLE)
    job = Job(database_url=database_url, provider_url=fake.url, now=T0.isoformat(), crash_at=point)
    [died] = dispatcher_server.run([job])
    assert died.killed, died.error
    leased, states, received = LEFT_BEHIND[point]
    with engine.connect() as conn:
        claims = conn.execute(select(ENROLLMENTS.c.claimed_by).where(ENROLLMENTS.c.claimed_by.is_not(None)))
        assert len(claims.all()) == leased
    assert outbox_states(engine) == states
    assert sum(receipts(fake).values()) == received

    CrashCampaign(engine, database_url, fake, dispatcher_server, kills=0, clock=T0 + STEP).drain()
    result = audit(engine, fake, steps=["hello"])
    assert (result.duplicates, result.losses, result.problems) == (0, 0, [])
    assert result.processed == 3


def test_a_cold_started_process_killed_after_the_provider_accepted_is_reconciled_not_resent(
    engine: Engine, database_url: str, fake: FakeProviders, dispatcher_server: DispatcherServer
) -> None:
    seed_relay(engine, 3, sequence=SINGLE)
    command = [sys.executable, "-m", "tests.reliability.dispatcher_process", "--db", database_url]
    command += ["--provider-url", fake.url, "--now", T0.isoformat(), "--crash-at", AFTER_ACCEPTED]
    killed = subprocess.run(
        [*command, "--countdown", "2"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sum(receipts(fake).values()) == 2
    assert outbox_states(engine) == {"sending": 3}

    campaign = CrashCampaign(engine, database_url, fake, dispatcher_server, kills=0, clock=T0 + STEP)
    campaign.drain()
    result = audit(engine, fake, steps=["hello"])
    assert (result.duplicates, result.losses, result.problems) == (0, 0, [])
    with engine.connect() as conn:
        rows = conn.execute(select(OUTBOX.c.attempt, OUTBOX.c.state)).all()
    # The two the provider accepted were reconciled as sent; only the third was sent again.
    assert Counter(tuple(row) for row in rows) == {(1, "sent"): 2, (1, "failed"): 1, (2, "sent"): 1}
