"""Claims: due rows leased to exactly one worker, leases that expire, fences that hold.
Runs on SQLite, and on PostgreSQL when SPIRALE_TEST_DATABASE_URL points at one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select

from models.claims import (
    ENROLLMENTS,
    Advance,
    advance,
    claim_due,
    extend_lease,
    fenced_update,
    lock_held,
    release,
)
from models.db import write_transaction
from models.leads import LEADS, bulk_insert_leads

pytestmark = pytest.mark.db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def seed(
    engine: Engine, due_offsets: Sequence[timedelta], *, state: str | Sequence[str] = "active"
) -> list[uuid.UUID]:
    """One lead and one enrollment per offset, due at ``NOW + offset``; returns enrollment ids."""
    if not due_offsets:
        return []
    leads: list[dict[str, Any]] = [
        {"id": uuid.uuid4(), "email": f"{uuid.uuid4().hex}@example.fr"} for _ in due_offsets
    ]
    states = [state] * len(due_offsets) if isinstance(state, str) else state
    enrollments = [
        {
            "id": uuid.uuid4(),
            "lead_id": lead["id"],
            "sequence_name": "nurture",
            "sequence_version": "1",
            "state": row_state,
            "next_due_at": NOW + offset,
            "enrolled_at": NOW - timedelta(days=1),
            "updated_at": NOW,
        }
        for lead, offset, row_state in zip(leads, due_offsets, states, strict=True)
    ]
    with engine.begin() as conn:
        bulk_insert_leads(conn, leads, now=NOW, normalize=False)
        conn.execute(insert(ENROLLMENTS), enrollments)
    return [row["id"] for row in enrollments]


def claim(engine: Engine, worker: str, *, at: datetime = NOW, limit: int = 100) -> list[uuid.UUID]:
    with engine.begin() as conn:
        return [c.id for c in claim_due(conn, now=at, worker_id=worker, limit=limit, lease=LEASE)]


def row(engine: Engine, enrollment_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(ENROLLMENTS).where(ENROLLMENTS.c.id == enrollment_id)).one()


def next_step(item_id: uuid.UUID, step_index: int = 1) -> Advance:
    return Advance(
        id=item_id, step_index=step_index, cycle=0, next_due_at=NOW + timedelta(days=2), last_step_at=NOW
    )


def test_claims_only_due_active_rows_oldest_first_up_to_the_limit(engine: Engine) -> None:
    due = seed(engine, [timedelta(minutes=-m) for m in (5, 30, 10, 0)])
    seed(engine, [timedelta(seconds=1)])  # not yet due
    seed(engine, [timedelta(hours=-1)], state="paused")
    seed(engine, [timedelta(hours=-1)], state="completed")
    with engine.begin() as conn:
        claimed = claim_due(conn, now=NOW, worker_id="w1", limit=3, lease=LEASE)
    assert [c.id for c in claimed] == [due[1], due[2], due[0]]
    assert [c.next_due_at for c in claimed] == sorted(c.next_due_at for c in claimed)
    first = claimed[0]
    assert (first.step_index, first.cycle, first.sequence_name) == (0, 0, "nurture")
    assert first.sequence_version == "1"
    assert first.next_due_at.tzinfo is not None and first.last_step_at is None
    stored = row(engine, due[1])
    assert (stored.claimed_by, stored.lease_until) == ("w1", NOW + LEASE)
    assert claim(engine, "w2") == [due[3]]
    assert claim(engine, "w3") == []


def test_a_live_lease_is_not_reclaimed_and_an_expired_one_is(engine: Engine) -> None:
    [item] = seed(engine, [timedelta(minutes=-1)])
    assert claim(engine, "w1") == [item]
    assert claim(engine, "w2", at=NOW + LEASE - timedelta(microseconds=1)) == []
    assert claim(engine, "w2", at=NOW + LEASE) == [item]
    assert row(engine, item).claimed_by == "w2"


def test_the_fence_refuses_a_stale_worker(engine: Engine) -> None:
    [item] = seed(engine, [timedelta(minutes=-1)])
    claim(engine, "stale")
    later = NOW + LEASE + timedelta(seconds=1)
    claim(engine, "fresh", at=later)
    with engine.begin() as conn:
        assert not fenced_update(conn, enrollment_id=item, worker_id="stale", values={"step_index": 9})
        assert advance(conn, worker_id="stale", advances=[next_step(item, 9)], now=later) == 0
        assert release(conn, ids=[item], worker_id="stale") == 0
        assert lock_held(conn, ids=[item], worker_id="stale") == set()
    assert row(engine, item).step_index == 0
    with engine.begin() as conn:
        assert lock_held(conn, ids=[item], worker_id="fresh") == {item}
        assert advance(conn, worker_id="fresh", advances=[next_step(item)], now=later) == 1
    stored = row(engine, item)
    assert (stored.step_index, stored.claimed_by, stored.lease_until) == (1, None, None)
    assert (stored.next_due_at, stored.last_step_at) == (NOW + timedelta(days=2), NOW)
    assert stored.updated_at == later


@pytest.mark.postgres
def test_a_held_row_cannot_be_reclaimed_before_the_holder_commits(engine: Engine) -> None:
    [item] = seed(engine, [timedelta(minutes=-1)])
    claim(engine, "w1")
    expired = NOW + LEASE + timedelta(seconds=1)
    with engine.begin() as conn:
        assert lock_held(conn, ids=[item], worker_id="w1") == {item}
        assert claim(engine, "w2", at=expired) == []  # another connection: SKIP LOCKED passes over it
        assert advance(conn, worker_id="w1", advances=[next_step(item)], now=expired) == 1
    assert claim(engine, "w2", at=expired) == []  # advanced, so no longer due
    assert row(engine, item).step_index == 1


def test_fenced_update_writes_for_the_holder(engine: Engine) -> None:
    [item] = seed(engine, [timedelta(minutes=-1)])
    claim(engine, "w1")
    with engine.begin() as conn:
        done = {"state": "exited", "exit_reason": "goal", "claimed_by": None, "lease_until": None}
        assert fenced_update(conn, enrollment_id=item, worker_id="w1", values=done)
    stored = row(engine, item)
    assert (stored.state, stored.exit_reason, stored.claimed_by) == ("exited", "goal", None)
    assert claim(engine, "w2", at=NOW + timedelta(days=1)) == []


def test_release_and_extend_lease_are_fenced(engine: Engine) -> None:
    first, second = seed(engine, [timedelta(minutes=-2), timedelta(minutes=-1)])
    claim(engine, "w1")
    with engine.begin() as conn:
        assert extend_lease(conn, ids=[first, second], worker_id="w1", until=NOW + timedelta(hours=1)) == 2
        assert extend_lease(conn, ids=[first], worker_id="other", until=NOW) == 0
    assert claim(engine, "w2", at=NOW + timedelta(minutes=30)) == []
    with engine.begin() as conn:
        assert release(conn, ids=[first], worker_id="w1") == 1
    assert claim(engine, "w2") == [first]
    assert row(engine, second).claimed_by == "w1"


def test_advance_moves_many_rows_and_reports_lost_ones(engine: Engine) -> None:
    items = seed(engine, [timedelta(minutes=-m) for m in range(1, 6)])
    claim(engine, "w1")
    with engine.begin() as conn:
        release(conn, ids=items[:1], worker_id="w1")  # as if the lease had been lost
        advances = [next_step(i) for i in items[1:-1]]
        advances.append(Advance(items[-1], 3, 1, None, NOW, state="completed", exit_reason="done"))
        assert advance(conn, worker_id="w1", advances=[next_step(items[0]), *advances], now=NOW) == 4
    assert [row(engine, i).step_index for i in items] == [0, 1, 1, 1, 3]
    last = row(engine, items[-1])
    assert (last.state, last.cycle, last.next_due_at, last.exit_reason) == ("completed", 1, None, "done")


def test_empty_inputs_touch_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert claim_due(conn, now=NOW, worker_id="w", limit=0, lease=LEASE) == []
        assert release(conn, ids=[], worker_id="w") == 0
        assert extend_lease(conn, ids=[], worker_id="w", until=NOW) == 0
        assert lock_held(conn, ids=[], worker_id="w") == set()
        assert advance(conn, worker_id="w", advances=[], now=NOW) == 0


def drain(engine: Engine, worker: str, claimed: list[uuid.UUID]) -> None:
    """Claim, commit, then advance (fenced) and commit, until nothing is due."""
    while True:
        with write_transaction(engine) as conn:
            batch = claim_due(conn, now=NOW, worker_id=worker, limit=100, lease=LEASE)
        if not batch:
            return
        claimed.extend(item.id for item in batch)
        with write_transaction(engine) as conn:
            written = advance(conn, worker_id=worker, advances=[next_step(i.id) for i in batch], now=NOW)
        assert written == len(batch)


def assert_each_claimed_once(engine: Engine, expected: list[uuid.UUID], claimed: list[uuid.UUID]) -> None:
    duplicates = [item for item, count in Counter(claimed).items() if count > 1]
    assert duplicates == []
    assert set(claimed) == set(expected)
    with engine.connect() as conn:
        steps = Counter(conn.execute(select(ENROLLMENTS.c.step_index)).scalars())
    assert steps == {1: len(expected)}  # each row advanced exactly once


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_threads_claim_every_row_exactly_once(engine: Engine, workers: int) -> None:
    expected = seed(engine, [timedelta(seconds=-s) for s in range(5_000)])
    claimed: list[list[uuid.UUID]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            drain(engine, f"thread-{index}", claimed[index])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(1 for batch in claimed if batch) >= 2, "the workers should have competed"
    assert_each_claimed_once(engine, expected, [item for batch in claimed for item in batch])


PROCESS_WORKER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta
    from models.claims import Advance, advance, claim_due
    from models.db import make_engine, write_transaction

    url, worker, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
    engine = make_engine(url)
    print("ready", flush=True)
    sys.stdin.readline()  # start together, so the processes really compete
    claimed = []
    while True:
        with write_transaction(engine) as conn:
            batch = claim_due(conn, now=now, worker_id=worker, limit=100, lease=timedelta(minutes=5))
        if not batch:
            break
        with write_transaction(engine) as conn:
            steps = [Advance(i.id, 1, 0, now + timedelta(days=2), now) for i in batch]
            assert advance(conn, worker_id=worker, advances=steps, now=now) == len(batch)
        claimed.extend(str(i.id) for i in batch)
    print("\\n".join(claimed))
    """
)


def run_together(processes: list[subprocess.Popen[str]]) -> list[list[uuid.UUID]]:
    """Wait until every worker is ready, start them at once, collect the ids each one claimed."""
    for process in processes:
        assert process.stdout is not None and process.stderr is not None and process.stdin is not None
        if process.stdout.readline() != "ready\n":
            pytest.fail(f"worker did not start: {process.stderr.read()}")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    per_process: list[list[uuid.UUID]] = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        per_process.append([uuid.UUID(line) for line in out.split()])
    return per_process


def test_concurrent_processes_claim_every_row_exactly_once(engine: Engine, database_url: str) -> None:
    expected = seed(engine, [timedelta(seconds=-s) for s in range(5_000)])
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_WORKER, database_url, f"process-{n}", NOW.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        per_process = run_together(processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert all(per_process), "both processes should have won some rows"
    assert_each_claimed_once(engine, expected, [item for ids in per_process for item in ids])


rows_strategy = st.lists(
    st.tuples(
        st.integers(min_value=-120, max_value=120),  # due offset, minutes
        st.sampled_from(["active", "active", "paused", "completed"]),
        st.sampled_from([None, -10, 0, 10]),  # lease offset, minutes (None: unclaimed)
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, limit=st.integers(min_value=1, max_value=15))
def test_claim_takes_exactly_the_claimable_rows(engine: Engine, rows: list[Any], limit: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(ENROLLMENTS))
        conn.execute(delete(LEADS))
    ids = seed(engine, [timedelta(minutes=due) for due, _, _ in rows], state=[state for _, state, _ in rows])
    with engine.begin() as conn:
        for item, (_, _, lease) in zip(ids, rows, strict=True):
            if lease is not None:
                lease_until = NOW + timedelta(minutes=lease)
                conn.execute(
                    ENROLLMENTS.update()
                    .where(ENROLLMENTS.c.id == item)
                    .values(claimed_by="earlier", lease_until=lease_until)
                )
    claimable = [
        (NOW + timedelta(minutes=due), item)
        for item, (due, state, lease) in zip(ids, rows, strict=True)
        if state == "active" and due <= 0 and (lease is None or lease <= 0)
    ]
    claimed = claim(engine, "w", limit=limit)
    expected_dues = sorted(due for due, _ in claimable)[:limit]
    assert len(claimed) == len(expected_dues) == len(set(claimed))
    assert set(claimed) <= {item for _, item in claimable}
    assert sorted(row(engine, i).next_due_at for i in claimed) == expected_dues
