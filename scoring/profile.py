"""Everything Spirale knows about one lead, explained: status, fit and grade, engagement as it
stands now, the score ledger (each row with what it still contributes), enrollments, sales tasks,
suppressions and recent events. ``spirale lead show`` prints it; the API can return it as is."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select

from models.leads import normalize_email
from models.suppressions import address_hash, suppressed_hashes
from models.tables import Enrollment, Event, Lead, SalesTask
from scoring.decay import decayed
from scoring.fit import grade_of
from scoring.ledger import explain
from scoring.rules import ScoringRules

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
RECENT_EVENTS = 20


def lead_profile(
    conn: Connection, *, email: str, now: datetime, rules: ScoringRules
) -> dict[str, Any] | None:
    """The profile of the lead with this email, as plain JSON-ready data (``None``: no such lead).
    Raises ``ValueError`` when ``email`` is not an email address."""
    lead = conn.execute(select(LEADS).where(LEADS.c.email == normalize_email(email))).mappings().first()
    if lead is None:
        return None
    half_life = rules.engagement.half_life
    engagement = decayed(lead["engagement_score"], lead["engagement_at"], now, half_life)
    return {
        "id": str(lead["id"]),
        "email": lead["email"],
        "phone": lead["phone"],
        "name": " ".join(p for p in (lead["first_name"], lead["last_name"]) if p),
        "company": lead["company"],
        "job_title": lead["job_title"],
        "country": lead["country"],
        "status": lead["status"],
        "disqualified_reason": lead["disqualified_reason"],
        "owner": lead["owner"],
        "customer_class": lead["customer_class"],
        "fit": round(lead["fit_score"], 2),
        "grade": grade_of(lead["fit_score"], rules).value,
        "engagement": round(engagement, 2),
        "engagement_half_life_days": half_life.total_seconds() / 86400,
        "consent": {"email": lead["consent_email"], "sms": lead["consent_sms"]},
        "ledger": _ledger(conn, lead["id"], now, rules),
        "enrollments": _enrollments(conn, lead["id"]),
        "tasks": _tasks(conn, lead["id"]),
        "suppressions": _suppressions(conn, lead["email"], lead["phone"]),
        "events": _events(conn, lead["id"]),
        "as_of": now.isoformat(),
    }


def _ledger(conn: Connection, lead_id: Any, now: datetime, rules: ScoringRules) -> list[dict[str, Any]]:
    return [
        {
            "at": row.at.isoformat(),
            "kind": row.kind,
            "rule": row.rule,
            "points": row.points,
            "now": round(row.contribution, 2),
            "detail": row.detail,
            "event_id": str(row.event_id) if row.event_id else None,
        }
        for row in explain(conn, lead_id=lead_id, now=now, half_life=rules.engagement.half_life)
    ]


def _enrollments(conn: Connection, lead_id: Any) -> list[dict[str, Any]]:
    query = (
        select(
            ENROLLMENTS.c.sequence_name,
            ENROLLMENTS.c.state,
            ENROLLMENTS.c.step_index,
            ENROLLMENTS.c.next_due_at,
            ENROLLMENTS.c.exit_reason,
            ENROLLMENTS.c.enrolled_at,
        )
        .where(ENROLLMENTS.c.lead_id == lead_id)
        .order_by(ENROLLMENTS.c.enrolled_at)
    )
    return [_plain(row) for row in conn.execute(query).mappings()]


def _tasks(conn: Connection, lead_id: Any) -> list[dict[str, Any]]:
    query = (
        select(
            TASKS.c.id,
            TASKS.c.kind,
            TASKS.c.step_id,
            TASKS.c.owner,
            TASKS.c.state,
            TASKS.c.outcome,
            TASKS.c.due_at,
        )
        .where(TASKS.c.lead_id == lead_id)
        .order_by(TASKS.c.due_at)
    )
    return [_plain(row) for row in conn.execute(query).mappings()]


def _suppressions(conn: Connection, email: str | None, phone: str | None) -> list[str]:
    found = []
    for channel, address in (("email", email), ("sms", phone)):
        if address and suppressed_hashes(conn, channel=channel, hashes=[address_hash(channel, address)]):
            found.append(channel)
    return found


def _events(conn: Connection, lead_id: Any) -> list[dict[str, Any]]:
    query = (
        select(EVENTS.c.type, EVENTS.c.occurred_at, EVENTS.c.provider)
        .where(EVENTS.c.lead_id == lead_id)
        .order_by(EVENTS.c.occurred_at.desc())
        .limit(RECENT_EVENTS)
    )
    return [_plain(row) for row in conn.execute(query).mappings()]


def _plain(row: Any) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else _text(value) for key, value in row.items()
    }


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)
