"""Lead status from the scores: hot, warm or cold, and the moves between them.

Only prospects are scored into a status. Disqualified leads, customers and former customers keep
theirs. A hot lead whose sales cadence is still running stays hot even if its engagement fades:
sales makes its attempts first, and the hand-back (``scoring.cadence``) decides what comes next.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, Table, select

from models.tables import LIVE_ENROLLMENT_STATES, Enrollment, LeadStatus
from scoring.fit import grade_of
from scoring.rules import Grade, ScoringRules

ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
SCORED = frozenset({LeadStatus.HOT.value, LeadStatus.WARM.value, LeadStatus.COLD.value})


@dataclass(frozen=True, slots=True)
class StatusMove:
    """A lead changing status (``old`` is ``None`` for a new lead), with the reason in words.
    ``sequence`` asks routing for a specific warm sequence (the one of a form)."""

    lead_id: uuid.UUID
    old: str | None
    new: str
    reason: str
    sequence: str | None = None


@dataclass(frozen=True, slots=True)
class StatusTable:
    """The grades and thresholds of the rules as plain numbers, to decide the status of many leads
    in a tight loop (nightly rescoring). A missing threshold is infinite: never reached."""

    cutoffs: tuple[float, float, float]  # least fit of grades A, B, C
    limits: tuple[tuple[float, float], ...]  # per grade A..D: least engagement to be (hot, warm)

    @classmethod
    def of(cls, rules: ScoringRules) -> StatusTable:
        grades = rules.fit.grades
        limits = tuple(
            (_limit(rules.thresholds[grade].hot), _limit(rules.thresholds[grade].warm)) for grade in Grade
        )
        return cls((grades.A, grades.B, grades.C), limits)

    def status(self, fit: float, engagement: float) -> str:
        """``"hot"``, ``"warm"`` or ``"cold"``. Engagement is compared to a hundredth of a point, so the
        minutes of decay between a download and its intake never flip a lead sitting exactly on a
        threshold (10 points of a download against a warm threshold of 10)."""
        a, b, c = self.cutoffs
        engagement = round(engagement, 2)
        hot, warm = self.limits[0 if fit >= a else 1 if fit >= b else 2 if fit >= c else 3]
        return _HOT if engagement >= hot else _WARM if engagement >= warm else _COLD


_HOT, _WARM, _COLD = LeadStatus.HOT.value, LeadStatus.WARM.value, LeadStatus.COLD.value


def _limit(value: float | None) -> float:
    return math.inf if value is None else value


def status_of(fit: float, engagement: float, rules: ScoringRules) -> LeadStatus:
    """Hot, warm or cold from the fit grade and the (already decayed) engagement."""
    return LeadStatus(StatusTable.of(rules).status(fit, engagement))


def next_status(
    current: str | None, fit: float, engagement: float, rules: ScoringRules, *, held_by_sales: bool = False
) -> LeadStatus | None:
    """The status a lead should move to, or ``None`` when it stays where it is."""
    if current is not None and current not in SCORED:
        return None
    computed = status_of(fit, engagement, rules)
    if held_by_sales and current == LeadStatus.HOT.value:
        return None
    return computed if computed.value != current else None


def why(fit: float, engagement: float, rules: ScoringRules) -> str:
    """The scores behind a status, in words (``"fit 55 (A), engagement 32.5"``)."""
    return f"fit {fit:g} ({grade_of(fit, rules).value}), engagement {engagement:.1f}"


def held_by_sales(conn: Connection, lead_ids: Collection[uuid.UUID], rules: ScoringRules) -> set[uuid.UUID]:
    """Those of ``lead_ids`` with a live enrollment in the hot sequence (the sales cadence)."""
    if not lead_ids:
        return set()
    query = select(ENROLLMENTS.c.lead_id).where(
        ENROLLMENTS.c.lead_id.in_(list(lead_ids)),
        ENROLLMENTS.c.sequence_name == rules.routing.hot,
        ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES),
    )
    return set(conn.execute(query).scalars())
