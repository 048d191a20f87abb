"""Sharded claims: ``count`` workers given shards ``0..count-1`` split the due enrollments exactly,
with the shard computed in SQL as :func:`shard_of` computes it in Python, and every enrollment of
a lead in its lead's shard. Runs on SQLite, and on
PostgreSQL when SPIRALE_TEST_DATABASE_URL points at one."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from models.claims import ENROLLMENTS, Shard, claim_due, in_shard, shard_of
from models.ids import ordered_id
from models.leads import bulk_insert_leads

pytestmark = pytest.mark.db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def ids_with_last_bytes(last_bytes: Sequence[int]) -> list[uuid.UUID]:
    """Time-ordered (version 7) UUIDs, as enrollments get, whose last byte is each of
    ``last_bytes`` in turn: their first bytes are all the same timestamp."""
    return [uuid.UUID(bytes=ordered_id().bytes[:15] + bytes([last])) for last in last_bytes]


def seed(engine: Engine, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """One lead and one active enrollment due at ``NOW`` (a second apart) per id. The lead gets the
    same id as its enrollment (another table), so the enrollment's shard is its id's."""
    leads: list[dict[str, Any]] = [{"id": i, "email": f"{uuid.uuid4().hex}@example.fr"} for i in ids]
    enrollments = [
        {
            "id": enrollment_id,
            "lead_id": lead["id"],
            "sequence_name": "nurture",
            "sequence_version": "1",
            "state": "active",
            "next_due_at": NOW - timedelta(seconds=n),
            "enrolled_at": NOW - timedelta(days=1),
            "updated_at": NOW,
        }
        for n, (lead, enrollment_id) in enumerate(zip(leads, ids, strict=True))
    ]
    with engine.begin() as conn:
        bulk_insert_leads(conn, leads, now=NOW, normalize=False)
        conn.execute(insert(ENROLLMENTS), enrollments)
    return list(ids)


def claim(engine: Engine, worker: str, shard: Shard | None, *, limit: int = 1_000) -> list[uuid.UUID]:
    with engine.begin() as conn:
        claimed = claim_due(conn, now=NOW, worker_id=worker, limit=limit, lease=LEASE, shard=shard)
    return [c.id for c in claimed]


def claimed_by(engine: Engine) -> dict[uuid.UUID, str | None]:
    with engine.connect() as conn:
        return {i: worker for i, worker in conn.execute(select(ENROLLMENTS.c.id, ENROLLMENTS.c.claimed_by))}


def test_two_shards_partition_the_due_enrollments_exactly(engine: Engine) -> None:
    # Every last byte twice (hex digits 0-9 and a-f in both places), then random and v7 ids.
    ids = seed(
        engine,
        ids_with_last_bytes([*range(256), *range(256)])
        + [uuid.uuid4() for _ in range(44)]
        + [ordered_id() for _ in range(44)],
    )
    # Small batches, alternating between the shards, as two workers ticking side by side would.
    taken: dict[int, list[uuid.UUID]] = {0: [], 1: []}
    while True:
        batches = {index: claim(engine, f"w{index}", Shard(index, 2), limit=37) for index in (0, 1)}
        for index, batch in batches.items():
            taken[index] += batch
        if not any(batches.values()):
            break

    zero, one = set(taken[0]), set(taken[1])
    assert len(taken[0]) == len(zero) and len(taken[1]) == len(one)  # nobody claimed a row twice
    assert zero | one == set(ids) and not zero & one
    assert all(shard_of(i, 2) == 0 for i in zero) and all(shard_of(i, 2) == 1 for i in one)
    assert abs(len(zero) - len(one)) < len(ids) // 4  # both shards did a fair share
    owners = claimed_by(engine)
    assert {owners[i] for i in zero} == {"w0"} and {owners[i] for i in one} == {"w1"}


@pytest.mark.parametrize("count", [3, 7, 256])
def test_the_sql_shard_agrees_with_shard_of_for_every_row(engine: Engine, count: int) -> None:
    ids = seed(engine, ids_with_last_bytes(range(256)))
    expected = Counter({index: 0 for index in range(count)})
    expected.update(shard_of(i, count) for i in ids)
    with engine.connect() as conn:
        for index in range(count):
            query = select(ENROLLMENTS.c.id).where(in_shard(conn, Shard(index, count)))
            found = set(conn.execute(query).scalars())
            assert {shard_of(i, count) for i in found} <= {index}, index
            assert len(found) == expected[index], index
    # The last byte itself, for count 256: shard_of is the byte.
    assert [shard_of(i, 256) for i in ids] == list(range(256))


def test_a_shard_of_three_claims_only_its_rows_and_keeps_leases(engine: Engine) -> None:
    ids = seed(engine, ids_with_last_bytes(range(0, 256, 2)))
    mine = {i for i in ids if shard_of(i, 3) == 2}
    first = claim(engine, "a", Shard(2, 3))
    assert set(first) == mine
    # Under a live lease, the same shard claimed by another worker gets nothing.
    assert claim(engine, "b", Shard(2, 3)) == []
    # The lease expires: the rows come back to the shard, not to another one.
    with engine.begin() as conn:
        later = claim_due(conn, now=NOW + LEASE, worker_id="b", limit=1_000, lease=LEASE, shard=Shard(0, 3))
        assert {c.id for c in later} == {i for i in ids if shard_of(i, 3) == 0}
        again = claim_due(conn, now=NOW + LEASE, worker_id="c", limit=1_000, lease=LEASE, shard=Shard(2, 3))
        assert {c.id for c in again} == mine


def test_every_enrollment_of_a_lead_is_in_the_lead_s_shard(engine: Engine) -> None:
    """The shard follows the lead, not the enrollment: one dispatcher decides all of a lead's steps
    and sees all its sends (the frequency cap), whatever the enrollments' own ids."""
    leads = ids_with_last_bytes([0x10, 0x21, 0x32])  # shards 0, 1 and 0 of 2
    enrollment_ids = ids_with_last_bytes([0x00, 0x01, 0x02, 0x03, 0x04, 0x05])  # shards 0, 1, 0, 1 ...
    with engine.begin() as conn:
        bulk_insert_leads(
            conn,
            [{"id": lead, "email": f"{lead.hex}@example.fr"} for lead in leads],
            now=NOW,
            normalize=False,
        )
        conn.execute(
            insert(ENROLLMENTS),
            [
                {
                    "id": enrollment_id,
                    "lead_id": leads[n // 2],
                    "sequence_name": f"sequence-{n % 2}",
                    "sequence_version": "1",
                    "state": "active",
                    "next_due_at": NOW,
                    "enrolled_at": NOW - timedelta(days=1),
                    "updated_at": NOW,
                }
                for n, enrollment_id in enumerate(enrollment_ids)
            ],
        )
    with engine.begin() as conn:
        by_shard = {
            index: claim_due(
                conn, now=NOW, worker_id=f"w{index}", limit=100, lease=LEASE, shard=Shard(index, 2)
            )
            for index in (0, 1)
        }
    assert {c.id for c in by_shard[0]} == set(enrollment_ids[:2] + enrollment_ids[4:])
    assert {c.lead_id for c in by_shard[0]} == {leads[0], leads[2]}
    assert {c.id for c in by_shard[1]} == set(enrollment_ids[2:4])
    assert {c.lead_id for c in by_shard[1]} == {leads[1]}


def test_no_shard_and_a_single_shard_claim_everything(engine: Engine) -> None:
    ids = seed(engine, ids_with_last_bytes(range(0, 256, 5)))
    assert set(claim(engine, "all", None)) == set(ids)
    with engine.begin() as conn:
        single = claim_due(
            conn, now=NOW + LEASE, worker_id="one", limit=1_000, lease=LEASE, shard=Shard(0, 1)
        )
    assert {c.id for c in single} == set(ids)


def test_concurrent_workers_on_two_shards_never_overlap(engine: Engine) -> None:
    ids = seed(engine, [uuid.uuid4() for _ in range(400)])
    taken: dict[int, list[uuid.UUID]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            while batch := claim(engine, f"w{index}", Shard(index, 2), limit=20):
                taken[index] += batch
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    counts = Counter(taken[0] + taken[1])
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert all(shard_of(i, 2) == index for index in (0, 1) for i in taken[index])
    assert taken[0] and taken[1]


@pytest.mark.parametrize(
    ("index", "count", "message"),
    [
        (2, 2, r"shard index must be between 0 and 1 \(count 2\), got 2"),
        (-1, 2, r"shard index must be between 0 and 1 \(count 2\), got -1"),
        (0, 0, r"shard count must be between 1 and 256, got 0"),
        (0, 257, r"shard count must be between 1 and 256, got 257"),
    ],
)
def test_invalid_shards_are_refused_with_a_clear_message(index: int, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shard(index, count)


def test_shard_labels_and_shard_of_bounds() -> None:
    assert Shard(1, 2).label == "1of2"
    assert shard_of(uuid.UUID("0" * 30 + "ff"), 256) == 255
    assert shard_of(uuid.UUID("f" * 30 + "a1"), 2) == 1  # 0xa1 = 161
    assert shard_of(uuid.UUID("f" * 30 + "a0"), 2) == 0  # the first bytes (a v7 timestamp) do not count
    assert shard_of(uuid.UUID("0" * 32), 7) == 0
