"""Everything the send-time checks need about one claimed batch, read in a few queries.

The batch is "the enrollments this worker holds the lease of" (a batch's rows are released as it
is written), so each query selects by ``claimed_by`` through a subquery instead of binding a
thousand lead ids: the partial index ``ix_enrollments_claimed`` makes that lookup cheap.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, select

from models.suppressions import address_hash, suppressed_hashes
from models.tables import Enrollment, Event, Lead, OutboxMessage, OutboxState, VariantAssignment
from scoring.promotion import current_promotions
from spirale.dispatch.decide import EXIT_EVENT_TYPES, BatchFacts, lead_facts

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
ASSIGNMENTS: Table = VariantAssignment.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]

LEAD_FIELDS = (
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "company",
    "job_title",
    "country",
    "timezone",
    "status",
    "owner",
    "consent_email",
    "consent_sms",
)
LEAD_COLUMNS = tuple(LEADS.c[name] for name in LEAD_FIELDS)
#: Sends that count against the frequency cap (everything that may have reached the lead).
LIVE_SEND_STATES = (
    OutboxState.PENDING.value,
    OutboxState.SENDING.value,
    OutboxState.SENT.value,
    OutboxState.UNKNOWN.value,
)


def load_facts(conn: Connection, *, worker_id: str, now: datetime, cap_window: timedelta) -> BatchFacts:
    """The leads, suppressions, recent sends, assignments, exit events and promotions of the batch
    currently leased to ``worker_id``."""
    batch_leads = select(ENROLLMENTS.c.lead_id).where(ENROLLMENTS.c.claimed_by == worker_id)
    if conn.dialect.name == "sqlite":
        leads = _sqlite_leads(conn, worker_id)
    else:
        leads = _leads(conn, select(*LEAD_COLUMNS).where(LEADS.c.id.in_(batch_leads)))
    return BatchFacts(
        leads=leads,
        suppressed=_suppressed(conn, leads.values()),
        recent_sends=_recent_sends(conn, batch_leads, now - cap_window),
        assignments=_assignments(conn, batch_leads),
        exit_events=_exit_events(conn, batch_leads),
        promotions=current_promotions(conn),
    )


def lead_rows(conn: Connection, lead_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The same per-lead facts for explicit ids (recovery works on outbox rows, not on a claim)."""
    return _leads(conn, select(*LEAD_COLUMNS).where(LEADS.c.id.in_(list(lead_ids))))


def _leads(conn: Connection, query: Any) -> dict[uuid.UUID, dict[str, Any]]:
    # Plain tuples zipped with the names: a RowMapping per lead costs more than the query itself.
    return {
        values[0]: lead_facts(dict(zip(LEAD_FIELDS, values, strict=True)))
        for values in conn.execute(query).all()
    }


_SQLITE_LEADS = (
    f"SELECT {', '.join(LEAD_FIELDS)} FROM leads "
    "WHERE id IN (SELECT lead_id FROM enrollments WHERE claimed_by = ?)"
)


def _sqlite_leads(conn: Connection, worker_id: str) -> dict[uuid.UUID, dict[str, Any]]:
    """``_leads`` as SQL text: ids from their hex, flags from 0/1; every other field is text."""
    leads: dict[uuid.UUID, dict[str, Any]] = {}
    for values in conn.exec_driver_sql(_SQLITE_LEADS, (worker_id,)).fetchall():
        row = dict(zip(LEAD_FIELDS, values, strict=True))
        row["id"] = lead_id = uuid.UUID(hex=values[0])
        row["consent_email"], row["consent_sms"] = bool(row["consent_email"]), bool(row["consent_sms"])
        leads[lead_id] = lead_facts(row)
    return leads


def _suppressed(conn: Connection, leads: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    by_channel: dict[str, set[str]] = {"email": set(), "sms": set()}
    for lead in leads:
        # Hashed once per batch: the decider reads ``hash_email`` / ``hash_sms`` back.
        if lead["email"]:
            lead["hash_email"] = address_hash("email", lead["email"])
            by_channel["email"].add(lead["hash_email"])
        if lead["phone"]:
            lead["hash_sms"] = address_hash("sms", lead["phone"])
            by_channel["sms"].add(lead["hash_sms"])
    return {
        channel: suppressed_hashes(conn, channel=channel, hashes=hashes) if hashes else set()
        for channel, hashes in by_channel.items()
    }


def _recent_sends(conn: Connection, batch_leads: Any, since: datetime) -> dict[uuid.UUID, list[datetime]]:
    # The state is filtered here, not in SQL: given ``state IN (...)`` SQLite's planner picks the
    # (low-cardinality) state index and walks every sent row ever, instead of the batch's leads.
    query = select(OUTBOX.c.lead_id, OUTBOX.c.created_at, OUTBOX.c.state).where(
        OUTBOX.c.lead_id.in_(batch_leads),
        OUTBOX.c.created_at > since,
        OUTBOX.c.transactional.is_(False),
    )
    recent: dict[uuid.UUID, list[datetime]] = {}
    for lead_id, created_at, state in conn.execute(query).all():
        if state in LIVE_SEND_STATES:
            recent.setdefault(lead_id, []).append(created_at)
    return recent


def _assignments(conn: Connection, batch_leads: Any) -> dict[tuple[uuid.UUID, str, str], str]:
    query = select(
        ASSIGNMENTS.c.lead_id, ASSIGNMENTS.c.sequence_name, ASSIGNMENTS.c.step_id, ASSIGNMENTS.c.variant
    ).where(ASSIGNMENTS.c.lead_id.in_(batch_leads))
    return {(lead, seq, step): variant for lead, seq, step, variant in conn.execute(query).all()}


def _exit_events(conn: Connection, batch_leads: Any) -> dict[uuid.UUID, list[tuple[str, datetime]]]:
    query = select(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.occurred_at).where(
        EVENTS.c.lead_id.in_(batch_leads), EVENTS.c.type.in_([str(t) for t in EXIT_EVENT_TYPES])
    )
    events: dict[uuid.UUID, list[tuple[str, datetime]]] = {}
    for lead_id, event_type, occurred_at in conn.execute(query).all():
        events.setdefault(lead_id, []).append((event_type, occurred_at))
    return events
