"""Nightly rescoring: bring every lead's engagement to ``now`` (decay), move the leads whose status
changed, and route them (a lead that cooled down leaves sales or nurture for the next track; a
customer inactive too long becomes a former customer, a candidate for reactivation).

Leads are read and written in batches of Core statements (keyset pagination on the id, one
transaction per batch, rows locked on PostgreSQL so a concurrent event cannot be lost); there is
no ORM object per lead. The report counts the moves per (from, to) for the flow's table artifact
and lists the tasks of leads that turned hot, whose owners are then notified.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, select, update

from models.tables import Lead, LeadStatus
from scoring.decay import NEGLIGIBLE, decay_factor
from scoring.engagement import record_moves
from scoring.routing import Router, RoutingResult
from scoring.rules import ScoringRules
from scoring.status import SCORED, StatusMove, held_by_sales, next_status, why
from scoring.team import Team
from sequences.catalog import SequenceCatalog

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
_COLUMNS = (
    LEADS.c.id,
    LEADS.c.status,
    LEADS.c.fit_score,
    LEADS.c.engagement_score,
    LEADS.c.engagement_at,
    LEADS.c.last_purchase_at,
)


@dataclass
class RescoreReport:
    """What a rescoring run did."""

    scanned: int = 0
    decayed: int = 0
    batches: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    routing: RoutingResult = field(default_factory=RoutingResult)

    def rows(self) -> list[dict[str, Any]]:
        """One row per kind of move (``cold -> warm`` ...), most frequent first: the table artifact."""
        return [{"from": old, "to": new, "leads": n} for (old, new), n in self.moves.most_common()]

    @property
    def task_ids(self) -> list[uuid.UUID]:
        """Tasks of the leads that turned hot (their owners are to be notified)."""
        return self.routing.task_ids


def rescore_all(
    engine: Engine,
    *,
    now: datetime,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    batch: int = 10_000,
    team: Team | None = None,
) -> RescoreReport:
    """Decay and re-route every lead that is not disqualified, ``batch`` leads per transaction."""
    report = RescoreReport()
    router = Router(rules=rules, catalog=catalog, team=team)
    last: uuid.UUID | None = None
    while True:
        with engine.begin() as conn:
            last = _rescore_batch(
                conn, after=last, now=now, rules=rules, router=router, batch=batch, report=report
            )
        if last is None:
            return report


def _rescore_batch(
    conn: Connection,
    *,
    after: uuid.UUID | None,
    now: datetime,
    rules: ScoringRules,
    router: Router,
    batch: int,
    report: RescoreReport,
) -> uuid.UUID | None:
    """Rescore the next batch; returns its last id (``None`` when there was nothing left)."""
    query = select(*_COLUMNS).where(LEADS.c.status != LeadStatus.DISQUALIFIED.value)
    if after is not None:
        query = query.where(LEADS.c.id > after)
    rows = list(conn.execute(query.order_by(LEADS.c.id).limit(batch).with_for_update()))
    if not rows:
        return None
    report.batches += 1
    report.scanned += len(rows)
    engagement = _decay(conn, rows, now=now, rules=rules, report=report)
    moves = _moves(conn, rows, engagement, now=now, rules=rules)
    record_moves(conn, moves, now=now)
    report.moves.update((m.old or "new", m.new) for m in moves)
    report.routing.merge(router.route(conn, moves=moves, now=now))
    last: uuid.UUID = rows[-1].id
    return last


def _decay(
    conn: Connection, rows: list[Any], *, now: datetime, rules: ScoringRules, report: RescoreReport
) -> dict[uuid.UUID, float]:
    """Write each lead's engagement as it stands at ``now``; returns it by lead."""
    half_life = rules.engagement.half_life
    current: dict[uuid.UUID, float] = {}
    params = []
    for row in rows:
        score, at = row.engagement_score, row.engagement_at
        if not score or at is None or at >= now:
            current[row.id] = score
            continue
        value = score * decay_factor(now - at, half_life)
        value = 0.0 if abs(value) < NEGLIGIBLE else value
        current[row.id] = value
        params.append({"b_id": row.id, "b_score": value})
    if params:
        statement = (
            update(LEADS)
            .where(LEADS.c.id == bindparam("b_id"))
            .values(engagement_score=bindparam("b_score"), engagement_at=now)
        )
        conn.execute(statement, params)
        report.decayed += len(params)
    return current


def _moves(
    conn: Connection,
    rows: list[Any],
    engagement: dict[uuid.UUID, float],
    *,
    now: datetime,
    rules: ScoringRules,
) -> list[StatusMove]:
    moves: list[StatusMove] = []
    cooling: list[Any] = []
    inactive_since = now - rules.customers.inactive_after
    for row in rows:
        if row.status in SCORED:
            new = next_status(row.status, row.fit_score, engagement[row.id], rules)
            if new is None:
                continue
            if row.status == LeadStatus.HOT.value:
                cooling.append((row, new))
            else:
                moves.append(_move(row, new, engagement[row.id], rules))
        elif _inactive_customer(row, inactive_since):
            reason = f"no purchase since {row.last_purchase_at.date().isoformat()}"
            moves.append(StatusMove(row.id, row.status, LeadStatus.FORMER_CUSTOMER.value, reason))
    held = held_by_sales(conn, [row.id for row, _ in cooling], rules)
    moves += [_move(row, new, engagement[row.id], rules) for row, new in cooling if row.id not in held]
    return moves


def _inactive_customer(row: Any, since: datetime) -> bool:
    return bool(
        row.status == LeadStatus.CUSTOMER.value
        and row.last_purchase_at is not None
        and row.last_purchase_at < since
    )


def _move(row: Any, new: LeadStatus, engagement: float, rules: ScoringRules) -> StatusMove:
    return StatusMove(row.id, row.status, new.value, f"{why(row.fit_score, engagement, rules)} (decay)")
