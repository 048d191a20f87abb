"""Engagement: what a lead does (opens, clicks, replies, downloads, meetings; bounces and
unsubscribes count against it), as points that fade by half every half-life.

``apply_event_scores`` is called by the event processor with a batch of events: each event worth
points gets one ledger row (once: an event already in the ledger is skipped), the lead's stored
engagement is brought to the newest event and the points added, and leads whose status changes
are moved and returned, for routing (``scoring.routing.route_moves``) to act on.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update

from models.tables import EventType, Lead
from scoring.decay import NEGLIGIBLE, decayed
from scoring.ledger import EntryKind, ScoreLine, ledger_rows, scored_event_ids, write_ledger
from scoring.rules import ScoringRules
from scoring.status import StatusMove, held_by_sales, next_status, why

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
#: Actions the lead itself initiates: they refresh ``last_engaged_at`` (CNIL: a click counts as
#: contact initiated by the prospect, an open does not).
LEAD_INITIATED = frozenset(
    {
        EventType.CLICK.value,
        EventType.REPLY.value,
        EventType.SMS_REPLY.value,
        EventType.FORM_SUBMITTED.value,
        EventType.MEETING_BOOKED.value,
        EventType.CONVERTED.value,
        "webinar_attended",
        "pricing_page",
    }
)


@dataclass(frozen=True, slots=True)
class ScoredEvent:
    """An event worth points: when, what, and the ledger rule it is recorded under."""

    event_id: uuid.UUID | None
    lead_id: uuid.UUID
    type: str
    occurred_at: datetime
    points: float
    rule: str


def event_points(
    event_type: str, payload: Mapping[str, Any] | None, rules: ScoringRules
) -> tuple[float, str]:
    """What one event is worth, and the ledger rule naming why (a form download may be worth
    more for a given form: ``engagement.forms``)."""
    if event_type == EventType.FORM_SUBMITTED.value:
        form_id = (payload or {}).get("form_id")
        if isinstance(form_id, str) and form_id in rules.engagement.forms:
            return rules.engagement.forms[form_id], f"engagement.form.{form_id}"
    return rules.engagement.points.get(event_type, 0.0), f"engagement.{event_type}"


def scored_events(events: Iterable[Any], *, now: datetime, rules: ScoringRules) -> list[ScoredEvent]:
    """The events worth points (rows, mappings: ``id``, ``lead_id``, ``type``, ``occurred_at``,
    ``payload``). Events from the future are counted from ``now``."""
    scored = []
    for raw in events:
        event: Mapping[str, Any] = getattr(raw, "_mapping", raw)
        if event.get("lead_id") is None:
            continue
        points, rule = event_points(str(event["type"]), event.get("payload"), rules)
        if points:
            occurred = min(event.get("occurred_at") or now, now)
            scored.append(
                ScoredEvent(event.get("id"), event["lead_id"], str(event["type"]), occurred, points, rule)
            )
    return scored


def apply_event_scores(
    conn: Connection, *, events: Sequence[Any], now: datetime, rules: ScoringRules
) -> list[StatusMove]:
    """Score a batch of events (caller commits); returns the status moves it caused."""
    scored = scored_events(events, now=now, rules=rules)
    already = scored_event_ids(conn, [e.event_id for e in scored if e.event_id is not None])
    by_lead: dict[uuid.UUID, list[ScoredEvent]] = defaultdict(list)
    for event in scored:
        if event.event_id is None or event.event_id not in already:
            by_lead[event.lead_id].append(event)
    return add_engagement(conn, by_lead=by_lead, now=now, rules=rules)


_LEAD_COLUMNS = (
    LEADS.c.id,
    LEADS.c.status,
    LEADS.c.fit_score,
    LEADS.c.engagement_score,
    LEADS.c.engagement_at,
    LEADS.c.last_engaged_at,
)
_UPDATE = (
    update(LEADS)
    .where(LEADS.c.id == bindparam("b_id"))
    .values(
        engagement_score=bindparam("b_score"),
        engagement_at=bindparam("b_at", type_=LEADS.c.engagement_at.type),
        last_engaged_at=bindparam("b_engaged", type_=LEADS.c.last_engaged_at.type),
        updated_at=bindparam("b_now", type_=LEADS.c.updated_at.type),
    )
)


def add_engagement(
    conn: Connection, *, by_lead: Mapping[uuid.UUID, list[ScoredEvent]], now: datetime, rules: ScoringRules
) -> list[StatusMove]:
    """Add scored events to their leads' engagement, write the ledger, move statuses."""
    if not by_lead:
        return []
    leads = {row.id: row for row in conn.execute(select(*_LEAD_COLUMNS).where(LEADS.c.id.in_(list(by_lead))))}
    held = held_by_sales(conn, list(leads), rules)
    updates, ledger, moves = [], [], []
    for lead_id, lead in leads.items():
        events = sorted(by_lead[lead_id], key=lambda e: e.occurred_at)
        score, at = _accumulate(lead.engagement_score, lead.engagement_at, events, rules)
        engaged = latest(lead.last_engaged_at, *_initiated(events))
        updates.append({"b_id": lead_id, "b_score": score, "b_at": at, "b_engaged": engaged, "b_now": now})
        ledger += ledger_rows(lead_id, (_line(e) for e in events), now=now)
        current = decayed(score, at, now, rules.engagement.half_life)
        new = next_status(lead.status, lead.fit_score, current, rules, held_by_sales=lead_id in held)
        if new is not None:
            reason = f"{why(lead.fit_score, current, rules)} after {events[-1].type}"
            moves.append(StatusMove(lead_id, lead.status, new.value, reason))
    conn.execute(_UPDATE, updates)
    write_ledger(conn, ledger)
    record_moves(conn, moves, now=now)
    return moves


def _accumulate(
    score: float, at: datetime | None, events: Sequence[ScoredEvent], rules: ScoringRules
) -> tuple[float, datetime]:
    """The engagement at the newest of ``at`` and the events, with every event's points added."""
    half_life = rules.engagement.half_life
    reference = latest(at, *(e.occurred_at for e in events))
    if reference is None:
        raise ValueError("accumulating engagement needs at least one instant")
    total = decayed(score, at, reference, half_life)
    total += sum(decayed(e.points, e.occurred_at, reference, half_life) for e in events)
    return (0.0 if abs(total) < NEGLIGIBLE else total), reference


def latest(*instants: datetime | None) -> datetime | None:
    """The newest of ``instants`` that are set."""
    return max((i for i in instants if i is not None), default=None)


def _initiated(events: Iterable[ScoredEvent]) -> list[datetime]:
    return [e.occurred_at for e in events if e.type in LEAD_INITIATED]


def _line(event: ScoredEvent) -> ScoreLine:
    detail = f"{event.type.replace('_', ' ')}: {event.points:+g} points"
    return ScoreLine(
        EntryKind.ENGAGEMENT, event.rule, event.points, detail, event.event_id, event.occurred_at
    )


_STATUS = (
    update(LEADS)
    .where(LEADS.c.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), updated_at=bindparam("b_now", type_=LEADS.c.updated_at.type))
)


def record_moves(conn: Connection, moves: Sequence[StatusMove], *, now: datetime) -> None:
    """Write the new statuses and one ``status`` ledger row per move (caller commits)."""
    if not moves:
        return
    conn.execute(_STATUS, [{"b_id": m.lead_id, "b_status": m.new, "b_now": now} for m in moves])
    rows = []
    for move in moves:
        line = ScoreLine(
            EntryKind.STATUS, f"status.{move.new}", 0.0, f"{move.old or 'new'} -> {move.new}: {move.reason}"
        )
        rows += ledger_rows(move.lead_id, [line], now=now)
    write_ledger(conn, rows)
