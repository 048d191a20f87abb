"""Conversions: a lead bought (or signed, or booked the paid audit) — the outcome an offer is judged on.

A conversion is stored as an event of type ``converted``; it arrives from a provider event, from the
API (``POST /conversions``) or from a CSV file (``spirale conversions import FILE.csv``). Recording is
idempotent on ``(source, external_id)`` (the order number in the shop, the CRM deal id), or, without
an external id, on the lead, instant and value: a file imported twice counts once.

A CSV import checks every row first (columns, dates, amounts, known leads) and writes nothing when
any row is wrong, so a file is never half imported; the errors name their line.
"""

from __future__ import annotations

import csv
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from models.leads import normalize_email
from models.tables import Event, EventType, Lead
from spirale.clock import parse_instant
from spirale.errors import SpiraleError

EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
CSV_COLUMNS = ("email", "lead_id", "occurred_at", "value", "source", "external_id")
LOOKUP_CHUNK = 5000


class ConversionError(SpiraleError):
    """A conversion cannot be recorded: unknown lead, bad value, or neither lead id nor email."""


def conversion_key(
    *, lead_id: uuid.UUID, occurred_at: datetime, value: float | None, source: str, external_id: str | None
) -> str:
    """The deduplication key of a conversion."""
    if external_id:
        return f"conversion:{source}:{external_id}"
    return f"conversion:{lead_id}:{occurred_at.isoformat()}:{value}"


def record_conversion(
    conn: Connection,
    *,
    lead_id: uuid.UUID | None = None,
    email: str | None = None,
    occurred_at: datetime,
    value: float | None = None,
    source: str,
    external_id: str | None = None,
    received_at: datetime | None = None,
) -> bool:
    """Record one conversion of the lead given by ``lead_id`` or ``email``. Returns False when it
    was already recorded (idempotent). Raises ConversionError for an unknown lead. Caller commits."""
    resolved = _resolve_lead(conn, lead_id=lead_id, email=email)
    _check_value(value)
    row = _event_row(
        lead_id=resolved,
        occurred_at=occurred_at,
        value=value,
        source=source,
        external_id=external_id,
        received_at=received_at or occurred_at,
    )
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(EVENTS).on_conflict_do_nothing(index_elements=["dedup_key"])
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING.
    return conn.execute(statement.values(row).returning(EVENTS.c.id)).first() is not None


def _resolve_lead(conn: Connection, *, lead_id: uuid.UUID | None, email: str | None) -> uuid.UUID:
    if lead_id is not None:
        found = conn.execute(select(LEADS.c.id).where(LEADS.c.id == lead_id)).scalar_one_or_none()
        if found is None:
            raise ConversionError(f"no lead with id {lead_id}")
        return lead_id
    if not email:
        raise ConversionError("a conversion needs a lead_id or an email")
    try:
        canonical = normalize_email(email)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc
    found = conn.execute(select(LEADS.c.id).where(LEADS.c.email == canonical)).scalar_one_or_none()
    if found is None:
        raise ConversionError(f"no lead with email {canonical}")
    return found  # type: ignore[no-any-return]


def _check_value(value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ConversionError(f"the value of a conversion must be a positive amount, got {value!r}")


def _event_row(
    *,
    lead_id: uuid.UUID,
    occurred_at: datetime,
    value: float | None,
    source: str,
    external_id: str | None,
    received_at: datetime,
) -> dict[str, Any]:
    key = conversion_key(
        lead_id=lead_id, occurred_at=occurred_at, value=value, source=source, external_id=external_id
    )
    return {
        "id": uuid.uuid4(),
        "type": EventType.CONVERTED.value,
        "lead_id": lead_id,
        "outbox_id": None,
        "provider": source,
        "dedup_key": key,
        "occurred_at": occurred_at,
        "received_at": received_at,
        "processed_at": None,
        "payload": {"value": value, "source": source, "external_id": external_id},
    }


@dataclass(frozen=True)
class RowError:
    """A problem on one line of an imported file (line 1 is the header)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportResult:
    """What an import did: recorded, already known, or (when ``errors``) nothing at all."""

    recorded: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class _Row:
    line: int
    lead_id: uuid.UUID | None
    email: str | None
    occurred_at: datetime
    value: float | None
    source: str
    external_id: str | None


def import_conversions_csv(
    conn: Connection, stream: TextIO, *, now: datetime, default_source: str = "csv"
) -> ImportResult:
    """Import a CSV of conversions (columns: ``email`` or ``lead_id``, ``occurred_at``, optional
    ``value``, ``source``, ``external_id``; comma- or semicolon-separated, decimal point or comma).
    All rows or none: with any error nothing is written."""
    reader = csv.DictReader(stream, dialect=_dialect(stream))
    header = [name.strip() for name in reader.fieldnames or []]
    problem = _header_problem(header)
    if problem:
        return ImportResult(errors=[RowError(1, problem)])
    rows, errors = _parse_rows(reader, default_source)
    errors.extend(_unknown_leads(conn, rows))
    if errors:
        return ImportResult(errors=sorted(errors, key=lambda e: e.line))
    result = ImportResult()
    for row in rows:
        new = record_conversion(
            conn,
            lead_id=row.lead_id,
            email=row.email,
            occurred_at=row.occurred_at,
            value=row.value,
            source=row.source,
            external_id=row.external_id,
            received_at=now,
        )
        result.recorded += new
        result.duplicates += not new
    return result


def _dialect(stream: TextIO) -> type[csv.Dialect]:
    """Comma-separated, or semicolon-separated as spreadsheets write it in France."""
    start = stream.tell() if stream.seekable() else None
    first = stream.readline() if start is not None else ""
    if start is not None:
        stream.seek(start)
    return _Semicolon if first.count(";") > first.count(",") else csv.excel


class _Semicolon(csv.excel):
    delimiter = ";"


def _header_problem(header: Sequence[str]) -> str | None:
    if not header:
        return "empty file: expected a header with email (or lead_id) and occurred_at"
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        return f"unknown column(s) {', '.join(unknown)}: expected {', '.join(CSV_COLUMNS)}"
    if "occurred_at" not in header or not ({"email", "lead_id"} & set(header)):
        return "the header needs occurred_at and one of email or lead_id"
    return None


def _parse_rows(
    reader: Iterable[Mapping[str | Any, str | Any]], default_source: str
) -> tuple[list[_Row], list[RowError]]:
    rows: list[_Row] = []
    errors: list[RowError] = []
    for line, raw in enumerate(reader, start=2):
        cells = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        try:
            rows.append(_parse_row(line, cells, default_source))
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
    return rows, errors


def _parse_row(line: int, cells: Mapping[str, str], default_source: str) -> _Row:
    lead_text, email = cells.get("lead_id", ""), cells.get("email", "")
    if not lead_text and not email:
        raise ValueError("needs an email or a lead_id")
    try:
        lead_id = uuid.UUID(lead_text) if lead_text else None
    except ValueError as exc:
        raise ValueError(f"lead_id {lead_text!r} is not a UUID") from exc
    try:
        occurred_at = parse_instant(cells.get("occurred_at", ""))
    except ValueError as exc:
        raise ValueError(f"occurred_at {cells.get('occurred_at', '')!r} is not an ISO-8601 instant") from exc
    value = _parse_value(cells.get("value", ""))
    canonical = normalize_email(email) if email and lead_id is None else None
    source = cells.get("source") or default_source
    return _Row(line, lead_id, canonical, occurred_at, value, source, cells.get("external_id") or None)


def _parse_value(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text.replace(",", ".").replace(" ", ""))
    except ValueError as exc:
        raise ValueError(f"value {text!r} is not an amount") from exc
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"value {text!r} must be a positive amount")
    return value


def _unknown_leads(conn: Connection, rows: Sequence[_Row]) -> list[RowError]:
    ids = {row.lead_id for row in rows if row.lead_id is not None}
    emails = {row.email for row in rows if row.email is not None}
    known_ids = _existing(conn, LEADS.c.id, ids)
    known_emails = _existing(conn, LEADS.c.email, emails)
    errors = []
    for row in rows:
        if row.lead_id is not None and row.lead_id not in known_ids:
            errors.append(RowError(row.line, f"no lead with id {row.lead_id}"))
        elif row.email is not None and row.email not in known_emails:
            errors.append(RowError(row.line, f"no lead with email {row.email}"))
    return errors


def _existing(conn: Connection, column: Any, values: set[Any]) -> set[Any]:
    found: set[Any] = set()
    wanted = list(values)
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
    return found
