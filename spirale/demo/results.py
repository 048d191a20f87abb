"""What the demo run produced, read back from its database: the funnel, the messages per channel,
the deferrals, the suppressions, the sales attempts, sends per day, the journey of one lead on the
golden spiral, and the A/B review of the reactivation campaign."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Table, func, select

from models.db import read_only_connection
from models.tables import (
    Enrollment,
    Event,
    EventType,
    FormSubmission,
    Lead,
    LeadStatus,
    OutboxMessage,
    SalesTask,
    ScoreEntry,
    Suppression,
)

if TYPE_CHECKING:
    from scoring.ab_report import Review

PARIS = ZoneInfo("Europe/Paris")
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
SUBMISSIONS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
LEDGER: Table = ScoreEntry.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
FUNNEL = ("downloads", "qualified", "warm", "hot", "meetings", "customers")
SPIRAL_SEQUENCE = "whitepaper-nurture"


@dataclass(frozen=True, slots=True)
class Touch:
    """One message of the lead drawn on the golden spiral."""

    step: str
    channel: str
    at: datetime
    variant: str | None


@dataclass(frozen=True)
class Journey:
    """One lead's way through a sequence: who, when it started, what it received."""

    sequence: str
    lead: str
    enrolled_at: datetime
    touches: tuple[Touch, ...]


@dataclass
class Results:
    """Everything the summary and the report show."""

    start: date
    days: int
    people: int
    funnel: list[tuple[str, int]]
    off_target: Counter[str]  # downloads disqualified, by the qualification rule that fired
    messages: dict[str, Counter[str]]
    tasks: Counter[str]
    outcomes: Counter[str]
    deferred: Counter[str]
    blocked: Counter[str]
    suppressions: Counter[tuple[str, str]]
    sends_per_day: dict[date, Counter[str]]
    journey: Journey | None
    review: Review | None
    conversions: int
    revenue: float
    notifications: int
    outbox_dir: Path
    samples: list[tuple[str, str, str]]  # the first email of each step: where, subject, file name
    refused_calls: int = 0  # call attempts the legal limit refused
    form_errors: Counter[str] = field(default_factory=Counter)  # forms the API answered 422, by field
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sent(self) -> Counter[str]:
        """Messages sent per channel."""
        return Counter({channel: states.get("sent", 0) for channel, states in self.messages.items()})


def read_results(engine: Engine, **known: Any) -> Results:
    """Read the run's results; ``known`` passes what only the run knows (dates, totals, review)."""
    with read_only_connection(engine) as conn:
        return Results(
            funnel=funnel(conn),
            messages=_messages(conn),
            tasks=_tasks(conn),
            suppressions=_suppressions(conn),
            sends_per_day=_sends_per_day(conn),
            journey=journey(conn),
            conversions=_count(conn, select(func.count()).where(EVENTS.c.type == EventType.CONVERTED.value)),
            revenue=_revenue(conn),
            notifications=_count(conn, select(func.count()).where(EVENTS.c.type == "owner_notified")),
            people=_count(conn, select(func.count()).select_from(LEADS)),
            samples=_samples(conn),
            **known,
        )


def funnel(conn: Connection) -> list[tuple[str, int]]:
    """People who downloaded something, stage by stage. A lead that reached a later stage passed
    the earlier ones (a call-back request goes straight to hot), so each stage counts the leads
    that reached it or any later one."""
    downloads = _count(conn, select(func.count()).select_from(SUBMISSIONS))
    downloaders = _ids(conn, select(SUBMISSIONS.c.lead_id).where(SUBMISSIONS.c.status == "processed"))
    disqualified = _ids(conn, select(LEADS.c.id).where(LEADS.c.status == LeadStatus.DISQUALIFIED.value))
    qualified = downloaders - disqualified
    reached = [
        _ids(conn, select(LEDGER.c.lead_id).where(LEDGER.c.rule.in_(("status.warm", "status.hot")))),
        _ids(conn, select(LEDGER.c.lead_id).where(LEDGER.c.rule == "status.hot")),
        _ids(conn, select(EVENTS.c.lead_id).where(EVENTS.c.type == EventType.MEETING_BOOKED.value)),
        _ids(conn, select(EVENTS.c.lead_id).where(EVENTS.c.type == EventType.CONVERTED.value)),
    ]
    stages = [stage & qualified for stage in reached]
    for index in range(len(stages) - 2, -1, -1):
        stages[index] |= stages[index + 1]
    counts = [downloads, len(qualified), *(len(stage) for stage in stages)]
    return list(zip(FUNNEL, counts, strict=True))


def journey(conn: Connection, sequence: str = SPIRAL_SEQUENCE) -> Journey | None:
    """The lead of ``sequence`` that received the most messages (its whole golden spiral)."""
    count = func.count(OUTBOX.c.id)
    best = conn.execute(
        select(OUTBOX.c.enrollment_id, count)
        .where(OUTBOX.c.sequence_name == sequence, OUTBOX.c.state == "sent")
        .group_by(OUTBOX.c.enrollment_id)
        .order_by(count.desc(), func.min(OUTBOX.c.sent_at))
        .limit(1)
    ).first()
    if best is None:
        return None
    enrollment = conn.execute(
        select(ENROLLMENTS.c.enrolled_at, LEADS.c.first_name, LEADS.c.last_name, LEADS.c.company)
        .join(LEADS, LEADS.c.id == ENROLLMENTS.c.lead_id)
        .where(ENROLLMENTS.c.id == best.enrollment_id)
    ).one()
    rows = conn.execute(
        select(OUTBOX.c.step_id, OUTBOX.c.channel, OUTBOX.c.sent_at, OUTBOX.c.variant)
        .where(OUTBOX.c.enrollment_id == best.enrollment_id, OUTBOX.c.state == "sent")
        .order_by(OUTBOX.c.sent_at)
    )
    who = f"{enrollment.first_name} {enrollment.last_name} ({enrollment.company})".strip()
    return Journey(sequence, who, enrollment.enrolled_at, tuple(Touch(*row) for row in rows))


def _messages(conn: Connection) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    query = select(OUTBOX.c.channel, OUTBOX.c.state, func.count()).group_by(OUTBOX.c.channel, OUTBOX.c.state)
    for channel, state, count in conn.execute(query):
        found.setdefault(channel, Counter())[state] = count
    return found


def _tasks(conn: Connection) -> Counter[str]:
    """Sales tasks per sequence and kind (``sales-cadence call``, ``customer-care call`` ...)."""
    query = select(TASKS.c.sequence_name, TASKS.c.kind, func.count()).group_by(
        TASKS.c.sequence_name, TASKS.c.kind
    )
    return Counter({f"{sequence or 'hot lead'} {kind}": n for sequence, kind, n in conn.execute(query)})


def _samples(conn: Connection) -> list[tuple[str, str, str]]:
    query = (
        select(OUTBOX.c.sequence_name, OUTBOX.c.step_id, OUTBOX.c.subject, OUTBOX.c.id)
        .where(OUTBOX.c.channel == "email", OUTBOX.c.state == "sent")
        .order_by(OUTBOX.c.sent_at)
    )
    first: dict[str, tuple[str, str, str]] = {}
    for sequence, step, subject, outbox_id in conn.execute(query):
        where = f"{sequence}/{step}"
        first.setdefault(where, (where, subject or "", f"{outbox_id}.eml"))
    return sorted(first.values())


def _suppressions(conn: Connection) -> Counter[tuple[str, str]]:
    query = select(SUPPRESSIONS.c.channel, SUPPRESSIONS.c.reason, func.count()).group_by(
        SUPPRESSIONS.c.channel, SUPPRESSIONS.c.reason
    )
    return Counter({(channel, reason): count for channel, reason, count in conn.execute(query)})


def _sends_per_day(conn: Connection) -> dict[date, Counter[str]]:
    days: dict[date, Counter[str]] = {}
    query = select(OUTBOX.c.channel, OUTBOX.c.sent_at).where(OUTBOX.c.state == "sent")
    for channel, sent_at in conn.execute(query):
        days.setdefault(sent_at.astimezone(PARIS).date(), Counter())[channel] += 1
    tasks = select(TASKS.c.created_at)
    for (created_at,) in conn.execute(tasks):
        days.setdefault(created_at.astimezone(PARIS).date(), Counter())["sales task"] += 1
    return days


def _revenue(conn: Connection) -> float:
    payloads = conn.execute(select(EVENTS.c.payload).where(EVENTS.c.type == EventType.CONVERTED.value))
    return float(sum((payload or {}).get("value") or 0 for (payload,) in payloads))


def _ids(conn: Connection, query: Any) -> set[uuid.UUID]:
    return {value for value in conn.execute(query).scalars() if value is not None}


def _count(conn: Connection, query: Any) -> int:
    return int(conn.execute(query).scalar_one())
