"""Flush a batch's decisions in one transaction with a few Core statements (no ORM in the hot
loop). The enrollment advances are fenced on the worker's lease: if any row was reclaimed by
another worker, the whole batch rolls back, so its outbox rows never exist twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite

from models.tables import Enrollment, OutboxMessage, SalesTask, VariantAssignment
from spirale.dispatch.batch import BatchWrites
from spirale.errors import SpiraleError

ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
ASSIGNMENTS: Table = VariantAssignment.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]

ADVANCE = (
    update(ENROLLMENTS)
    .where(and_(ENROLLMENTS.c.id == bindparam("b_id"), ENROLLMENTS.c.claimed_by == bindparam("b_worker")))
    .values(
        step_index=bindparam("b_step_index"),
        cycle=bindparam("b_cycle"),
        state=bindparam("b_state"),
        next_due_at=bindparam("b_next_due_at"),
        last_step_at=bindparam("b_last_step_at"),
        exit_reason=bindparam("b_exit_reason"),
        updated_at=bindparam("b_now"),
        claimed_by=None,
        lease_until=None,
    )
)


class LeaseLostError(SpiraleError):
    """Another worker reclaimed part of this batch (our lease expired): nothing of it was written."""


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL (idempotent re-decisions)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), list(rows))


def flush_decisions(conn: Connection, writes: BatchWrites) -> None:
    """Write outbox rows, advances, assignments and tasks of one batch (caller commits)."""
    if writes.outbox:
        conn.execute(OUTBOX.insert(), writes.outbox)
    insert_ignoring_duplicates(conn, ASSIGNMENTS, writes.assignments)
    insert_ignoring_duplicates(conn, TASKS, writes.tasks)
    if writes.advances:
        result = conn.execute(ADVANCE, writes.advances)
        if result.rowcount >= 0 and result.rowcount != len(writes.advances):
            raise LeaseLostError(
                f"lease lost on {len(writes.advances) - result.rowcount} of {len(writes.advances)} rows"
            )
