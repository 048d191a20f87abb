"""Opt-outs and early exits caused by what a lead did.

- An **opt-out** (unsubscribe link or event, spam report, SMS STOP, a provider's "opted out")
  suppresses the address on its channel and exits every live *marketing* enrollment of the lead:
  one in a sequence with at least one non-transactional step (an unknown sequence counts as
  marketing: stopping is the safe side). The dispatcher checks suppressions again at send time,
  so a message already queued is still held.
- An **opt-in** (SMS START) lifts the number's suppression only. Enrollments that STOP ended stay
  ended: the lead may receive SMS again, but nothing resumes by itself; a new enrollment (a form,
  routing) starts afresh.
- Other lead actions (reply, click, meeting, conversion, bounce) exit the enrollments whose
  sequence lists the matching ``exit_when`` condition, as the dispatcher would at send time.

Only enrollments that started before the event are touched: an old event processed late never
ends an enrollment the lead started since.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, select, update

from models.leads import normalize_phone
from models.suppressions import suppress, unsuppress
from models.tables import LIVE_ENROLLMENT_STATES, Enrollment, EnrollmentState, Lead, SalesTask, TaskState
from sequences.catalog import SequenceCatalog
from sequences.schema import Sequence as SequenceSpec
from spirale.dispatch.decide import EVENT_EXITS
from spirale.errors import SequenceError

logger = logging.getLogger(__name__)

ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class OptOutResult:
    """Whether the address was newly suppressed, and the enrollments it ended."""

    suppressed: bool
    exited: int


def opt_out(
    conn: Connection,
    *,
    channel: str,
    address: str | None,
    lead_ids: Collection[uuid.UUID],
    reason: str,
    source: str,
    occurred_at: datetime,
    now: datetime,
    catalog: SequenceCatalog,
) -> OptOutResult:
    """Suppress ``address`` on ``channel`` and exit the leads' marketing enrollments (caller commits)."""
    newly = False
    if address:
        newly = suppress(conn, channel=channel, address=address, reason=reason, source=source, now=now)
    exits = [
        (enrollment_id, reason)
        for enrollment_id, sequence_name in live_enrollments(conn, lead_ids, started_by=occurred_at)
        if is_marketing(sequence_name, catalog)
    ]
    return OptOutResult(suppressed=newly, exited=exit_enrollments(conn, exits, now=now))


def opt_in(conn: Connection, *, channel: str, address: str) -> bool:
    """Lift the suppression of ``address`` on ``channel``; enrollments are not resumed."""
    return unsuppress(conn, channel=channel, address=address)


def exit_on_event(
    conn: Connection,
    *,
    lead_ids: Collection[uuid.UUID],
    event_type: str,
    occurred_at: datetime,
    now: datetime,
    catalog: SequenceCatalog,
) -> Counter[str]:
    """Exit the enrollments whose ``exit_when`` lists ``event_type``; returns exits per reason."""
    exits: list[tuple[uuid.UUID, str]] = []
    for enrollment_id, sequence_name in live_enrollments(conn, lead_ids, started_by=occurred_at):
        sequence = _sequence(sequence_name, catalog)
        if sequence is None:
            continue
        reason = next((c.value for c in sequence.exit_when if event_type in EVENT_EXITS.get(c, ())), None)
        if reason is not None:
            exits.append((enrollment_id, reason))
    exit_enrollments(conn, exits, now=now)
    return Counter(reason for _, reason in exits)


def live_enrollments(
    conn: Connection, lead_ids: Collection[uuid.UUID], *, started_by: datetime
) -> list[tuple[uuid.UUID, str]]:
    """``(id, sequence_name)`` of the leads' active or paused enrollments started by ``started_by``."""
    if not lead_ids:
        return []
    query = select(ENROLLMENTS.c.id, ENROLLMENTS.c.sequence_name).where(
        ENROLLMENTS.c.lead_id.in_(list(lead_ids)),
        ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES),
        ENROLLMENTS.c.enrolled_at <= started_by,
    )
    return [(row[0], row[1]) for row in conn.execute(query)]


def exit_enrollments(conn: Connection, exits: Sequence[tuple[uuid.UUID, str]], *, now: datetime) -> int:
    """Exit live enrollments with their reasons and cancel their open sales tasks. The claim is
    cleared too, so a dispatcher holding one of them loses its fence and sends nothing for it."""
    exited = 0
    for enrollment_id, reason in exits:
        exited += conn.execute(
            update(ENROLLMENTS)
            .where(ENROLLMENTS.c.id == enrollment_id, ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES))
            .values(
                state=EnrollmentState.EXITED.value,
                exit_reason=reason[:500],
                next_due_at=None,
                claimed_by=None,
                lease_until=None,
                updated_at=now,
            )
        ).rowcount
    if exits:
        conn.execute(
            update(TASKS)
            .where(TASKS.c.enrollment_id.in_([e for e, _ in exits]), TASKS.c.state == TaskState.OPEN.value)
            .values(state=TaskState.CANCELLED.value, done_at=now)
        )
    return exited


def is_marketing(sequence_name: str, catalog: SequenceCatalog) -> bool:
    """True unless every step of the sequence is transactional (an unknown sequence is marketing)."""
    sequence = _sequence(sequence_name, catalog)
    return sequence is None or not all(step.transactional for step in sequence.steps)


def leads_with_phone(conn: Connection, phone: str) -> list[uuid.UUID]:
    """The leads whose phone is ``phone`` (compared in E.164); none for an invalid number."""
    try:
        e164 = normalize_phone(phone)
    except ValueError:
        return []
    return list(conn.execute(select(LEADS.c.id).where(LEADS.c.phone == e164)).scalars())


def _sequence(name: str, catalog: SequenceCatalog) -> SequenceSpec | None:
    try:
        return catalog.get(name)
    except SequenceError as exc:
        logger.warning("sequence %s is unavailable (%s): its enrollments count as marketing", name, exc)
        return None
