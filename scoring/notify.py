"""Telling a salesperson that a hot lead is on their list: an email and/or an SMS through the
delivery channels (``channels.registry.build_channels``), at most once per task and channel.

Each notification is recorded before it is sent, as an ``owner_notified`` event whose
``dedup_key`` (``owner-notified:<task>:<channel>``) is unique: the run that inserts the row sends,
any other run (a retry, a concurrent worker) finds it and does not. The event then records what
the channel said (``sent``, ``failed`` or ``unknown``); a notification that failed is not resent
blindly: the task is on the owner's list either way (``spirale tasks``).
"""

from __future__ import annotations

import html
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from channels.base import AnyChannel, EmailMessage, SendOutcome, SmsMessage
from channels.registry import build_channels
from models.tables import Event, Lead, SalesTask, TaskState
from scoring.routing import HOT_TASK_STEP
from scoring.rules import ScoringRules
from scoring.team import Salesperson, Team
from sequences.catalog import SequenceCatalog
from spirale.errors import UnknownOutcomeError
from spirale.settings import Settings

EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
NOTIFICATION_EVENT = "owner_notified"
#: How far back ``notify_pending`` looks: an alert older than this is no news to its owner.
PENDING_WINDOW = timedelta(days=2)
PARIS = ZoneInfo("Europe/Paris")


@dataclass
class NotifyReport:
    """Notifications sent, failed and skipped (with why), per channel."""

    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Pending:
    event_id: uuid.UUID
    channel: str
    message: EmailMessage | SmsMessage


def notify_tasks(
    engine: Engine,
    *,
    task_ids: Sequence[uuid.UUID],
    now: datetime,
    settings: Settings,
    rules: ScoringRules,
    team: Team,
    channels: Mapping[str, AnyChannel] | None = None,
) -> NotifyReport:
    """Notify the owners of these open tasks, once per task and channel (commits itself)."""
    report = NotifyReport()
    if not task_ids:
        return report
    chosen = channels if channels is not None else {str(k): c for k, c in build_channels(settings).items()}
    with engine.connect() as conn:
        query = (
            select(TASKS, LEADS.c.first_name, LEADS.c.last_name, LEADS.c.company, LEADS.c.job_title)
            .add_columns(LEADS.c.email, LEADS.c.phone)
            .join(LEADS, LEADS.c.id == TASKS.c.lead_id)
            .where(TASKS.c.id.in_(list(task_ids)), TASKS.c.state == TaskState.OPEN.value)
        )
        tasks = [dict(row._mapping) for row in conn.execute(query)]
    pending = _claim(engine, tasks, now=now, settings=settings, rules=rules, team=team, report=report)
    for channel in ("email", "sms"):
        batch = [p for p in pending if p.channel == channel]
        if batch:
            outcomes = chosen[channel].send_many([p.message for p in batch])
            _record(engine, batch, outcomes, now=now, report=report)
    return report


def notify_pending(
    engine: Engine,
    *,
    now: datetime,
    settings: Settings,
    rules: ScoringRules,
    team: Team,
    catalog: SequenceCatalog,
    within: timedelta = PENDING_WINDOW,
    channels: Mapping[str, AnyChannel] | None = None,
) -> NotifyReport:
    """Notify the owners of every hot lead's first task of the last ``within`` that no run has
    notified yet: a sweep for the tasks whose notification was never attempted (a process that
    stopped between its commit and the send, a caller that routed without notifying)."""
    with engine.connect() as conn:
        pending = _unnotified(
            conn, since=now - within, rules=rules, first_step=catalog.get(rules.routing.hot).steps[0].id
        )
    return notify_tasks(
        engine, task_ids=pending, now=now, settings=settings, rules=rules, team=team, channels=channels
    )


def _unnotified(
    conn: Connection, *, since: datetime, rules: ScoringRules, first_step: str
) -> list[uuid.UUID]:
    """Open first tasks of hot leads created since ``since`` that miss a notification."""
    candidates = list(
        conn.execute(
            select(TASKS.c.id).where(
                TASKS.c.state == TaskState.OPEN.value,
                TASKS.c.sequence_name == rules.routing.hot,
                TASKS.c.step_id.in_((first_step, HOT_TASK_STEP)),
                TASKS.c.created_at >= since,
            )
        ).scalars()
    )
    keys = {t: [f"owner-notified:{t}:{c}" for c in rules.routing.notify] for t in candidates}
    wanted = [key for task_keys in keys.values() for key in task_keys]
    done = (
        set(conn.execute(select(EVENTS.c.dedup_key).where(EVENTS.c.dedup_key.in_(wanted))).scalars())
        if wanted
        else set()
    )
    return [t for t, task_keys in keys.items() if not done.issuperset(task_keys)]


def _claim(
    engine: Engine,
    tasks: list[dict[str, Any]],
    *,
    now: datetime,
    settings: Settings,
    rules: ScoringRules,
    team: Team,
    report: NotifyReport,
) -> list[_Pending]:
    """Record every notification about to be sent; only the ones this run recorded are returned."""
    pending = []
    with engine.begin() as conn:
        for task in tasks:
            owner = team.get(task["owner"])
            for channel in rules.routing.notify:
                address = _address(owner, channel)
                if address is None:
                    report.skipped[f"no owner {channel}"] += 1
                    continue
                event_id = uuid.uuid4()
                row = _event_row(event_id, task, channel, address, now)
                if not _insert_once(conn, row):
                    report.skipped["already notified"] += 1
                    continue
                pending.append(
                    _Pending(event_id, channel, _message(event_id, channel, address, task, settings))
                )
    return pending


def _insert_once(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert an event unless its ``dedup_key`` exists; whether this call inserted it."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
    statement = dialect.insert(EVENTS).values(row).on_conflict_do_nothing().returning(EVENTS.c.id)
    return conn.execute(statement).first() is not None


def _address(owner: Salesperson | None, channel: str) -> str | None:
    if owner is None:
        return None
    return owner.email if channel == "email" else owner.phone


def _event_row(
    event_id: uuid.UUID, task: Mapping[str, Any], channel: str, address: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": NOTIFICATION_EVENT,
        "lead_id": task["lead_id"],
        "outbox_id": None,
        "provider": channel,
        "dedup_key": f"owner-notified:{task['id']}:{channel}",
        "occurred_at": now,
        "received_at": now,
        "processed_at": now,  # internal: nothing for the event processor to do
        "payload": {
            "task_id": str(task["id"]),
            "owner": task["owner"],
            "channel": channel,
            "to": address,
            "state": "sending",
        },
    }


def _message(
    event_id: uuid.UUID, channel: str, address: str, task: Mapping[str, Any], settings: Settings
) -> EmailMessage | SmsMessage:
    name = " ".join(p for p in (task["first_name"], task["last_name"]) if p) or task["email"] or "un prospect"
    company = f" ({task['company']})" if task["company"] else ""
    due = task["due_at"].astimezone(PARIS).strftime("%d/%m à %H:%M")
    outbox_id = f"notify-{event_id.hex}"
    if channel == "sms":
        contact = task["phone"] or task["email"]
        body = f"{settings.sender_name}: prospect chaud {name}{company}, {contact}. A traiter le {due}."
        return SmsMessage(outbox_id=outbox_id, to=address, body=body)
    lines = [
        f"Un prospect chaud vous est confié : {name}{company}.",
        f"Fonction : {task['job_title'] or 'inconnue'}",
        f"E-mail : {task['email'] or '-'}",
        f"Téléphone : {task['phone'] or '-'}",
        f"Première tentative ({task['kind']}) à faire le {due} (heure de Paris).",
        "",
        task["note"] or "",
        "",
        f"Une fois fait : spirale task done {task['id']} --outcome reached|no-answer|voicemail|"
        "wrong-number|not-interested|meeting",
    ]
    text = "\n".join(lines)
    return EmailMessage(
        outbox_id=outbox_id,
        to=address,
        subject=f"Prospect chaud : {name}{company}",
        html=f"<pre>{html.escape(text)}</pre>",
        text=text,
        from_email=settings.sender_email,
        from_name=settings.sender_name,
        categories=("owner-notification",),
    )


_RESULT = (
    update(EVENTS)
    .where(EVENTS.c.id == bindparam("b_id"))
    .values(payload=bindparam("b_payload", type_=EVENTS.c.payload.type))
)


def _record(
    engine: Engine, batch: list[_Pending], outcomes: list[SendOutcome], *, now: datetime, report: NotifyReport
) -> None:
    by_id = {f"notify-{p.event_id.hex}": p for p in batch}
    with engine.begin() as conn:
        payloads = {
            row.id: dict(row.payload)
            for row in conn.execute(
                select(EVENTS.c.id, EVENTS.c.payload).where(EVENTS.c.id.in_([p.event_id for p in batch]))
            )
        }
        params = []
        for outcome in outcomes:
            pending = by_id[outcome.outbox_id]
            payload = payloads[pending.event_id]
            if outcome.result is not None:
                report.sent[pending.channel] += 1
                payload.update(state="sent", provider_message_id=outcome.result.provider_message_id)
            else:
                report.failed[pending.channel] += 1
                state = "unknown" if isinstance(outcome.error, UnknownOutcomeError) else "failed"
                payload.update(state=state, error=str(outcome.error)[:500])
            payload["recorded_at"] = now.isoformat()
            params.append({"b_id": pending.event_id, "b_payload": payload})
        conn.execute(_RESULT, params)
