"""Tying provider events to our rows: which outbox message and which lead an event is about, and
which address it names. Provider hints (echoed outbox ids, message ids, addresses) are looked up in
the database in one query per kind for a whole batch; a hint that matches nothing is dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, Table, select

from channels.webhooks import NormalizedEvent
from models.leads import normalize_phone
from models.suppressions import canonical_address
from models.tables import EventType, Lead, OutboxMessage

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
#: Events whose payload ``From`` is the lead (inbound SMS); status callbacks name it in ``To``.
INBOUND_SMS = frozenset(
    {EventType.SMS_STOP.value, EventType.SMS_START.value, EventType.SMS_HELP.value, EventType.SMS_REPLY.value}
)


@dataclass(frozen=True, slots=True)
class Target:
    """The outbox row and the lead an event is about, when known."""

    outbox_id: uuid.UUID | None
    lead_id: uuid.UUID | None


def resolve_targets(conn: Connection, events: Sequence[NormalizedEvent]) -> list[Target]:
    """One :class:`Target` per event, in order: the outbox row from the echoed outbox id or the
    provider message id; the lead from that row, else the echoed lead id, else the address."""
    by_id = _outbox_by(conn, OUTBOX.c.id, {u for e in events if (u := as_uuid(e.outbox_id))})
    by_message = _outbox_by(
        conn, OUTBOX.c.provider_message_id, {e.provider_message_id for e in events if e.provider_message_id}
    )
    hinted = {u for e in events if (u := as_uuid(e.lead_hint))}
    known_leads = (
        set(conn.execute(select(LEADS.c.id).where(LEADS.c.id.in_(hinted))).scalars()) if hinted else set()
    )
    by_address = _leads_by_address(conn, (e.address for e in events if e.address))
    targets = []
    for event in events:
        outbox = by_id.get(as_uuid(event.outbox_id)) or by_message.get(event.provider_message_id)
        hint = as_uuid(event.lead_hint)
        lead_id = (
            (outbox[1] if outbox else None)
            or (hint if hint in known_leads else None)
            or by_address.get(_address_key(event.address) or "")
        )
        targets.append(Target(outbox_id=outbox[0] if outbox else None, lead_id=lead_id))
    return targets


def address_of(conn: Connection, row: Row[Any], channel: str) -> str | None:
    """The email or phone number an event names: from the provider payload, else the lead's."""
    payload = row.payload or {}
    if channel == "email":
        found = payload.get("email")
    elif row.type in INBOUND_SMS:
        found = payload.get("From")
    else:
        found = payload.get("To")
    if isinstance(found, str) and found:
        return found
    if row.lead_id is None:
        return None
    column = LEADS.c.email if channel == "email" else LEADS.c.phone
    value = conn.execute(select(column).where(LEADS.c.id == row.lead_id)).scalar_one_or_none()
    return str(value) if value else None


def as_uuid(value: object) -> uuid.UUID | None:
    """``value`` as a UUID, or ``None`` when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _outbox_by(conn: Connection, column: Any, keys: set[Any]) -> dict[Any, tuple[uuid.UUID, uuid.UUID]]:
    if not keys:
        return {}
    query = select(column, OUTBOX.c.id, OUTBOX.c.lead_id).where(column.in_(list(keys)))
    return {key: (outbox_id, lead_id) for key, outbox_id, lead_id in conn.execute(query)}


def _address_key(address: str | None) -> str | None:
    if not address:
        return None
    if "@" in address:
        return canonical_address("email", address)
    try:
        return normalize_phone(address)
    except ValueError:
        return None


def _leads_by_address(conn: Connection, addresses: Iterable[str]) -> dict[str, uuid.UUID]:
    keys = {key for address in addresses if (key := _address_key(address))}
    emails = [k for k in keys if "@" in k]
    phones = [k for k in keys if "@" not in k]
    found: dict[str, uuid.UUID] = {}
    if emails:
        by_email = select(LEADS.c.email, LEADS.c.id).where(LEADS.c.email.in_(emails))
        found.update((email, lead_id) for email, lead_id in conn.execute(by_email))
    if phones:
        query = (
            select(LEADS.c.phone, LEADS.c.id).where(LEADS.c.phone.in_(phones)).order_by(LEADS.c.created_at)
        )
        for phone, lead_id in conn.execute(query):
            found.setdefault(phone, lead_id)
    return found


def _existing_leads(conn: Connection, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    return set(conn.execute(select(LEADS.c.id).where(LEADS.c.id.in_(list(ids)))).scalars())
