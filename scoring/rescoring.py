"""Nightly rescoring: bring every lead's engagement to ``now`` (decay), move the leads whose status
changed, and route them (a lead that cooled down leaves sales or nurture for the next track; a
customer inactive too long becomes a former customer, a candidate for reactivation).

Leads go in batches (keyset pagination on the id, one transaction per batch, rows locked on
PostgreSQL so a concurrent event is never lost). The decay runs in SQL: one SELECT reads each
lead's engagement as it stands now (``scoring.decay.decayed_sql``), Python decides the moves, and
one UPDATE writes the decayed engagement of the whole batch; there is no ORM object and no
per-row statement. The report counts the moves per (from, to) for the flow's table artifact and
lists the tasks of leads that turned hot, whose owners are then notified.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, String, Table, and_, select, type_coerce, update

from models.tables import Lead, LeadStatus
from scoring.decay import decayed_sql
from scoring.engagement import record_moves
from scoring.routing import Router, RoutingResult
from scoring.rules import ScoringRules
from scoring.status import SCORED, StatusMove, held_by_sales, next_status, why
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
    rescorer = _Rescorer(
        now=now, rules=rules, router=Router(rules=rules, catalog=catalog, team=team), report=report
    )
    last: Any = None
    while True:
        with engine.begin() as conn:
            last = rescorer.batch(conn, after=last, size=batch)
        if last is None:
            return report


@dataclass
class _Rescorer:
    now: datetime
    rules: ScoringRules
    router: Router
    report: RescoreReport

    def batch(self, conn: Connection, *, after: Any, size: int) -> Any:
        """Rescore the leads after ``after``; returns the last id done (``None``: nothing left)."""
        lead_id = _raw_id(conn)
        engagement = decayed_sql(
            _C.engagement_score,
            _C.engagement_at,
            self.now,
            self.rules.engagement.half_life,
            conn.dialect.name,
        )
        rows = self._read(conn, lead_id, engagement, after=after, size=size)
        if not rows:
            return None
        first, last = after, rows[-1][0]
        self.report.batches += 1
        self.report.scanned += len(rows)
        moves = self._moves(conn, rows)
        # The same expression decays the stored values of exactly the rows just read.
        decay = self._scope(lead_id, first) & (lead_id <= last)
        decay &= (_C.engagement_score != 0.0) & (_C.engagement_at < self.now)
        conn.execute(update(LEADS).where(decay).values(engagement_score=engagement, engagement_at=self.now))
        record_moves(conn, moves, now=self.now)
        self.report.moves.update((m.old or "new", m.new) for m in moves)
        self.report.routing.merge(self.router.route(conn, moves=moves, now=self.now))
        return last

    def _read(
        self,
        conn: Connection,
        lead_id: ColumnElement[Any],
        engagement: ColumnElement[float],
        *,
        after: Any,
        size: int,
    ) -> Sequence[Any]:
        """The next batch: id, status, fit, engagement as it stands now, inactive customer or not."""
        inactive_since = self.now - self.rules.customers.inactive_after
        inactive = and_(_C.last_purchase_at.is_not(None), _C.last_purchase_at < inactive_since)
        query = select(lead_id, _C.status, _C.fit_score, engagement, inactive).where(
            self._scope(lead_id, after)
        )
        return conn.execute(query.order_by(_C.id).limit(size).with_for_update()).all()

    @staticmethod
    def _scope(lead_id: ColumnElement[Any], after: Any) -> ColumnElement[bool]:
        scope = _C.status != LeadStatus.DISQUALIFIED.value
        return scope if after is None else and_(scope, lead_id > after)

    def _moves(self, conn: Connection, rows: Sequence[Any]) -> list[StatusMove]:
        moves: list[StatusMove] = []
        cooling: list[tuple[Any, LeadStatus]] = []
        for raw_id, status, fit, engagement, inactive in rows:
            if status in SCORED:
                new = next_status(status, fit, engagement, self.rules)
                if new is None:
                    continue
                if status == LeadStatus.HOT.value:
                    cooling.append(((raw_id, status, fit, engagement), new))
                else:
                    moves.append(self._move(raw_id, status, new.value, why(fit, engagement, self.rules)))
            elif status == LeadStatus.CUSTOMER.value and inactive:
                reason = f"no purchase for {self.rules.customers.inactive_after.days} days"
                moves.append(self._move(raw_id, status, LeadStatus.FORMER_CUSTOMER.value, reason))
        held = held_by_sales(conn, [_uuid(row[0]) for row, _ in cooling], self.rules)
        for (raw_id, status, fit, engagement), new in cooling:
            if _uuid(raw_id) not in held:
                moves.append(self._move(raw_id, status, new.value, why(fit, engagement, self.rules)))
        return moves

    @staticmethod
    def _move(raw_id: Any, old: str, new: str, reason: str) -> StatusMove:
        return StatusMove(_uuid(raw_id), old, new, f"{reason} (decay)" if old in SCORED else reason)


def _raw_id(conn: Connection) -> ColumnElement[Any]:
    """The id column as the database returns it: SQLite's 32 hex characters are not turned into
    ``UUID`` objects for every row read (only the moved leads need one)."""
    return type_coerce(_C.id, String()) if conn.dialect.name == "sqlite" else _C.id


def _uuid(raw: Any) -> uuid.UUID:
    return raw if isinstance(raw, uuid.UUID) else uuid.UUID(hex=raw)
