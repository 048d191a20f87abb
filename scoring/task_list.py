"""A salesperson's task list: open tasks, due first, with who to contact and how; and finding a
task from the short id a salesperson types."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Table, select

from models.tables import Lead, SalesTask, TaskState
from spirale.errors import SpiraleError

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
MIN_PREFIX = 6


class TaskLookupError(SpiraleError):
    """No task, or several, match what was typed."""


def open_tasks(conn: Connection, *, owner: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Open tasks (of ``owner``, or everyone's), the earliest due first, with the lead's details."""
    query = (
        select(
            TASKS.c.id,
            TASKS.c.due_at,
            TASKS.c.kind,
            TASKS.c.owner,
            TASKS.c.sequence_name,
            TASKS.c.step_id,
            TASKS.c.note,
            LEADS.c.first_name,
            LEADS.c.last_name,
            LEADS.c.company,
            LEADS.c.email,
            LEADS.c.phone,
            LEADS.c.status,
        )
        .join(LEADS, LEADS.c.id == TASKS.c.lead_id)
        .where(TASKS.c.state == TaskState.OPEN.value)
        .order_by(TASKS.c.due_at, TASKS.c.created_at)
        .limit(limit)
    )
    if owner is not None:
        query = query.where(TASKS.c.owner == owner)
    return [dict(row) for row in conn.execute(query).mappings()]


def find_task(conn: Connection, text: str) -> uuid.UUID:
    """The task whose id is ``text`` or starts with it (at least 6 characters, dashes optional)."""
    wanted = text.strip().lower().replace("-", "")
    if not MIN_PREFIX <= len(wanted) <= 32 or any(c not in "0123456789abcdef" for c in wanted):
        raise TaskLookupError(f"{text!r} is not a task id (give at least {MIN_PREFIX} hex characters)")
    if len(wanted) == 32:
        return uuid.UUID(wanted)
    found = _matching(conn, wanted, open_only=True) or _matching(conn, wanted, open_only=False)
    if len(found) != 1:
        raise TaskLookupError(f"{'no task' if not found else 'several tasks'} match {text!r}")
    return found[0]


def _matching(conn: Connection, prefix: str, *, open_only: bool) -> list[uuid.UUID]:
    query = select(TASKS.c.id)
    if open_only:
        query = query.where(TASKS.c.state == TaskState.OPEN.value)
    ids = [_hex(value) for value in conn.execute(query).scalars()]
    return [task_id for task_id in ids if task_id.hex.startswith(prefix)]


def _hex(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
