"""Claiming due enrollments: the heart of exactly-once dispatch.

A worker claims a batch of due enrollments in ONE statement that marks them with its ``worker_id``
and a lease (``claimed_by``, ``lease_until``) and returns them::

    UPDATE enrollments SET claimed_by = :worker, lease_until = :now + :lease
    WHERE id IN (SELECT id FROM enrollments
                 WHERE state = 'active' AND next_due_at <= :now
                   AND (lease_until IS NULL OR lease_until <= :now)
                 ORDER BY next_due_at LIMIT :n)
    RETURNING ...

On PostgreSQL the subquery ends with ``FOR UPDATE SKIP LOCKED``, so concurrent workers pass over
each other's rows, and is written ``id = ANY(ARRAY(...))`` so the planner looks ids up in the
primary key. SQLite has no row locks: the engine starts every write transaction with ``BEGIN
IMMEDIATE``, so claims are serialized and each one sees the leases the previous one committed.
The caller commits the claim before doing slow work (rendering, provider calls), so the lease is
visible to every other worker.

A crashed worker's rows come back when their lease expires. Hence the fencing rule: **every later
write the worker makes to a claimed row is fenced** by ``AND claimed_by = :worker``, so a worker
whose lease expired (and whose rows another worker reclaimed) cannot advance them. Use
:func:`fenced_update` or :func:`advance` (which also releases the claim), and check their result:
a row that fails the fence was lost and must not be written to the outbox. Within the transaction
that writes the outbox, :func:`lock_held` takes the rows' locks first (PostgreSQL), so the fence
cannot be lost between the check and the commit. ``worker_id`` must be unique per running worker
(host, pid and a random part).

**Shards.** A claim may be limited to one :class:`Shard` of the enrollments: the rows whose
*lead's* UUID has a last byte that, modulo ``count``, is ``index`` (:func:`shard_of`). Sharding by
lead keeps every enrollment of a lead in one shard, so the dispatcher that decides a lead's steps
sees all of that lead's sends: two shards deciding at once can never both send to one lead past
the frequency cap. The last byte is random in every UUID version, including the time-ordered
version 7 ids leads get (``models/ids.py``), whose first bytes are a timestamp. The filter is
computed in SQL (``get_byte(uuid_send(lead_id), 15)`` on PostgreSQL; from the last two hex digits
of the 32-char text on SQLite), so ``count`` workers given shards ``0..count-1`` split the due rows
between them with no overlap; leases and fences still hold within each shard.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    Table,
    any_,
    bindparam,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)

from models.bulk import SqliteReader
from models.tables import Enrollment, EnrollmentState

ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
_E = ENROLLMENTS.c
MAX_SHARDS = 256
_HEX_DIGITS = "0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Shard:
    """One of ``count`` disjoint parts of the enrollments: those with
    ``shard_of(lead_id, count) == index`` (a lead's enrollments are all in one shard)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be between 1 and {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index must be between 0 and {self.count - 1} (count {self.count}), got {self.index}"
            )

    @property
    def label(self) -> str:
        """``1of2`` for the shard of index 1 out of 2 (index counted from 0)."""
        return f"{self.index}of{self.count}"


def shard_of(lead_id: uuid.UUID, count: int) -> int:
    """The shard among ``count`` of a lead's enrollments: the last byte of the lead's UUID modulo
    ``count`` (what the claim computes in SQL)."""
    return lead_id.bytes[15] % count


def _last_byte(conn: Connection) -> ColumnElement[int]:
    """The last byte of ``enrollments.lead_id``, in SQL, for this connection's dialect."""
    if conn.dialect.name == "postgresql":
        return type_coerce(func.get_byte(func.uuid_send(_E.lead_id), 15), Integer)
    # SQLite stores the UUID as 32 lowercase hex digits: the last two give the last byte.
    text_id = type_coerce(_E.lead_id, String)
    digits = literal(_HEX_DIGITS, String)
    high = func.instr(digits, func.substr(text_id, 31, 1)) - 1
    low = func.instr(digits, func.substr(text_id, 32, 1)) - 1
    return type_coerce(high * 16 + low, Integer)


def in_shard(conn: Connection, shard: Shard) -> ColumnElement[bool]:
    """The condition that keeps the enrollments of ``shard``."""
    return (_last_byte(conn) % shard.count) == shard.index


class ClaimedEnrollment(NamedTuple):
    """A due enrollment leased to one worker: what dispatch needs to run its next step. (A named
    tuple: a batch builds a thousand, and a frozen dataclass costs five times as much to build.)"""

    id: uuid.UUID
    lead_id: uuid.UUID
    sequence_name: str
    sequence_version: str
    step_index: int
    cycle: int
    next_due_at: datetime
    last_step_at: datetime | None
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class Advance:
    """Where a claimed enrollment goes after its step ran: next step, next due instant, or the end
    (``state`` completed/exited with ``next_due_at=None``)."""

    id: uuid.UUID
    step_index: int
    cycle: int
    next_due_at: datetime | None
    last_step_at: datetime | None
    state: str = EnrollmentState.ACTIVE.value
    exit_reason: str | None = None


_RETURNED = (
    _E.id,
    _E.lead_id,
    _E.sequence_name,
    _E.sequence_version,
    _E.step_index,
    _E.cycle,
    _E.next_due_at,
    _E.last_step_at,
    _E.enrolled_at,
)
#: The same columns without SQLAlchemy's result processing (ids as hex, instants as text).
_RETURNED_RAW = tuple(type_coerce(column, String).label(column.name) for column in _RETURNED)


def claim_due(
    conn: Connection,
    *,
    now: datetime,
    worker_id: str,
    limit: int,
    lease: timedelta,
    shard: Shard | None = None,
) -> list[ClaimedEnrollment]:
    """Lease up to ``limit`` active enrollments due at ``now`` to ``worker_id``, oldest due first.

    Rows under another worker's live lease are skipped; expired leases are taken over. With a
    ``shard``, only that shard's enrollments are claimed. The caller commits. The result is ordered
    by ``next_due_at``.
    """
    if limit <= 0:
        return []
    conditions = [
        _E.state == EnrollmentState.ACTIVE.value,
        _E.next_due_at <= now,
        or_(_E.lease_until.is_(None), _E.lease_until <= now),
    ]
    if shard is not None and shard.count > 1:
        conditions.append(in_shard(conn, shard))
    due = (
        select(_E.id)
        .where(*conditions)
        .order_by(_E.next_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL, ignored by SQLite
    )
    statement = (
        update(ENROLLMENTS).where(_claimable(conn, due)).values(claimed_by=worker_id, lease_until=now + lease)
    )
    if conn.dialect.name == "sqlite":
        claimed = _from_sqlite(conn.execute(statement.returning(*_RETURNED_RAW)).all())
    else:
        claimed = [ClaimedEnrollment(*row) for row in conn.execute(statement.returning(*_RETURNED)).all()]
    claimed.sort(key=lambda c: c.next_due_at)  # RETURNING order is unspecified
    return claimed


def _from_sqlite(rows: Sequence[Any]) -> list[ClaimedEnrollment]:
    """Claimed rows read as SQLite stores them (``_RETURNED_RAW``) and converted here, not by
    SQLAlchemy's per-value processors: the batch's thousand due times are a few distinct texts."""
    instant = SqliteReader().instant
    return [
        ClaimedEnrollment(
            uuid.UUID(hex=row[0]),
            uuid.UUID(hex=row[1]),
            row[2],
            row[3],
            row[4],
            row[5],
            instant(row[6]),  # type: ignore[arg-type]  # never NULL for a due row
            instant(row[7]),
            instant(row[8]),  # type: ignore[arg-type]
        )
        for row in rows
    ]


def _claimable(conn: Connection, due: Select[tuple[uuid.UUID]]) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        # ``id = ANY(ARRAY(subquery))`` makes PostgreSQL look the ids up in the primary key; with
        # ``IN (subquery)`` it hash-joins against a scan of the whole table.
        return _E.id == any_(func.array(due.scalar_subquery()))
    return _E.id.in_(due.scalar_subquery())


def release(conn: Connection, *, ids: Sequence[uuid.UUID], worker_id: str) -> int:
    """Give back rows still claimed by ``worker_id`` without advancing them; returns how many."""
    if not ids:
        return 0
    statement = (
        update(ENROLLMENTS)
        .where(_E.id.in_(ids), _E.claimed_by == worker_id)
        .values(claimed_by=None, lease_until=None)
    )
    return conn.execute(statement).rowcount


def extend_lease(conn: Connection, *, ids: Sequence[uuid.UUID], worker_id: str, until: datetime) -> int:
    """Push the lease of rows still claimed by ``worker_id`` to ``until``; returns how many."""
    if not ids:
        return 0
    statement = (
        update(ENROLLMENTS).where(_E.id.in_(ids), _E.claimed_by == worker_id).values(lease_until=until)
    )
    return conn.execute(statement).rowcount


def lock_held(conn: Connection, *, ids: Collection[uuid.UUID], worker_id: str) -> set[uuid.UUID]:
    """The subset of ``ids`` still claimed by ``worker_id``, locked until the transaction ends
    (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the write lock)."""
    if not ids:
        return set()
    statement = select(_E.id).where(_E.id.in_(list(ids)), _E.claimed_by == worker_id).with_for_update()
    return set(conn.execute(statement).scalars())


def fenced_update(
    conn: Connection, *, enrollment_id: uuid.UUID, worker_id: str, values: Mapping[str, Any]
) -> bool:
    """Apply ``values`` to one enrollment only if ``worker_id`` still holds its claim.

    Returns ``False`` when the fence refused the write (the lease was lost). Include
    ``claimed_by=None, lease_until=None`` in ``values`` to release the claim in the same write.
    """
    statement = update(ENROLLMENTS).where(_E.id == enrollment_id, _E.claimed_by == worker_id).values(**values)
    return conn.execute(statement).rowcount == 1


_ADVANCE = (
    update(ENROLLMENTS)
    .where(_E.id == bindparam("b_id"), _E.claimed_by == bindparam("b_worker"))
    .values(
        step_index=bindparam("b_step_index"),
        cycle=bindparam("b_cycle"),
        state=bindparam("b_state"),
        next_due_at=bindparam("b_next_due_at", type_=_E.next_due_at.type),
        last_step_at=bindparam("b_last_step_at", type_=_E.last_step_at.type),
        exit_reason=bindparam("b_exit_reason"),
        updated_at=bindparam("b_now", type_=_E.updated_at.type),
        claimed_by=None,
        lease_until=None,
    )
)


def advance(conn: Connection, *, worker_id: str, advances: Sequence[Advance], now: datetime) -> int:
    """Move claimed enrollments to their next step and release them, fenced on ``worker_id``, in
    one executemany. Returns how many rows were written: fewer than ``len(advances)`` means some
    claims were lost (use :func:`lock_held` first to know which)."""
    if not advances:
        return 0
    params = [
        {
            "b_id": item.id,
            "b_worker": worker_id,
            "b_step_index": item.step_index,
            "b_cycle": item.cycle,
            "b_state": item.state,
            "b_next_due_at": item.next_due_at,
            "b_last_step_at": item.last_step_at,
            "b_exit_reason": item.exit_reason,
            "b_now": now,
        }
        for item in advances
    ]
    return conn.execute(_ADVANCE, params).rowcount
