"""The score ledger: one row per score change (rule, points, event, time), so that every score is
explainable.

The rows add up to the scores:

- ``fit`` and ``qualification`` rows sum to ``leads.fit_score`` (a recomputed fit writes a
  ``fit.reset`` row cancelling the previous total, then the rules that match now);
- ``engagement`` rows are points earned at their ``created_at``; each fades by half every half-life,
  so the engagement at instant T is ``sum(points * 0.5 ** ((T - created_at) / half_life))``. Decay
  itself changes nothing that needs a row: it is this formula;
- ``status`` rows record a move between hot / warm / cold (0 points) and why it happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Table, select

from models.tables import ScoreEntry
from scoring.decay import decayed

LEDGER: Table = ScoreEntry.__table__  # type: ignore[attr-defined]
FIT_KINDS = frozenset({"fit", "qualification"})


class EntryKind(StrEnum):
    """What a ledger row explains."""

    FIT = "fit"
    QUALIFICATION = "qualification"
    ENGAGEMENT = "engagement"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class ScoreLine:
    """One ledger row before it is written: ``at`` is when its points start to count."""

    kind: EntryKind
    rule: str
    points: float
    detail: str = ""
    event_id: uuid.UUID | None = None
    at: datetime | None = None


def ledger_rows(lead_id: uuid.UUID, lines: Iterable[ScoreLine], *, now: datetime) -> list[dict[str, Any]]:
    """The rows to insert for ``lines`` of one lead."""
    return [
        {
            "id": uuid.uuid4(),
            "lead_id": lead_id,
            "kind": line.kind.value,
            "rule": line.rule,
            "points": float(line.points),
            "event_id": line.event_id,
            "detail": line.detail[:1000],
            "created_at": line.at or now,
        }
        for line in lines
    ]


def write_ledger(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ledger rows built by :func:`ledger_rows` (caller commits)."""
    if rows:
        conn.execute(LEDGER.insert(), list(rows))


@dataclass(frozen=True, slots=True)
class Explained:
    """A ledger row and what it contributes to the lead's score at the explanation instant."""

    kind: str
    rule: str
    points: float
    contribution: float
    detail: str
    event_id: uuid.UUID | None
    at: datetime


def explain(conn: Connection, *, lead_id: uuid.UUID, now: datetime, half_life: timedelta) -> list[Explained]:
    """Every ledger row of a lead, oldest first, with its contribution at ``now``: fit rows count in
    full, engagement rows faded by their age, status rows 0."""
    query = select(
        LEDGER.c.kind,
        LEDGER.c.rule,
        LEDGER.c.points,
        LEDGER.c.detail,
        LEDGER.c.event_id,
        LEDGER.c.created_at,
    ).where(LEDGER.c.lead_id == lead_id)
    explained = []
    for kind, rule, points, detail, event_id, at in sorted(conn.execute(query), key=_reading_order):
        if kind == EntryKind.ENGAGEMENT:
            contribution = decayed(points, at, now, half_life)
        else:
            contribution = points if kind in FIT_KINDS else 0.0
        explained.append(Explained(kind, rule, points, contribution, detail, event_id, at))
    return explained


def _reading_order(row: Any) -> tuple[datetime, int, str]:
    """Oldest first; rows written together read as they were decided: a fit reset, the
    qualification, the fit rules, engagement, then the status move they caused."""
    kind, rule, at = row[0], row[1], row[5]
    rank = 0 if rule == "fit.reset" else _KIND_RANK.get(kind, len(_KIND_RANK))
    return at, rank, rule


_KIND_RANK = {"qualification": 1, "fit": 2, "engagement": 3, "status": 4}


def totals(explained: Iterable[Explained]) -> tuple[float, float]:
    """(fit, engagement) as the ledger explains them."""
    fit = engagement = 0.0
    for row in explained:
        if row.kind in FIT_KINDS:
            fit += row.contribution
        elif row.kind == EntryKind.ENGAGEMENT:
            engagement += row.contribution
    return fit, engagement


def scored_event_ids(conn: Connection, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``event_ids`` that already have ledger rows (an event is scored once)."""
    if not event_ids:
        return set()
    query = select(LEDGER.c.event_id).where(LEDGER.c.event_id.in_(list(event_ids)))
    return {row for row in conn.execute(query).scalars() if row is not None}
