"""Form intake: from a stored web-form submission to a qualified, scored and routed lead.

The HTTP endpoint stores each submission (``form_submissions``, status ``received``) and answers
at once with the lead id it chose. :func:`process_submissions` then, for each one:

1. creates the lead under that id, or updates the lead with the same email;
2. qualifies it: a competitor, a student, a consultant, a foreigner or a throw-away address is
   disqualified with its reason and enrolled nowhere;
3. scores it: fit (who it is) and the download as engagement (``form_submitted``, or the form's
   own points), each with its ledger rows;
4. routes it: hot -> ``sales-cadence`` with a task for its owner at once, warm -> the form's
   sequence (``sequences/forms.yaml``), cold -> the ``incubator``;
5. marks the submission ``processed`` (or ``rejected`` with the error).

Submissions are taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serializes writers),
each in a savepoint, so concurrent runs never process one twice and one bad submission does not
stop the others. Owners of new hot leads are notified after the commit.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, select, update

from channels.base import AnyChannel
from models.tables import Event, EventType, FormSubmission, Lead, LeadStatus
from scoring.engagement import apply_event_scores, record_moves
from scoring.fit import compute_fit, fit_changes
from scoring.ledger import ledger_rows, write_ledger
from scoring.notify import NotifyReport, notify_tasks
from scoring.qualification import Qualification, qualify
from scoring.routing import Router
from scoring.rules import ScoringRules, load_rules, scoring_path
from scoring.status import SCORED, StatusMove
from scoring.team import Team, load_team, team_path
from sequences.catalog import SequenceCatalog
from sequences.forms import FormSpec, forms_path, load_forms
from spirale.dispatch.writes import insert_ignoring_duplicates
from spirale.errors import SpiraleError
from spirale.lead_input import Upserted, parse_lead_input, upsert_lead_row
from spirale.settings import Settings

#: Known buyers are never disqualified by the prospect checks (a customer's gmail address ...).
CUSTOMERS = frozenset({LeadStatus.CUSTOMER.value, LeadStatus.FORMER_CUSTOMER.value})
SUBMISSIONS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]


class IntakeError(SpiraleError):
    """A submission cannot be processed (unknown form, invalid address): it is rejected."""


@dataclass(frozen=True)
class IntakeSetup:
    """What intake reads from the sequences directory: rules, team and forms."""

    rules: ScoringRules
    team: Team
    forms: Mapping[str, FormSpec]

    @classmethod
    def load(cls, sequences_dir: Path) -> IntakeSetup:
        return cls(
            rules=load_rules(scoring_path(sequences_dir)),
            team=load_team(team_path(sequences_dir)),
            forms=load_forms(forms_path(sequences_dir)),
        )


@dataclass
class IntakeReport:
    """What one intake run did."""

    processed: int = 0
    rejected: int = 0
    disqualified: Counter[str] = field(default_factory=Counter)  # by rule
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    task_ids: list[uuid.UUID] = field(default_factory=list)
    notified: NotifyReport = field(default_factory=NotifyReport)


def process_submissions(
    engine: Engine,
    *,
    now: datetime,
    settings: Settings,
    catalog: SequenceCatalog,
    limit: int = 500,
    setup: IntakeSetup | None = None,
    channels: Mapping[str, AnyChannel] | None = None,
) -> IntakeReport:
    """Process up to ``limit`` received submissions, oldest first, then notify the owners of the
    leads that turned hot."""
    setup = setup or IntakeSetup.load(settings.sequences_dir)
    report = IntakeReport()
    router = Router(rules=setup.rules, catalog=catalog, team=setup.team)
    with engine.begin() as conn:
        query = (
            select(SUBMISSIONS)
            .where(SUBMISSIONS.c.status == "received")
            .order_by(SUBMISSIONS.c.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = [dict(row._mapping) for row in conn.execute(query)]
        # Leads are locked in address order by every worker, so two workers never deadlock.
        for submission in sorted(claimed, key=lambda s: (s["email"].strip().lower(), s["received_at"])):
            _process_one(conn, submission, setup=setup, router=router, now=now, report=report)
    report.notified = notify_tasks(
        engine,
        task_ids=report.task_ids,
        now=now,
        settings=settings,
        rules=setup.rules,
        team=setup.team,
        channels=channels,
    )
    return report


def _process_one(
    conn: Connection,
    submission: Mapping[str, Any],
    *,
    setup: IntakeSetup,
    router: Router,
    now: datetime,
    report: IntakeReport,
) -> None:
    try:
        with conn.begin_nested():
            lead_id, status = _intake(conn, submission, setup=setup, router=router, now=now, report=report)
    except (ValueError, SpiraleError) as exc:
        report.rejected += 1
        report.errors.append((submission["id"], str(exc)))
        _mark(conn, submission["id"], status="rejected", now=now, error=str(exc)[:1000])
        return
    report.processed += 1
    report.statuses[status] += 1
    _mark(conn, submission["id"], status="processed", now=now, lead_id=lead_id)


def _mark(conn: Connection, submission_id: uuid.UUID, *, status: str, now: datetime, **values: Any) -> None:
    conn.execute(
        update(SUBMISSIONS)
        .where(SUBMISSIONS.c.id == submission_id)
        .values(status=status, processed_at=now, **values)
    )


def _intake(
    conn: Connection,
    submission: Mapping[str, Any],
    *,
    setup: IntakeSetup,
    router: Router,
    now: datetime,
    report: IntakeReport,
) -> tuple[uuid.UUID, str]:
    form_id = submission["form_id"]
    form = setup.forms.get(form_id)
    if form is None:
        raise IntakeError(f"unknown form {submission['form_id']!r}: expected one of {', '.join(setup.forms)}")
    lead = parse_lead_input({**(submission["payload"] or {}), "email": submission["email"]})
    if lead.problems:
        raise IntakeError("; ".join(lead.problems))
    upserted = upsert_lead_row(
        conn,
        lead,
        new_id=submission["lead_id"],
        source=form.source or form_id,
        consent_source=f"form:{form_id}",
        consent_at=submission["received_at"],
        now=now,
    )
    row = dict(conn.execute(select(LEADS).where(LEADS.c.id == upserted.lead_id)).one()._mapping)
    event_id = _record_download(conn, submission, upserted.lead_id, now=now)
    verdict = qualify(row, setup.rules)
    if verdict.disqualified and row["status"] not in CUSTOMERS:
        _disqualify(conn, row, verdict, created=upserted.created, router=router, now=now)
        report.disqualified[verdict.disqualifying.rule if verdict.disqualifying else "?"] += 1
        return upserted.lead_id, LeadStatus.DISQUALIFIED.value
    _score_fit(conn, row, upserted, verdict, setup.rules, now=now)
    status = _score_download(conn, row, event_id, setup.rules, created=upserted.created, now=now)
    routed = router.route(
        conn, moves=[StatusMove(row["id"], status, status, f"form {form_id}", form.sequence)], now=now
    )
    report.task_ids.extend(routed.task_ids)
    return upserted.lead_id, status


def _record_download(
    conn: Connection, submission: Mapping[str, Any], lead_id: uuid.UUID, *, now: datetime
) -> uuid.UUID:
    """The download as a ``form_submitted`` event (once per submission), scored right here."""
    event_id = uuid.uuid4()
    row = {
        "id": event_id,
        "type": EventType.FORM_SUBMITTED.value,
        "lead_id": lead_id,
        "outbox_id": None,
        "provider": "form",
        "dedup_key": f"form-submission:{submission['id']}",
        "occurred_at": submission["received_at"],
        "received_at": now,
        "processed_at": now,
        "payload": {"form_id": submission["form_id"], "submission_id": str(submission["id"])},
    }
    insert_ignoring_duplicates(conn, EVENTS, [row])
    found = conn.execute(select(EVENTS.c.id).where(EVENTS.c.dedup_key == row["dedup_key"])).scalar_one()
    recorded: uuid.UUID = found
    return recorded


def _disqualify(
    conn: Connection,
    lead: Mapping[str, Any],
    verdict: Qualification,
    *,
    created: bool,
    router: Router,
    now: datetime,
) -> None:
    """Disqualify with the reason (a ledger row when the verdict is new) and leave every sequence."""
    reason, line = verdict.reason or "", verdict.disqualification_line()
    conn.execute(
        update(LEADS)
        .where(LEADS.c.id == lead["id"])
        .values(status=LeadStatus.DISQUALIFIED.value, disqualified_reason=reason, updated_at=now)
    )
    if lead["status"] != LeadStatus.DISQUALIFIED.value or lead["disqualified_reason"] != reason:
        write_ledger(conn, ledger_rows(lead["id"], [line] if line else [], now=now))
    old = None if created else lead["status"]
    move = StatusMove(lead["id"], old, LeadStatus.DISQUALIFIED.value, reason)
    if lead["status"] != LeadStatus.DISQUALIFIED.value:
        record_moves(conn, [move], now=now)
    router.route(conn, moves=[move], now=now)


def _score_fit(
    conn: Connection,
    lead: dict[str, Any],
    upserted: Upserted,
    verdict: Qualification,
    rules: ScoringRules,
    *,
    now: datetime,
) -> None:
    """Write the fit (and its ledger rows when it changed); a lead qualified again leaves
    ``disqualified`` for the status its scores give."""
    result = compute_fit(lead, rules, verdict)
    lines = fit_changes(result, current=lead["fit_score"], first_time=upserted.created)
    write_ledger(conn, ledger_rows(lead["id"], lines, now=now))
    values: dict[str, Any] = {"fit_score": result.score}
    if lead["status"] == LeadStatus.DISQUALIFIED.value:
        values.update(status=LeadStatus.COLD.value, disqualified_reason=None)
        lead["status"] = LeadStatus.COLD.value
    conn.execute(update(LEADS).where(LEADS.c.id == lead["id"]).values(**values))
    lead["fit_score"] = result.score


def _score_download(
    conn: Connection,
    lead: Mapping[str, Any],
    event_id: uuid.UUID,
    rules: ScoringRules,
    *,
    created: bool,
    now: datetime,
) -> str:
    """Score the download; returns the lead's status afterwards (a new lead that stays cold gets
    its ``new -> cold`` ledger row here)."""
    event = conn.execute(select(EVENTS).where(EVENTS.c.id == event_id)).one()
    moves = apply_event_scores(conn, events=[event], now=now, rules=rules)
    status: str = conn.execute(select(LEADS.c.status).where(LEADS.c.id == lead["id"])).scalar_one()
    if not moves and created and status in SCORED:
        record_moves(conn, [StatusMove(lead["id"], None, status, "new lead")], now=now)
    return status
