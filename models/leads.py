"""Leads: address normalization, upsert (one lead per email), bulk import, and the template view.

Emails are stored lowercased and validated (``email-validator``, no DNS lookup); phones in E.164
(``phonenumbers``). A lead is identified by its normalized email, or by its phone when it has no
email. Consent is only ever granted here, with its proof (source and instant); withdrawing it is an
opt-out, recorded as a suppression (``models.suppressions``), never a silent overwrite by a later
form that left the box unticked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from operator import itemgetter
from typing import Any, cast

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.ids import ordered_id
from models.tables import Lead, LeadStatus

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
BULK_CHUNK_ROWS = 5_000
CONSENT_CHANNELS = ("email", "sms")
_COLUMNS = frozenset(LEADS.c.keys())
_UPSERT_FIELDS = frozenset(Lead.model_fields) - {"id", "created_at", "updated_at"}


def normalize_email(raw: str) -> str:
    """The canonical form of an email address: validated syntax, lowercased.

    Raises ``ValueError`` naming the address and the problem.
    """
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address {raw!r}: {exc}") from exc
    return result.normalized.lower()


def normalize_phone(raw: str, default_region: str = "FR") -> str:
    """The E.164 form of a phone number (``+33612345678``); national numbers are read in
    ``default_region``. Raises ``ValueError`` naming the number and the problem."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        reason = exc.args[0] if exc.args else str(exc)  # str(exc) prefixes an internal error code
        raise ValueError(f"invalid phone number {raw!r}: {reason}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"invalid phone number {raw!r}: not a valid number for its region")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _lead_fields(data: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    fields = dict(data.model_dump(exclude_unset=True) if isinstance(data, BaseModel) else data)
    unknown = set(fields) - _UPSERT_FIELDS
    if unknown:
        raise ValueError(f"unknown lead fields: {', '.join(sorted(unknown))} (put extras in 'attributes')")
    if fields.get("email"):
        fields["email"] = normalize_email(fields["email"])
    if fields.get("phone"):
        fields["phone"] = normalize_phone(fields["phone"], fields.get("country") or "FR")
    if fields.get("status"):
        fields["status"] = LeadStatus(fields["status"]).value
    if not fields.get("email") and not fields.get("phone"):
        raise ValueError("a lead needs an email address or a phone number")
    return fields


def _find_lead(session: Session, fields: Mapping[str, Any]) -> Lead | None:
    if fields.get("email"):
        return session.exec(select(Lead).where(col(Lead.email) == fields["email"])).first()
    by_phone = select(Lead).where(col(Lead.phone) == fields["phone"], col(Lead.email).is_(None))
    return session.exec(by_phone).first()


def _grant_consents(lead: Lead, fields: dict[str, Any], now: datetime) -> None:
    for channel in CONSENT_CHANNELS:
        given = fields.pop(f"consent_{channel}", None)
        source = fields.pop(f"consent_{channel}_source", None)
        given_at = fields.pop(f"consent_{channel}_at", None)
        if given and not getattr(lead, f"consent_{channel}"):
            # The first grant is the proof kept; a repeated grant does not rewrite it.
            setattr(lead, f"consent_{channel}", True)
            setattr(lead, f"consent_{channel}_source", source or fields.get("source") or lead.source)
            setattr(lead, f"consent_{channel}_at", given_at or now)


def _apply(lead: Lead, fields: Mapping[str, Any], now: datetime) -> None:
    remaining = dict(fields)
    _grant_consents(lead, remaining, now)
    extra = remaining.pop("attributes", None) or {}
    if extra:
        lead.attributes = {**(lead.attributes or {}), **extra}
    for name, value in remaining.items():
        if value is not None and value != "":
            setattr(lead, name, value)
    lead.updated_at = now


def upsert_lead(session: Session, *, data: Mapping[str, Any] | BaseModel, now: datetime) -> Lead:
    """Create the lead, or update the one with the same normalized email (or, without email, the
    same phone). Only non-empty values overwrite; ``attributes`` are merged; consents are granted
    with their source and instant and never withdrawn here. The caller commits.

    Raises ``ValueError`` for an invalid address, an unknown field or a lead with no address.
    """
    fields = _lead_fields(data)
    lead = _find_lead(session, fields)
    if lead is not None:
        _apply(lead, fields, now)
        return lead
    lead = Lead(id=ordered_id(), created_at=now, updated_at=now, attributes={})
    _apply(lead, fields, now)
    try:
        with session.begin_nested():
            session.add(lead)
    except IntegrityError:
        # Another transaction inserted the same email since our lookup: update that lead instead.
        existing = _find_lead(session, fields)
        if existing is None:
            raise
        _apply(existing, fields, now)
        return existing
    return lead


def get_lead_by_email(session: Session, email: str) -> Lead | None:
    """The lead with this email (compared in normalized form), or ``None``.
    Raises ``ValueError`` when ``email`` is not an email address."""
    return session.exec(select(Lead).where(col(Lead.email) == normalize_email(email))).first()


def _bulk_defaults(now: datetime) -> dict[str, Any]:
    """Every column's default for an imported row, except the id (fresh per row)."""
    defaults: dict[str, Any] = {"created_at": now, "updated_at": now}
    for name, info in Lead.model_fields.items():
        if name == "id" or name in defaults:
            continue
        if info.default_factory is not None:
            defaults[name] = cast(Callable[[], Any], info.default_factory)()
        elif info.default is not PydanticUndefined:
            default = info.default
            defaults[name] = default.value if isinstance(default, LeadStatus) else default
    return defaults


@dataclass(frozen=True, slots=True)
class _BulkInsert:
    """``INSERT ... ON CONFLICT (email) DO NOTHING`` compiled once per dialect, fed rows already
    converted by SQLAlchemy's own bind processors: on this wide table SQLAlchemy's per-row
    executemany bookkeeping costs more than the database itself (and psycopg's batched
    ``insertmanyvalues`` more still), so the driver's ``executemany`` gets plain tuples or dicts.
    Defaults are converted once per import, not once per row."""

    sql: str
    ordered: Callable[[Mapping[str, Any]], Any] | None  # dict -> tuple for positional paramstyles
    processors: dict[str, Callable[[Any], Any]]

    @classmethod
    def compile(cls, dialect: Dialect) -> _BulkInsert:
        insert_module = postgresql if dialect.name == "postgresql" else sqlite
        statement = insert_module.insert(LEADS).on_conflict_do_nothing(index_elements=["email"])
        compiled = statement.compile(dialect=dialect)
        processors: dict[str, Callable[[Any], Any]] = {}
        for column in LEADS.c:
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[column.key] = processor
        order = compiled.positiontup if compiled.positional else None
        return cls(str(compiled), itemgetter(*order) if order else None, processors)

    def convert(self, values: Mapping[str, Any]) -> dict[str, Any]:
        processors = self.processors
        return {key: processors[key](value) if key in processors else value for key, value in values.items()}

    def parameters(self, row: Mapping[str, Any], base: Mapping[str, Any]) -> Any:
        unknown = row.keys() - _COLUMNS
        if unknown:
            raise ValueError(f"unknown lead columns: {', '.join(sorted(unknown))}")
        full = {**base, **self.convert(row)}
        if "id" not in row:
            new_id = ordered_id()
            full["id"] = self.processors["id"](new_id) if "id" in self.processors else new_id
        return full if self.ordered is None else self.ordered(full)


_bulk_inserts: dict[str, _BulkInsert] = {}


def _normalized(row: Mapping[str, Any]) -> dict[str, Any]:
    fixed = dict(row)
    if fixed.get("email"):
        fixed["email"] = normalize_email(fixed["email"])
    if fixed.get("phone"):
        fixed["phone"] = normalize_phone(fixed["phone"], fixed.get("country") or "FR")
    if fixed.get("status"):
        fixed["status"] = LeadStatus(fixed["status"]).value
    return fixed


def _chunks(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def bulk_insert_leads(
    conn: Connection, rows: Iterable[Mapping[str, Any]], *, now: datetime, normalize: bool = True
) -> int:
    """Insert many leads with the driver's ``executemany``, in chunks; returns how many were
    inserted.

    Missing columns take the table defaults (a fresh ``id``, ``created_at=now``...). A row whose
    email already exists is skipped, not updated (use :func:`upsert_lead` to merge). With
    ``normalize=False`` the rows must already hold :func:`normalize_email` / :func:`normalize_phone`
    output and plain status values: validation is the costliest part of an import. The caller
    commits.
    """
    bulk = _bulk_inserts.get(conn.dialect.name)
    if bulk is None:
        bulk = _bulk_inserts.setdefault(conn.dialect.name, _BulkInsert.compile(conn.dialect))
    base = bulk.convert(_bulk_defaults(now))
    inserted = 0
    for chunk in _chunks(rows, BULK_CHUNK_ROWS):
        prepared = [_normalized(row) for row in chunk] if normalize else chunk
        result = conn.exec_driver_sql(bulk.sql, [bulk.parameters(row, base) for row in prepared])
        inserted += result.rowcount
    return inserted


def lead_context(lead: Lead | Row[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """The plain dict a template sees for a lead (never the ORM object itself)."""
    if isinstance(lead, Row):
        values: Mapping[Any, Any] = lead._mapping
    elif isinstance(lead, Mapping):
        values = lead
    else:
        values = {name: getattr(lead, name) for name in _CONTEXT_SOURCE}
    status = values.get("status")
    return {
        "first_name": values.get("first_name") or "",
        "last_name": values.get("last_name") or "",
        "email": values.get("email"),
        "phone": values.get("phone"),
        "company": values.get("company") or "",
        "job_title": values.get("job_title") or "",
        "country": values.get("country"),
        "timezone": values.get("timezone"),
        "status": str(status.value if isinstance(status, LeadStatus) else status or ""),
        "owner": values.get("owner"),
        "consent": {channel: bool(values.get(f"consent_{channel}")) for channel in CONSENT_CHANNELS},
    }


_CONTEXT_SOURCE = (
    *("first_name", "last_name", "email", "phone", "company", "job_title", "country", "timezone"),
    *("status", "owner", "consent_email", "consent_sms"),
)
