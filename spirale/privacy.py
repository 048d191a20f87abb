"""GDPR and CNIL retention: export everything held about a person, erase it, and purge prospects
who have not engaged for years.

Which rows belong to a lead is derived from the schema, not listed by hand: a row is tied to the lead
when its ``lead_id`` names the lead, or when a foreign key points at a row already tied to it (an
event of the lead's outbox message, the ledger line of that event...). A table added later is thus
exported and erased without changing this module. Erasure also removes the events that name the
person's address without a lead id (an inbound SMS or a bounce that matched no lead), and keeps only
a hashed suppression per channel, so a re-import of the same address stays blocked.

Retention follows the CNIL: prospect data is kept 3 years after the last contact the prospect
initiated (a click counts, an open does not). Customers are kept; a former customer's last purchase
counts as contact. A purged prospect gets no suppression (it may come back of its own accord), but
the opposition list keeps its hashes with the clear addresses dropped.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    Text,
    and_,
    cast,
    delete,
    false,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlmodel import SQLModel

from models.leads import normalize_email
from models.suppressions import SUPPRESSIONS, address_hash, suppress
from models.tables import Event, FormSubmission, Lead, LeadStatus
from scoring.engagement import LEAD_INITIATED

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
FORMS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
ERASURE_REASON = "gdpr_erasure"
DEFAULT_RETENTION_YEARS = 3
# Leads purged per transaction statement set: keeps every IN list far below the drivers' limits.
PURGE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What an erasure did: rows deleted per table, and the channels now blocked by hash only."""

    lead_found: bool
    deleted: Mapping[str, int]
    suppressed_channels: tuple[str, ...]

    @property
    def rows_deleted(self) -> int:
        return sum(self.deleted.values())


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a retention purge removed (or, on a dry run, would remove)."""

    cutoff: datetime
    dry_run: bool
    leads: int
    by_status: Mapping[str, int] = field(default_factory=dict)
    rows: Mapping[str, int] = field(default_factory=dict)


# --- which rows belong to a lead -------------------------------------------------------------------


def _tied_conditions(
    lead_ids: ColumnElement[bool], extras: Mapping[Table, ColumnElement[bool]]
) -> dict[Table, ColumnElement[bool]]:
    """For each table holding rows tied to the leads, the condition selecting them, parents first.
    ``lead_ids`` selects the leads; ``extras`` adds rows a table ties to the person otherwise."""
    conditions: dict[Table, ColumnElement[bool]] = {LEADS: lead_ids}
    for table in SQLModel.metadata.sorted_tables:
        if table is LEADS or table is SUPPRESSIONS:
            continue
        parts: list[ColumnElement[bool]] = []
        linked = {key.parent.name for key in table.foreign_keys}
        if "lead_id" in table.c and "lead_id" not in linked:
            parts.append(table.c.lead_id.in_(select(LEADS.c.id).where(lead_ids)))
        for key in table.foreign_keys:
            parent = key.column.table
            if parent in conditions:
                parts.append(key.parent.in_(select(key.column).where(conditions[parent])))
        if table in extras:
            parts.append(extras[table])
        if parts:
            conditions[table] = or_(*parts)
    return conditions


def _person_extras(email: str | None, phone: str | None) -> dict[Table, ColumnElement[bool]]:
    """Rows that name the person's address without being linked to the lead."""
    payload = func.lower(cast(EVENTS.c.payload, Text))
    # Matched as a whole JSON string, so that another address containing this one is left alone.
    mentions = [
        payload.contains(f'"{address.lower()}"', autoescape=True) for address in (email, phone) if address
    ]
    extras: dict[Table, ColumnElement[bool]] = {}
    if mentions:
        extras[EVENTS] = and_(EVENTS.c.lead_id.is_(None), or_(*mentions))
    if email:
        extras[FORMS] = func.lower(FORMS.c.email) == email
    return extras


def _addresses(lead: Mapping[str, Any] | None, email: str) -> dict[str, str]:
    addresses = {"email": email}
    if lead is not None and lead.get("phone"):
        addresses["sms"] = str(lead["phone"])
    return addresses


def _suppression_condition(addresses: Mapping[str, str]) -> ColumnElement[bool]:
    matches = [
        and_(SUPPRESSIONS.c.channel == channel, SUPPRESSIONS.c.address_hash == address_hash(channel, address))
        for channel, address in addresses.items()
    ]
    return or_(*matches) if matches else false()


def _find_lead(conn: Connection, email: str) -> dict[str, Any] | None:
    query = select(LEADS).where(LEADS.c.email == email).with_for_update()
    row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


# --- export -----------------------------------------------------------------------------------------


def export_lead(conn: Connection, *, email: str) -> dict[str, Any]:
    """Everything held about the person with this email, as JSON-ready data: the lead and its
    consents, then every tied row by table (enrollments, variant_assignments, outbox, events,
    score_ledger, sales_tasks, form_submissions...), and the suppressions of its addresses.
    Raises ``ValueError`` when ``email`` is not an email address."""
    canonical = normalize_email(email)
    row = conn.execute(select(LEADS).where(LEADS.c.email == canonical)).mappings().first()
    lead = dict(row) if row is not None else None
    lead_id = lead["id"] if lead is not None else None
    conditions = _tied_conditions(LEADS.c.id == lead_id, _person_extras(canonical, _phone(lead)))
    export: dict[str, Any] = {
        "email": canonical,
        "lead": _jsonable(lead),
        "consents": _consents(lead),
    }
    for table, condition in conditions.items():
        if table is LEADS:
            continue
        rows = conn.execute(select(table).where(condition)).mappings()
        export[table.name] = [_jsonable(dict(row)) for row in rows]
    suppressions = select(SUPPRESSIONS).where(_suppression_condition(_addresses(lead, canonical)))
    export["suppressions"] = [_jsonable(dict(row)) for row in conn.execute(suppressions).mappings()]
    return export


def _phone(lead: Mapping[str, Any] | None) -> str | None:
    return str(lead["phone"]) if lead is not None and lead.get("phone") else None


def _consents(lead: Mapping[str, Any] | None) -> dict[str, Any]:
    if lead is None:
        return {}
    return {
        channel: {
            "given": bool(lead[f"consent_{channel}"]),
            "source": lead[f"consent_{channel}_source"],
            "at": _jsonable(lead[f"consent_{channel}_at"]),
        }
        for channel in ("email", "sms")
    }


def _jsonable(value: Any) -> Any:
    """``value`` with UUIDs, instants, decimals and enums turned into JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    return value


# --- erasure ----------------------------------------------------------------------------------------


def erase_lead(conn: Connection, *, email: str, now: datetime) -> ErasureReport:
    """Erase the person with this email: every row tied to the lead and every unlinked event naming
    its addresses is deleted; what remains is one suppression per channel (email, and SMS when the
    lead had a phone) holding only the address hash, so a re-import stays blocked. An address with
    no lead is still suppressed. The caller commits. Raises ``ValueError`` for a malformed email."""
    canonical = normalize_email(email)
    lead = _find_lead(conn, canonical)
    lead_id = lead["id"] if lead is not None else None
    addresses = _addresses(lead, canonical)
    conditions = _tied_conditions(LEADS.c.id == lead_id, _person_extras(canonical, _phone(lead)))
    deleted = _delete(conn, conditions)
    for channel, address in addresses.items():
        suppress(
            conn,
            channel=channel,
            address=address,
            reason=ERASURE_REASON,
            source="privacy",
            now=now,
            keep_address=False,
        )
    _drop_clear_addresses(conn, _suppression_condition(addresses))
    return ErasureReport(
        lead_found=lead is not None, deleted=deleted, suppressed_channels=tuple(sorted(addresses))
    )


def _delete(conn: Connection, conditions: Mapping[Table, ColumnElement[bool]]) -> dict[str, int]:
    """Delete children before parents; returns the rows deleted per table (tables with none left out)."""
    deleted: dict[str, int] = {}
    for table, condition in reversed(list(conditions.items())):
        count = conn.execute(delete(table).where(condition)).rowcount
        if count:
            deleted[table.name] = count
    return deleted


def _drop_clear_addresses(conn: Connection, condition: ColumnElement[bool]) -> None:
    conn.execute(
        update(SUPPRESSIONS).where(condition, SUPPRESSIONS.c.address.is_not(None)).values(address=None)
    )


# --- retention purge --------------------------------------------------------------------------------


def inactive_condition(cutoff: datetime) -> ColumnElement[bool]:
    """Prospects (customers excluded) with no contact they initiated since ``cutoff``: no recent
    ``last_engaged_at``, purchase, lead-initiated event or form download, and collected before it."""
    recent_event = (
        select(EVENTS.c.id)
        .where(
            EVENTS.c.lead_id == LEADS.c.id,
            EVENTS.c.type.in_(sorted(LEAD_INITIATED)),
            EVENTS.c.occurred_at >= cutoff,
        )
        .exists()
    )
    recent_form = select(FORMS.c.id).where(FORMS.c.lead_id == LEADS.c.id, FORMS.c.received_at >= cutoff)
    return and_(
        LEADS.c.status != LeadStatus.CUSTOMER.value,
        LEADS.c.created_at < cutoff,
        or_(LEADS.c.last_engaged_at.is_(None), LEADS.c.last_engaged_at < cutoff),
        or_(LEADS.c.last_purchase_at.is_(None), LEADS.c.last_purchase_at < cutoff),
        not_(recent_event),
        not_(recent_form.exists()),
    )


def purge_inactive(
    conn: Connection, *, now: datetime, years: int = DEFAULT_RETENTION_YEARS, dry_run: bool = False
) -> PurgeReport:
    """Delete the prospects who initiated no contact for ``years`` calendar years, with every row
    tied to them, and drop the clear addresses of their suppressions (hashes are kept). With
    ``dry_run`` nothing changes and the report counts what would go. The caller commits."""
    if years < 1:
        raise ValueError(f"the retention period must be at least 1 year, got {years}")
    cutoff = now - relativedelta(years=years)
    found = list(conn.execute(select(LEADS.c.id).where(inactive_condition(cutoff))).scalars())
    by_status: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    for chunk in _chunks(found, PURGE_CHUNK):
        selected = _lock_inactive(conn, chunk, cutoff, dry_run=dry_run)
        by_status.update(str(status) for _, status in selected)
        rows.update(_purge_chunk(conn, [lead_id for lead_id, _ in selected], dry_run=dry_run))
    return PurgeReport(
        cutoff=cutoff,
        dry_run=dry_run,
        leads=sum(by_status.values()),
        by_status=dict(by_status),
        rows=dict(rows),
    )


def _lock_inactive(
    conn: Connection, lead_ids: Sequence[uuid.UUID], cutoff: datetime, *, dry_run: bool
) -> list[tuple[uuid.UUID, str]]:
    """The leads of ``lead_ids`` still inactive, locked against a concurrent engagement update."""
    query = select(LEADS.c.id, LEADS.c.status).where(LEADS.c.id.in_(lead_ids), inactive_condition(cutoff))
    return [
        (lead_id, status) for lead_id, status in conn.execute(query if dry_run else query.with_for_update())
    ]


def _purge_chunk(conn: Connection, lead_ids: Sequence[uuid.UUID], *, dry_run: bool) -> dict[str, int]:
    if not lead_ids:
        return {}
    conditions = _tied_conditions(LEADS.c.id.in_(lead_ids), {})
    if dry_run:
        return _count(conn, conditions)
    addresses = conn.execute(select(LEADS.c.email, LEADS.c.phone).where(LEADS.c.id.in_(lead_ids))).all()
    hashes = [address_hash("email", email) for email, _ in addresses if email]
    hashes += [address_hash("sms", phone) for _, phone in addresses if phone]
    deleted = _delete(conn, conditions)
    if hashes:
        _drop_clear_addresses(conn, SUPPRESSIONS.c.address_hash.in_(hashes))
    return deleted


def _count(conn: Connection, conditions: Mapping[Table, ColumnElement[bool]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, condition in conditions.items():
        count = conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()
        if count:
            counts[table.name] = int(count)
    return counts


def _chunks(items: Sequence[uuid.UUID], size: int) -> Iterable[Sequence[uuid.UUID]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
