"""A lead as a form or an import file gives it: read, checked and written.

``parse_lead_input`` turns a flat mapping (form payload, CSV row) into a :class:`LeadInput`,
collecting every problem with its field; ``upsert_lead_row`` writes it with Core (one lead per
normalized email): a new lead gets the id it is given, an existing one is updated with the
non-empty values only, its attributes merged and consents granted (never withdrawn) with their
source and instant.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models.leads import normalize_email, normalize_phone
from models.tables import Lead, LeadStatus

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
TEXT_FIELDS = ("first_name", "last_name", "company", "job_title", "timezone")
#: Keys that describe the submission, not the lead: never copied into attributes.
RESERVED = frozenset(
    {
        "email",
        "phone",
        "country",
        "consent_email",
        "consent_sms",
        "attributes",
        "form_id",
        "lead_id",
        "submission_key",
    }
)
TRUE = frozenset({"1", "true", "yes", "oui", "on", "x"})
FALSE = frozenset({"", "0", "false", "no", "non", "off"})
CUSTOMER_CLASSES = frozenset({"A", "B", "C"})


@dataclass
class LeadInput:
    """The fields of one lead, normalized. ``problems`` lists what was wrong, by field."""

    email: str = ""
    phone: str | None = None
    country: str | None = None
    text: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    consent_email: bool = False
    consent_sms: bool = False
    customer_class: str | None = None
    last_purchase_at: datetime | None = None
    status: str | None = None
    owner: str | None = None
    problems: list[str] = field(default_factory=list)

    def as_lead(self) -> dict[str, Any]:
        """The mapping qualification and fit read (``email``, ``job_title``, ``attributes`` ...)."""
        return {
            "email": self.email,
            "phone": self.phone,
            "country": self.country or "FR",
            **self.text,
            "attributes": self.attributes,
        }


def parse_flag(value: object) -> bool:
    """A yes/no value as forms and spreadsheets write it; raises ``ValueError`` otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"expected yes/no, got {value!r}")


def parse_lead_input(data: Mapping[str, Any], *, strict_phone: bool = False) -> LeadInput:
    """Read a lead from a flat mapping; unknown keys become attributes. An invalid phone is a
    problem when ``strict_phone`` (imports), else it is dropped and kept in ``attributes``."""
    lead = LeadInput()
    try:
        lead.email = normalize_email(str(data.get("email") or ""))
    except ValueError as exc:
        lead.problems.append(f"email: {exc}")
    _country(lead, data.get("country"))
    _phone(lead, data.get("phone"), strict=strict_phone)
    lead.text = {name: str(data[name]).strip() for name in TEXT_FIELDS if data.get(name) not in (None, "")}
    for key in ("consent_email", "consent_sms"):
        _flag(lead, key, data.get(key))
    extra = data.get("attributes")
    lead.attributes = dict(extra) if isinstance(extra, Mapping) else {}
    for key, value in data.items():
        scalar = isinstance(value, str | int | float | bool) and value != ""
        if scalar and key not in RESERVED and key not in TEXT_FIELDS:
            lead.attributes.setdefault(str(key), value)
    return lead


def _country(lead: LeadInput, value: object) -> None:
    if value in (None, ""):
        return
    code = str(value).strip().upper()
    if len(code) != 2 or not code.isalpha():
        lead.problems.append(f"country: expected an ISO code like FR, got {value!r}")
        return
    lead.country = code


def _phone(lead: LeadInput, value: object, *, strict: bool) -> None:
    if value in (None, ""):
        return
    try:
        lead.phone = normalize_phone(str(value), lead.country or "FR")
    except ValueError as exc:
        if strict:
            lead.problems.append(f"phone: {exc}")
        else:
            lead.attributes["invalid_phone"] = str(value)


def _flag(lead: LeadInput, key: str, value: object) -> None:
    try:
        setattr(lead, key, parse_flag(value))
    except ValueError as exc:
        lead.problems.append(f"{key}: {exc}")


def parse_customer_fields(lead: LeadInput, data: Mapping[str, Any]) -> None:
    """Import-only columns: ``customer_class`` (A/B/C), ``last_purchase_at``, ``status``, ``owner``."""
    klass = str(data.get("customer_class") or "").strip().upper()
    if klass:
        if klass in CUSTOMER_CLASSES:
            lead.customer_class = klass
        else:
            lead.problems.append(f"customer_class: expected A, B or C, got {data.get('customer_class')!r}")
    purchase = str(data.get("last_purchase_at") or "").strip()
    if purchase:
        try:
            lead.last_purchase_at = _instant(purchase)
        except ValueError:
            lead.problems.append(f"last_purchase_at: expected a date like 2025-03-31, got {purchase!r}")
    status = str(data.get("status") or "").strip().lower()
    if status:
        allowed = (LeadStatus.CUSTOMER.value, LeadStatus.FORMER_CUSTOMER.value, "prospect")
        if status in allowed:
            lead.status = None if status == "prospect" else status
        else:
            lead.problems.append(f"status: expected one of {', '.join(allowed)}, got {status!r}")
    owner = str(data.get("owner") or "").strip()
    lead.owner = owner or None
    for key in ("customer_class", "last_purchase_at", "status", "owner"):
        lead.attributes.pop(key, None)


def _instant(text: str) -> datetime:
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Upserted:
    """The lead written: its id, whether it was created, and its row before the write."""

    lead_id: uuid.UUID
    created: bool
    before: Mapping[str, Any] | None


def upsert_lead_row(
    conn: Connection,
    lead: LeadInput,
    *,
    new_id: uuid.UUID,
    source: str,
    consent_source: str,
    consent_at: datetime,
    now: datetime,
) -> Upserted:
    """Create the lead under ``new_id`` or update the one with the same email (caller commits)."""
    before = _locked(conn, lead.email)
    if before is None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        values = _new_row(lead, new_id, source, consent_source, consent_at, now)
        statement = dialect.insert(LEADS).values(values).on_conflict_do_nothing().returning(LEADS.c.id)
        if conn.execute(statement).first() is not None:
            return Upserted(new_id, True, None)
        # Another transaction created this email since the lookup: update that lead instead.
        before = _locked(conn, lead.email)
        if before is None:
            raise ValueError(f"lead id {new_id} is already taken by another email address")
    changes = _changes(lead, before, consent_source, consent_at, now)
    conn.execute(update(LEADS).where(LEADS.c.id == before["id"]).values(**changes))
    return Upserted(before["id"], False, before)


def _locked(conn: Connection, email: str) -> dict[str, Any] | None:
    row = conn.execute(select(LEADS).where(LEADS.c.email == email).with_for_update()).first()
    return dict(row._mapping) if row is not None else None


def _new_row(
    lead: LeadInput, new_id: uuid.UUID, source: str, consent_source: str, consent_at: datetime, now: datetime
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": new_id,
        "email": lead.email,
        "phone": lead.phone,
        "country": lead.country or "FR",
        "status": lead.status or LeadStatus.COLD.value,
        "customer_class": lead.customer_class,
        "last_purchase_at": lead.last_purchase_at,
        "owner": lead.owner,
        "source": source,
        "attributes": lead.attributes,
        "created_at": now,
        "updated_at": now,
        "fit_score": 0.0,
        "engagement_score": 0.0,
        **{name: "" for name in ("first_name", "last_name", "company", "job_title")},
        **lead.text,
    }
    for channel in ("email", "sms"):
        given = getattr(lead, f"consent_{channel}")
        row[f"consent_{channel}"] = given
        row[f"consent_{channel}_source"] = consent_source if given else None
        row[f"consent_{channel}_at"] = consent_at if given else None
    return row


def _changes(
    lead: LeadInput, before: Mapping[str, Any], consent_source: str, consent_at: datetime, now: datetime
) -> dict[str, Any]:
    changes: dict[str, Any] = {**lead.text, "updated_at": now}
    optional = {
        "phone": lead.phone,
        "country": lead.country,
        "customer_class": lead.customer_class,
        "last_purchase_at": lead.last_purchase_at,
        "status": lead.status,
        "owner": lead.owner,
    }
    changes.update({k: v for k, v in optional.items() if v is not None})
    if lead.attributes:
        changes["attributes"] = {**(before.get("attributes") or {}), **lead.attributes}
    for channel in ("email", "sms"):
        if getattr(lead, f"consent_{channel}") and not before[f"consent_{channel}"]:
            # The first grant is the proof kept; withdrawing consent is an opt-out, never done here.
            changes.update(
                {
                    f"consent_{channel}": True,
                    f"consent_{channel}_source": consent_source,
                    f"consent_{channel}_at": consent_at,
                }
            )
    return changes
