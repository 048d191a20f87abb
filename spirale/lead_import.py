"""Importing leads from a CSV file ("your best prospect file is your customers").

Every row is checked first (address, phone, country, yes/no columns, customer class, dates, an
email repeated in the file) and each reject is reported with its line and reasons. Nothing is
half-imported: with any reject nothing is written (unless the caller chooses to skip the rejected
rows), and the accepted rows are written in ONE transaction. Each imported lead is then handled
like a form lead: qualified (a competitor or a student is kept, disqualified with its reason),
scored for fit and routed: customers to the contact policy of their class, prospects by score.

Columns: ``email`` (required), ``phone``, ``first_name``, ``last_name``, ``company``,
``job_title``, ``country``, ``timezone``, ``consent_email``, ``consent_sms``, ``customer_class``
(A/B/C), ``last_purchase_at``, ``status`` (``customer`` / ``former_customer`` / ``prospect``),
``owner``; any other column (``company_size``, ``industry``, ``postcode`` ...) is kept as an
attribute the fit rules can read.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, select, update

from models.ids import ordered_id
from models.tables import Lead, LeadStatus
from scoring.decay import decayed
from scoring.engagement import record_moves
from scoring.fit import compute_fit, fit_changes
from scoring.ledger import ledger_rows, write_ledger
from scoring.qualification import Qualification, qualify
from scoring.routing import Router, RoutingResult
from scoring.rules import ScoringRules
from scoring.status import SCORED, StatusMove, held_by_sales, next_status, why
from scoring.team import Team
from sequences.catalog import SequenceCatalog
from spirale.errors import ConfigError
from spirale.lead_input import LeadInput, parse_customer_fields, parse_lead_input, upsert_lead_row

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
#: Known buyers are never disqualified by the prospect checks.
CUSTOMERS = frozenset({LeadStatus.CUSTOMER.value, LeadStatus.FORMER_CUSTOMER.value})


@dataclass(frozen=True, slots=True)
class RowReject:
    """A row that cannot be imported: its line in the file, its email as written, why."""

    line: int
    email: str
    reasons: tuple[str, ...]


@dataclass
class ImportReport:
    """What an import did (or would have done)."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: list[RowReject] = field(default_factory=list)
    disqualified: list[tuple[int, str, str]] = field(default_factory=list)  # line, email, reason
    statuses: Counter[str] = field(default_factory=Counter)
    routing: RoutingResult = field(default_factory=RoutingResult)
    written: bool = False


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file (UTF-8, with or without BOM; ``,`` or ``;`` separated), keyed by
    lowercased column names. Raises ``ConfigError`` when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if reader.fieldnames is None or "email" not in [name.strip().lower() for name in reader.fieldnames]:
        raise ConfigError(f"{path}: the first line must name the columns, including 'email'")
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]


def check_rows(rows: Sequence[dict[str, str]]) -> tuple[list[tuple[int, LeadInput]], list[RowReject]]:
    """Parse every row; returns the accepted ones (with their line) and the rejects."""
    accepted: list[tuple[int, LeadInput]] = []
    rejected: list[RowReject] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        line = index + 2  # the header is line 1
        lead = parse_lead_input(row, strict_phone=True)
        parse_customer_fields(lead, row)
        problems = list(lead.problems)
        if lead.email and lead.email in seen:
            problems.append(f"email: already on line {seen[lead.email]}")
        if problems:
            rejected.append(RowReject(line, row.get("email", ""), tuple(problems)))
            continue
        seen[lead.email] = line
        accepted.append((line, lead))
    return accepted, rejected


def import_leads(
    engine: Engine,
    *,
    rows: Sequence[dict[str, str]],
    source: str,
    now: datetime,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team | None = None,
    skip_invalid: bool = False,
) -> ImportReport:
    """Check every row, then write the accepted ones in one transaction (none at all when a row
    is rejected and ``skip_invalid`` is false)."""
    accepted, rejected = check_rows(rows)
    report = ImportReport(rows=len(rows), rejected=rejected)
    if rejected and not skip_invalid:
        return report
    router = Router(rules=rules, catalog=catalog, team=team)
    with engine.begin() as conn:
        moves = [
            _import_one(conn, line, lead, source=source, now=now, rules=rules, report=report)
            for line, lead in accepted
        ]
        record_moves(conn, [m for m in moves if m.old != m.new], now=now)
        report.routing = router.route(conn, moves=moves, now=now)
    report.written = True
    return report


def _import_one(
    conn: Connection,
    line: int,
    lead: LeadInput,
    *,
    source: str,
    now: datetime,
    rules: ScoringRules,
    report: ImportReport,
) -> StatusMove:
    """Write one lead, qualify and score it; returns the status it should be routed to."""
    upserted = upsert_lead_row(
        conn, lead, new_id=ordered_id(), source=source, consent_source=source, consent_at=now, now=now
    )
    report.created += upserted.created
    report.updated += not upserted.created
    row = dict(conn.execute(select(LEADS).where(LEADS.c.id == upserted.lead_id)).one()._mapping)
    old = None if upserted.created else (upserted.before or {}).get("status")
    if lead.customer_class and row["status"] in SCORED:
        row["status"] = LeadStatus.CUSTOMER.value  # a class makes a customer
    verdict = qualify(row, rules)
    if verdict.disqualified and row["status"] not in CUSTOMERS:
        report.disqualified.append((line, row["email"], verdict.reason or ""))
        report.statuses[LeadStatus.DISQUALIFIED.value] += 1
        return _disqualify(conn, row, old, verdict, now=now)
    if row["status"] == LeadStatus.DISQUALIFIED.value:
        # Qualified now (a new job title ...): scored like any prospect again.
        conn.execute(update(LEADS).where(LEADS.c.id == row["id"]).values(disqualified_reason=None))
        row["status"] = LeadStatus.COLD.value
    fit = compute_fit(row, rules, verdict)
    lines = fit_changes(fit, current=row["fit_score"], first_time=upserted.created)
    write_ledger(conn, ledger_rows(row["id"], lines, now=now))
    conn.execute(update(LEADS).where(LEADS.c.id == row["id"]).values(fit_score=fit.score))
    status = _status(conn, row, fit.score, rules, now)
    report.statuses[status] += 1
    engagement = decayed(row["engagement_score"], row["engagement_at"], now, rules.engagement.half_life)
    return StatusMove(row["id"], old, status, f"import {source}: {why(fit.score, engagement, rules)}")


def _disqualify(
    conn: Connection, row: dict[str, Any], old: str | None, verdict: Qualification, *, now: datetime
) -> StatusMove:
    """Keep the lead with its reason (a ledger row when the verdict is new), on no track."""
    reason = verdict.reason or ""
    conn.execute(update(LEADS).where(LEADS.c.id == row["id"]).values(disqualified_reason=reason))
    entry = verdict.disqualification_line()
    if row["disqualified_reason"] != reason and entry is not None:
        write_ledger(conn, ledger_rows(row["id"], [entry], now=now))
    return StatusMove(row["id"], old, LeadStatus.DISQUALIFIED.value, reason)


def _status(conn: Connection, row: dict[str, Any], fit: float, rules: ScoringRules, now: datetime) -> str:
    """The status the scores give (a lead in the sales cadence stays hot until it ends)."""
    if row["status"] not in SCORED:
        return str(row["status"])
    engagement = decayed(row["engagement_score"], row["engagement_at"], now, rules.engagement.half_life)
    held = bool(held_by_sales(conn, [row["id"]], rules))
    moved = next_status(row["status"], fit, engagement, rules, held_by_sales=held)
    return moved.value if moved is not None else str(row["status"])
