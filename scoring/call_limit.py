"""The legal limit on prospecting calls: at most ``max_calls`` attempts per person per
``call_period`` (Code de la consommation D223-9: 4 per 30 days), within the legal calling hours.

Open call tasks that would exceed the limit are deferred to the first legal slot after the oldest
counted call leaves the period, so a salesperson's list never shows an unlawful call as due; a
call outcome logged beyond the limit is refused (``scoring.cadence``). Customers are not
prospected: their calls are not limited here.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, bindparam, or_, select, update

from models.tables import Lead, LeadStatus, SalesTask, TaskState
from scoring.rules import CadenceSpec, ScoringRules
from sequences.catalog import SequenceCatalog
from sequences.planner import lead_zone
from sequences.schema import Channel, WindowSpec
from sequences.schema import Sequence as SequenceSpec
from sequences.windows import next_allowed

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
CALL = Channel.CALL.value
_MAX_PASSES = 16
_TICK = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class _Call:
    task_id: uuid.UUID
    lead_id: uuid.UUID
    state: str
    at: datetime  # done_at for a call made, due_at for a call planned


def calls_made(conn: Connection, *, lead_id: uuid.UUID, now: datetime, period: timedelta) -> list[datetime]:
    """When the calls of the last ``period`` were logged for one lead, oldest first."""
    query = select(TASKS.c.done_at).where(
        TASKS.c.lead_id == lead_id,
        TASKS.c.kind == CALL,
        TASKS.c.state == TaskState.DONE.value,
        TASKS.c.done_at > now - period,
    )
    return sorted(at for at in conn.execute(query).scalars() if at is not None)


def next_lawful_call(calls: list[datetime], *, at: datetime, cadence: CadenceSpec) -> datetime | None:
    """``None`` when one more call at ``at`` keeps every ``call_period`` window within the limit
    beside ``calls`` (made or planned), else the earliest instant worth trying instead."""
    period, limit = cadence.call_period, cadence.max_calls
    placed = sorted([*calls, at])
    for end in (t for t in placed if at <= t < at + period):
        inside = [t for t in placed if end - period < t <= end]
        if len(inside) > limit:
            # The window ending at ``end`` is full: wait until its oldest call has left it.
            return inside[0] + period + _TICK
    return None


def enforce_call_limit(
    conn: Connection,
    *,
    now: datetime,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    lead_ids: Collection[uuid.UUID] | None = None,
) -> int:
    """Defer the open call tasks (of ``lead_ids``, or of everyone) that would break the limit;
    returns how many were deferred. The caller commits."""
    calls = _load_calls(conn, now=now, period=rules.cadence.call_period, lead_ids=lead_ids)
    if not calls:
        return 0
    sequence = catalog.get(rules.routing.hot)
    window = sequence.window_for(Channel.CALL)
    zones = _zones(conn, sequence, calls.keys())
    moved: list[dict[str, Any]] = []
    for lead_id, lead_calls in calls.items():
        if lead_id in zones:
            moved += _defer(lead_calls, rules, window, zones[lead_id])
    if moved:
        statement = (
            update(TASKS)
            .where(TASKS.c.id == bindparam("b_id"))
            .values(due_at=bindparam("b_due", type_=TASKS.c.due_at.type))
        )
        conn.execute(statement, moved)
    return len(moved)


def _load_calls(
    conn: Connection, *, now: datetime, period: timedelta, lead_ids: Collection[uuid.UUID] | None
) -> dict[uuid.UUID, list[_Call]]:
    open_leads = select(TASKS.c.lead_id).where(TASKS.c.kind == CALL, TASKS.c.state == TaskState.OPEN.value)
    if lead_ids is not None:
        open_leads = open_leads.where(TASKS.c.lead_id.in_(list(lead_ids)))
    query = select(TASKS.c.id, TASKS.c.lead_id, TASKS.c.state, TASKS.c.done_at, TASKS.c.due_at).where(
        TASKS.c.kind == CALL,
        TASKS.c.lead_id.in_(open_leads.scalar_subquery()),
        or_(
            TASKS.c.state == TaskState.OPEN.value,
            (TASKS.c.state == TaskState.DONE.value) & (TASKS.c.done_at > now - period),
        ),
    )
    calls: dict[uuid.UUID, list[_Call]] = defaultdict(list)
    for task_id, lead_id, state, done_at, due_at in conn.execute(query):
        calls[lead_id].append(
            _Call(task_id, lead_id, state, done_at if state == TaskState.DONE.value else due_at)
        )
    return calls


def _zones(
    conn: Connection, sequence: SequenceSpec, lead_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[Any, str]]:
    """The time zone and country of each prospect (customers are left out)."""
    query = select(LEADS.c.id, LEADS.c.timezone, LEADS.c.country, LEADS.c.phone).where(
        LEADS.c.id.in_(list(lead_ids)), LEADS.c.status != LeadStatus.CUSTOMER.value
    )
    return {
        lead_id: lead_zone(sequence, {"timezone": tz, "country": country, "phone": phone})
        for lead_id, tz, country, phone in conn.execute(query)
    }


def _defer(
    lead_calls: list[_Call], rules: ScoringRules, window: WindowSpec, zone: tuple[Any, str]
) -> list[dict[str, Any]]:
    counted = [c.at for c in lead_calls if c.state == TaskState.DONE.value]
    moved = []
    for call in sorted(
        (c for c in lead_calls if c.state == TaskState.OPEN.value), key=lambda c: (c.at, c.task_id)
    ):
        due = call.at
        for _ in range(_MAX_PASSES):
            lawful = next_lawful_call(counted, at=due, cadence=rules.cadence)
            if lawful is None:
                break
            due = next_allowed(lawful, window, zone[0], zone[1], CALL).at
        counted.append(due)
        if due != call.at:
            moved.append({"b_id": call.task_id, "b_due": due})
    return moved
