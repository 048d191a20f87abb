"""The sales cadence: seven attempts (calls, emails, LinkedIn InMails, SMS) before letting go.

The dispatcher runs the ``sales-cadence`` steps and puts each manual one on the owner's task list;
salespeople log what happened with :func:`record_outcome`:

- ``reached`` or ``meeting`` ends the cadence at once (the enrollment exits, its open tasks are
  cancelled) and records a ``reply`` / ``meeting_booked`` event, which every other sequence sees
  and the event processor scores; the lead stays hot, with its owner;
- ``not-interested`` ends the cadence too, and the lead goes back to marketing;
- ``no-answer``, ``voicemail`` and ``wrong-number`` are attempts without success: the cadence
  goes on.

When the cadence has run all its steps without success (and its last tasks are done or expired),
:func:`hand_back_completed` gives the lead back to marketing: its engagement is reset (a ledger
row says why), so it lands in warm nurture or the incubator by its fit, and only new engagement
can make it hot again. Calls beyond the legal limit are refused (``scoring.call_limit``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, exists, or_, select, update

from models.claims import ENROLLMENTS
from models.tables import EnrollmentState, Event, EventType, Lead, LeadStatus, SalesTask, TaskState
from scoring.call_limit import CALL, calls_made, next_lawful_call
from scoring.decay import decayed
from scoring.engagement import record_moves
from scoring.ledger import EntryKind, ScoreLine, ledger_rows, write_ledger
from scoring.routing import Router, exit_enrollments
from scoring.rules import CadenceSpec, ScoringRules
from scoring.status import SCORED, StatusMove, status_of, why
from sequences.catalog import SequenceCatalog
from spirale.dispatch.writes import insert_ignoring_duplicates
from spirale.errors import SpiraleError

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
OUTCOME_EVENT = "sales_outcome"
NOT_INTERESTED_EXIT = "not interested"
#: Lead events after which sales keeps the lead instead of handing it back.
ANSWERS = (
    EventType.REPLY.value,
    EventType.SMS_REPLY.value,
    EventType.MEETING_BOOKED.value,
    EventType.CONVERTED.value,
)


class Outcome(StrEnum):
    """What a salesperson reports after an attempt."""

    REACHED = "reached"
    NO_ANSWER = "no-answer"
    VOICEMAIL = "voicemail"
    WRONG_NUMBER = "wrong-number"
    NOT_INTERESTED = "not-interested"
    MEETING = "meeting"


#: Outcomes that end the cadence: the exit reason, and the lead event they stand for.
ENDINGS: dict[Outcome, tuple[str, str | None]] = {
    Outcome.REACHED: ("reached", EventType.REPLY.value),
    Outcome.MEETING: ("meeting booked", EventType.MEETING_BOOKED.value),
    Outcome.NOT_INTERESTED: (NOT_INTERESTED_EXIT, None),
}
#: The prospecting cadence when no rules are given (``routing.hot`` of scoring.yaml).
DEFAULT_CADENCE = "sales-cadence"


class TaskError(SpiraleError):
    """A sales task cannot take this outcome (unknown, cancelled, already done otherwise)."""


class CallLimitError(TaskError):
    """One more call would break the legal limit; ``allowed_at`` is when the next may happen."""

    def __init__(self, message: str, *, allowed_at: datetime) -> None:
        super().__init__(message)
        self.allowed_at = allowed_at


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """What logging an outcome did."""

    task_id: uuid.UUID
    lead_id: uuid.UUID
    outcome: Outcome
    already: bool = False
    cadence_ended: bool = False
    exit_reason: str | None = None


def record_outcome(
    conn: Connection,
    *,
    task_id: uuid.UUID,
    outcome: str,
    now: datetime,
    actor: str,
    rules: ScoringRules | None = None,
) -> OutcomeResult:
    """Log the outcome of a sales task (caller commits). Idempotent for the same outcome; raises
    ``TaskError`` for an unknown task or outcome, a cancelled task or a different earlier outcome,
    and ``CallLimitError`` for a call beyond the legal limit."""
    chosen = _outcome(outcome)
    task = conn.execute(select(TASKS).where(TASKS.c.id == task_id).with_for_update()).first()
    if task is None:
        raise TaskError(f"no task {task_id}")
    if task.state == TaskState.DONE.value:
        if task.outcome == chosen.value:
            return OutcomeResult(task.id, task.lead_id, chosen, already=True)
        raise TaskError(f"task {task_id} is already done (outcome {task.outcome})")
    if task.state != TaskState.OPEN.value:
        raise TaskError(f"task {task_id} is {task.state}: the cadence it belonged to has ended")
    if task.kind == CALL:
        _check_call_limit(conn, task, now, rules.cadence if rules else CadenceSpec())
    conn.execute(
        update(TASKS)
        .where(TASKS.c.id == task_id)
        .values(state=TaskState.DONE.value, outcome=chosen.value, done_at=now)
    )
    _record_events(conn, task, chosen, now, actor)
    ending = ENDINGS.get(chosen)
    # Only the prospecting cadence ends on a reached / meeting / not-interested outcome: a
    # customer's monthly call that reached them must not end their contact policy.
    cadence = rules.routing.hot if rules is not None else DEFAULT_CADENCE
    if ending is None or task.enrollment_id is None or task.sequence_name != cadence:
        return OutcomeResult(task.id, task.lead_id, chosen)
    exit_enrollments(conn, exits=[(task.enrollment_id, ending[0])], now=now)
    return OutcomeResult(task.id, task.lead_id, chosen, cadence_ended=True, exit_reason=ending[0])


def _outcome(value: str) -> Outcome:
    try:
        return Outcome(value)
    except ValueError as exc:
        choices = ", ".join(o.value for o in Outcome)
        raise TaskError(f"unknown outcome {value!r}: expected one of {choices}") from exc


def _check_call_limit(conn: Connection, task: Any, now: datetime, cadence: CadenceSpec) -> None:
    status = conn.execute(select(LEADS.c.status).where(LEADS.c.id == task.lead_id)).scalar_one_or_none()
    if status == LeadStatus.CUSTOMER.value:
        return
    made = calls_made(conn, lead_id=task.lead_id, now=now, period=cadence.call_period)
    allowed = next_lawful_call(made, at=now, cadence=cadence)
    if allowed is not None:
        raise CallLimitError(
            f"{len(made)} calls to this person in the last {cadence.call_period.days} days: the law allows "
            f"{cadence.max_calls} (Code de la consommation D223-9); next call from "
            f"{allowed.isoformat(timespec='minutes')}",
            allowed_at=allowed,
        )


def _record_events(conn: Connection, task: Any, outcome: Outcome, now: datetime, actor: str) -> None:
    """The outcome itself (who logged it, for the record) and, for an answer, the lead event
    that ends other sequences and that the event processor scores."""
    payload = {
        "task_id": str(task.id),
        "kind": task.kind,
        "outcome": outcome.value,
        "actor": actor,
        "sequence": task.sequence_name,
        "step": task.step_id,
    }
    rows = [_event(task, OUTCOME_EVENT, f"task-outcome:{task.id}", now, payload, processed=True)]
    lead_event = ENDINGS.get(outcome, (None, None))[1]
    if lead_event is not None:
        rows.append(
            _event(task, lead_event, f"task-outcome:{task.id}:{lead_event}", now, payload, processed=False)
        )
    insert_ignoring_duplicates(conn, EVENTS, rows)


def _event(
    task: Any, kind: str, key: str, now: datetime, payload: dict[str, Any], *, processed: bool
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "type": kind,
        "lead_id": task.lead_id,
        "outbox_id": None,
        "provider": "sales",
        "dedup_key": key,
        "occurred_at": now,
        "received_at": now,
        "processed_at": now if processed else None,
        "payload": payload,
    }


# -- hand-back -------------------------------------------------------------------------------------

HANDING_BACK = "handing back"


def hand_back_completed(
    conn: Connection, *, now: datetime, rules: ScoringRules, catalog: SequenceCatalog
) -> int:
    """Give back to marketing every lead whose sales cadence ended without success (all attempts
    made, or not interested); returns how many leads went back. The caller commits."""
    _expire_stale_tasks(conn, now=now, rules=rules)
    claimed = _claim_finished(conn, now=now, sequence=rules.routing.hot)
    if not claimed:
        return 0
    answered = _answered(conn, claimed)
    kept = [
        (e, "kept by sales: the lead answered")
        for e, (lead_id, _, _) in claimed.items()
        if lead_id in answered
    ]
    _set_exit_reasons(conn, kept)
    back = {e: row for e, row in claimed.items() if row[0] not in answered}
    moves, reasons = _reset_and_move(conn, back, now=now, rules=rules)
    Router(rules=rules, catalog=catalog).route(conn, moves=moves, now=now)
    _set_exit_reasons(conn, reasons)
    return len(moves)


def _expire_stale_tasks(conn: Connection, *, now: datetime, rules: ScoringRules) -> None:
    """Open tasks of a finished cadence that are overdue by more than ``task_grace`` are cancelled:
    nobody will make that attempt any more."""
    finished = select(ENROLLMENTS.c.id).where(
        ENROLLMENTS.c.sequence_name == rules.routing.hot,
        ENROLLMENTS.c.state == EnrollmentState.COMPLETED.value,
        ENROLLMENTS.c.exit_reason.is_(None),
    )
    conn.execute(
        update(TASKS)
        .where(
            TASKS.c.enrollment_id.in_(finished.scalar_subquery()),
            TASKS.c.state == TaskState.OPEN.value,
            TASKS.c.due_at < now - rules.cadence.task_grace,
        )
        .values(state=TaskState.CANCELLED.value, outcome="expired", done_at=now)
    )


def _claim_finished(conn: Connection, *, now: datetime, sequence: str) -> dict[uuid.UUID, tuple[Any, ...]]:
    """Mark the finished cadences this run hands back (so a concurrent run skips them):
    enrollment id -> (lead id, enrolled at, how it ended)."""
    no_open_task = ~exists().where(
        TASKS.c.enrollment_id == ENROLLMENTS.c.id, TASKS.c.state == TaskState.OPEN.value
    )
    finished = or_(
        and_(ENROLLMENTS.c.state == EnrollmentState.COMPLETED.value, ENROLLMENTS.c.exit_reason.is_(None)),
        and_(
            ENROLLMENTS.c.state == EnrollmentState.EXITED.value,
            ENROLLMENTS.c.exit_reason == NOT_INTERESTED_EXIT,
        ),
    )
    statement = (
        update(ENROLLMENTS)
        .where(ENROLLMENTS.c.sequence_name == sequence, finished, no_open_task)
        .values(exit_reason=HANDING_BACK, updated_at=now)
        .returning(ENROLLMENTS.c.id, ENROLLMENTS.c.lead_id, ENROLLMENTS.c.enrolled_at, ENROLLMENTS.c.state)
    )
    return {row.id: (row.lead_id, row.enrolled_at, row.state) for row in conn.execute(statement)}


def _answered(conn: Connection, claimed: dict[uuid.UUID, tuple[Any, ...]]) -> set[uuid.UUID]:
    """Leads that answered during their cadence (a reply arriving after the last attempt too)."""
    since = {lead_id: enrolled_at for lead_id, enrolled_at, state in claimed.values() if state == "completed"}
    if not since:
        return set()
    query = select(EVENTS.c.lead_id, EVENTS.c.occurred_at).where(
        EVENTS.c.lead_id.in_(list(since)), EVENTS.c.type.in_(ANSWERS)
    )
    return {lead_id for lead_id, at in conn.execute(query) if at >= since[lead_id]}


def _reset_and_move(
    conn: Connection, back: dict[uuid.UUID, tuple[Any, ...]], *, now: datetime, rules: ScoringRules
) -> tuple[list[StatusMove], list[tuple[uuid.UUID, str]]]:
    """Reset the engagement of the leads handed back and move them to warm or cold by fit."""
    lead_ids = [lead_id for lead_id, _, _ in back.values()]
    columns = (LEADS.c.id, LEADS.c.status, LEADS.c.fit_score, LEADS.c.engagement_score, LEADS.c.engagement_at)
    leads = {row.id: row for row in conn.execute(select(*columns).where(LEADS.c.id.in_(lead_ids)))}
    moves, reasons, ledger = [], [], []
    for enrollment_id, (lead_id, _, state) in back.items():
        lead = leads.get(lead_id)
        if lead is None or lead.status not in SCORED:
            reasons.append((enrollment_id, f"ended: lead is {lead.status if lead else 'erased'}"))
            continue
        why_back = (
            NOT_INTERESTED_EXIT if state == EnrollmentState.EXITED.value else "all attempts without answer"
        )
        current = decayed(lead.engagement_score, lead.engagement_at, now, rules.engagement.half_life)
        line = ScoreLine(
            EntryKind.ENGAGEMENT, "cadence.hand_back", -current, f"back to marketing: {why_back}", at=now
        )
        ledger += ledger_rows(lead_id, [line], now=now)
        new = status_of(lead.fit_score, 0.0, rules)
        new = LeadStatus.WARM if new is LeadStatus.HOT else new
        moves.append(
            StatusMove(lead_id, lead.status, new.value, f"{why_back}; {why(lead.fit_score, 0.0, rules)}")
        )
        reasons.append((enrollment_id, f"handed back to {_track(new, rules)} ({why_back})"))
    conn.execute(
        update(LEADS)
        .where(LEADS.c.id.in_([m.lead_id for m in moves]))
        .values(engagement_score=0.0, engagement_at=now)
    )
    write_ledger(conn, ledger)
    record_moves(conn, [m for m in moves if m.old != m.new], now=now)
    return moves, reasons


def _track(status: LeadStatus, rules: ScoringRules) -> str:
    return rules.routing.warm if status is LeadStatus.WARM else rules.routing.cold


def _set_exit_reasons(conn: Connection, reasons: list[tuple[uuid.UUID, str]]) -> None:
    if reasons:
        statement = (
            update(ENROLLMENTS)
            .where(ENROLLMENTS.c.id == bindparam("b_id"))
            .values(exit_reason=bindparam("b_reason"))
        )
        conn.execute(statement, [{"b_id": e, "b_reason": reason[:500]} for e, reason in reasons])
