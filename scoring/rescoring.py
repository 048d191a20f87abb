"""Nightly rescoring: bring every lead's engagement to ``now`` (decay), move the leads whose status
changed, and route them (a lead that cooled down leaves sales or nurture for the next track; a
customer inactive too long becomes a former customer, a candidate for reactivation).

A lead's engagement is stored as a value at an instant (``engagement_score`` at
``engagement_at``); decay is exact from there (``scoring.decay``), so the nightly run does not
rewrite a million rows to restate them: it reads every lead's engagement as it stands now, computed
in SQL (``scoring.decay.decayed_sql``), and writes only what changes: the leads that move, their
``status`` ledger rows and their routing. Leads go in batches (keyset pagination on the id, a
read-only snapshot per batch); a move is written only if the lead is still as it was read (same
status, same ``engagement_at``), so an event scored meanwhile is never overwritten. There is no ORM
object and no per-lead statement except for the few leads that move. The report counts the moves
per (from, to) for the flow's table artifact and lists the tasks of leads that turned hot, whose
owners are then notified.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    String,
    Table,
    and_,
    bindparam,
    select,
    type_coerce,
    update,
)

from models.db import read_only_connection
from models.tables import Lead, LeadStatus
from scoring.decay import decayed_sql
from scoring.ledger import EntryKind, ScoreLine, ledger_rows, write_ledger
from scoring.routing import Router, RoutingResult
from scoring.rules import ScoringRules
from scoring.status import SCORED, StatusMove, StatusTable, held_by_sales, why
from scoring.team import Team
from sequences.catalog import SequenceCatalog

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
_C = LEADS.c


@dataclass
class RescoreReport:
    """What a rescoring run did."""

    scanned: int = 0
    batches: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: int = 0  # moves not written: the lead changed since it was read
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
    """Decay and re-route every lead that is not disqualified, ``batch`` leads at a time."""
    report = RescoreReport()
    rescorer = _Rescorer(
        now=now, rules=rules, router=Router(rules=rules, catalog=catalog, team=team), report=report
    )
    last: Any = None
    while True:
        with read_only_connection(engine) as conn, conn.begin():
            rows, moves = rescorer.read(conn, after=last, size=batch)
        if not rows:
            return report
        last = rows[-1][0]
        if moves:
            with engine.begin() as conn:
                rescorer.write(conn, moves)


@dataclass(frozen=True, slots=True)
class _Move:
    """A move decided on a read, with what the lead looked like then (the write's guard)."""

    move: StatusMove
    raw_id: Any
    engagement_at: Any


@dataclass
class _Rescorer:
    now: datetime
    rules: ScoringRules
    router: Router
    report: RescoreReport

    def __post_init__(self) -> None:
        self.table = StatusTable.of(self.rules)

    def read(self, conn: Connection, *, after: Any, size: int) -> tuple[Sequence[Any], list[_Move]]:
        """The next batch after ``after`` and the moves it calls for."""
        engagement = decayed_sql(
            _C.engagement_score,
            _C.engagement_at,
            self.now,
            self.rules.engagement.half_life,
            conn.dialect.name,
        )
        inactive_since = self.now - self.rules.customers.inactive_after
        inactive = and_(_C.last_purchase_at.is_not(None), _C.last_purchase_at < inactive_since)
        lead_id, engaged_at = _raw(conn, _C.id), _raw(conn, _C.engagement_at)
        query = select(lead_id, _C.status, _C.fit_score, engagement, inactive, engaged_at).where(
            _C.status != LeadStatus.DISQUALIFIED.value
        )
        if after is not None:
            query = query.where(lead_id > after)
        rows = conn.execute(query.order_by(_C.id).limit(size)).all()
        self.report.batches += bool(rows)
        self.report.scanned += len(rows)
        return rows, self._moves(conn, rows)

    def write(self, conn: Connection, moves: list[_Move]) -> None:
        """Write the moves whose lead is unchanged since the read, their ledger rows, the routing."""
        guarded = (
            update(LEADS)
            .where(
                _raw(conn, _C.id) == bindparam("b_id"),
                _C.status == bindparam("b_old"),
                _raw(conn, _C.engagement_at).is_not_distinct_from(bindparam("b_at")),
            )
            .values(status=bindparam("b_new"), updated_at=self.now)
        )
        applied = []
        for item in moves:
            params = {
                "b_id": item.raw_id,
                "b_old": item.move.old,
                "b_at": item.engagement_at,
                "b_new": item.move.new,
            }
            if conn.execute(guarded, params).rowcount == 1:
                applied.append(item.move)
        self.report.skipped += len(moves) - len(applied)
        rows = []
        for move in applied:
            line = ScoreLine(
                EntryKind.STATUS, f"status.{move.new}", 0.0, f"{move.old} -> {move.new}: {move.reason}"
            )
            rows += ledger_rows(move.lead_id, [line], now=self.now)
        write_ledger(conn, rows)
        self.report.moves.update((m.old or "new", m.new) for m in applied)
        self.report.routing.merge(self.router.route(conn, moves=applied, now=self.now))

    def _moves(self, conn: Connection, rows: Sequence[Any]) -> list[_Move]:
        moves: list[_Move] = []
        cooling: list[tuple[Any, str]] = []
        decide = self.table.status
        for row in rows:
            _, status, fit, engagement, inactive, _ = row
            if status in SCORED:
                new = decide(fit, engagement)
                if new == status:
                    continue
                if status == LeadStatus.HOT.value:
                    cooling.append((row, new))
                else:
                    moves.append(self._move(row, new, why(fit, engagement, self.rules) + " (decay)"))
            elif status == LeadStatus.CUSTOMER.value and inactive:
                reason = f"no purchase for {self.rules.customers.inactive_after.days} days"
                moves.append(self._move(row, LeadStatus.FORMER_CUSTOMER.value, reason))
        held = held_by_sales(conn, [_uuid(row[0]) for row, _ in cooling], self.rules)
        for row, new in cooling:
            if _uuid(row[0]) not in held:
                moves.append(self._move(row, new, why(row[2], row[3], self.rules) + " (decay)"))
        return moves

    @staticmethod
    def _move(row: Any, new: str, reason: str) -> _Move:
        return _Move(StatusMove(_uuid(row[0]), row[1], new, reason), row[0], row[5])


def _raw(conn: Connection, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A column as the database returns it. On SQLite ids (32 hex characters) and instants (text)
    are not turned into Python objects for every row read, and compare exactly when bound back."""
    return type_coerce(column, String()) if conn.dialect.name == "sqlite" else column


def _uuid(raw: Any) -> uuid.UUID:
    return raw if isinstance(raw, uuid.UUID) else uuid.UUID(hex=raw)
