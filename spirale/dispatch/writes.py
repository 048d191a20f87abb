"""Flush a batch's decisions in one transaction with a few Core statements (no ORM in the hot
loop). The enrollment advances are fenced on the worker's lease: if any row was reclaimed by
another worker, the whole batch rolls back, so its outbox rows never exist twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table

from models.bulk import insert_rows, update_rows
from models.tables import Enrollment, OutboxMessage, SalesTask, VariantAssignment
from spirale.dispatch.batch import BatchWrites
from spirale.errors import SpiraleError

ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
ASSIGNMENTS: Table = VariantAssignment.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]

ADVANCED_COLUMNS = ("step_index", "cycle", "state", "next_due_at", "last_step_at", "exit_reason")


class LeaseLostError(SpiraleError):
    """Another worker reclaimed part of this batch (our lease expired): nothing of it was written."""


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL (idempotent re-decisions);
    returns the rows inserted, or -1 where the driver does not tell."""
    return insert_rows(conn, table, rows, ignore_duplicates=True)


def flush_decisions(conn: Connection, writes: BatchWrites) -> None:
    """Write outbox rows, advances, assignments and tasks of one batch (caller commits)."""
    insert_rows(conn, OUTBOX, writes.outbox)
    insert_rows(conn, ASSIGNMENTS, writes.assignments, ignore_duplicates=True)
    insert_rows(conn, TASKS, writes.tasks, ignore_duplicates=True)
    changed = update_rows(
        conn,
        ENROLLMENTS,
        writes.advances,
        set_columns=ADVANCED_COLUMNS,
        where={"id": "id", "claimed_by": "worker"},
        constants={"updated_at": writes.now, "claimed_by": None, "lease_until": None},
    )
    if changed >= 0 and changed != len(writes.advances):
        raise LeaseLostError(f"lease lost on {len(writes.advances) - changed} of {len(writes.advances)} rows")
