"""Provider and lead events: stored idempotently, then applied to leads, enrollments and the outbox.

Webhooks call :func:`store_events` (one row per event, keyed by its dedup key, so a replay stores
nothing); :func:`process_events` then claims unprocessed events in one transaction and applies them:

- delivery statuses move forward only, and any provider event about an ``unknown`` message
  proves it was sent (``spirale.delivery``);
- unsubscribes, spam reports, SMS STOP and Twilio's "opted out" suppress the address and exit the
  lead's marketing enrollments; hard bounces suppress the email; START lifts the SMS suppression
  without resuming anything (``spirale.optouts``);
- clicks, replies, meetings and conversions record ``last_engaged_at`` (CNIL: a click counts, an
  open does not) and exit the sequences whose ``exit_when`` asks for it;
- scores change through ``scoring.engagement.apply_event_scores`` and the resulting status moves
  are routed (``scoring.routing.route_moves``);
- HELP is answered with ``settings.sms_help_text`` after the transaction commits. The event is
  marked processed in that transaction, so a HELP is answered at most once (a crash between the
  commit and the send leaves it unanswered rather than answered twice).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Row, Table, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from channels.base import AnyChannel, SmsMessage
from channels.webhooks import NormalizedEvent
from models.suppressions import canonical_address, suppress
from models.tables import Event, EventType, Lead
from sequences.catalog import SequenceCatalog
from spirale.delivery import EMAIL_STATUS, advance_status, confirm_sent
from spirale.events_resolve import address_of, resolve_targets
from spirale.optouts import exit_on_event, leads_with_phone, opt_in, opt_out
from spirale.settings import Settings

logger = logging.getLogger(__name__)

EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
PROVIDERS = frozenset({"sendgrid", "twilio"})
OPTED_OUT_CODE = "21610"
#: Lead actions that refresh ``last_engaged_at`` (contact initiated by the lead).
ENGAGING = frozenset(
    {
        EventType.CLICK.value,
        EventType.REPLY.value,
        EventType.SMS_REPLY.value,
        EventType.MEETING_BOOKED.value,
        EventType.CONVERTED.value,
    }
)
#: Lead actions that may end an enrollment through its ``exit_when``.
EXITING = ENGAGING | {EventType.BOUNCE.value}
#: SendGrid drop reasons that mean the address must not be mailed again.
_SUPPRESSING_DROPS = ("bounce", "unsubscribe", "spam")
_TOTALS = ("delivery_updates", "confirmed_sent", "engaged", "status_moves", "help_sent", "help_failed")


@dataclass(frozen=True, slots=True)
class StoreResult:
    """How many events of a request were new, and how many were replays."""

    stored: int
    duplicates: int


@dataclass
class EventsReport:
    """What one :func:`process_events` call did."""

    processed: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    unsuppressed: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    delivery_updates: int = 0
    confirmed_sent: int = 0
    engaged: int = 0
    status_moves: int = 0
    help_sent: int = 0
    help_failed: int = 0
    scoring: str = "skipped"
    more: bool = False
    hot_tasks: list[uuid.UUID] = field(default_factory=list)  # sales tasks of leads that turned hot
    owners_notified: int = 0

    @property
    def total(self) -> int:
        return sum(self.processed.values())

    def rows(self) -> list[dict[str, str | int]]:
        """One row per (outcome, key), for a table artifact."""
        rows: list[dict[str, str | int]] = []
        for name in ("processed", "suppressed", "unsuppressed", "exited"):
            counter: Counter[str] = getattr(self, name)
            rows.extend({"outcome": name, "key": k, "count": n} for k, n in sorted(counter.items()))
        for name in (
            "delivery_updates",
            "confirmed_sent",
            "engaged",
            "status_moves",
            "help_sent",
            "help_failed",
        ):
            rows.append({"outcome": name, "key": "", "count": int(getattr(self, name))})
        return rows

    def summary(self) -> str:
        return (
            f"processed {self.total} events, suppressed {sum(self.suppressed.values())}, "
            f"unsuppressed {sum(self.unsuppressed.values())}, exited {sum(self.exited.values())}, "
            f"delivery updates {self.delivery_updates}, confirmed sent {self.confirmed_sent}, "
            f"status moves {self.status_moves}, help {self.help_sent} sent / {self.help_failed} failed, "
            f"scoring {self.scoring}"
        )


# -- storing ------------------------------------------------------------------------------------


def store_events(
    conn: Connection, events: Sequence[NormalizedEvent], *, received_at: datetime
) -> StoreResult:
    """Insert new events, unprocessed; replays (same dedup key) are skipped. Caller commits.

    The outbox row and the lead of each event are resolved here from the provider's hints (the
    outbox id it echoed, its message id, the address), never taken on trust as foreign keys."""
    unique = list({event.dedup_key: event for event in events}.values())
    if not unique:
        return StoreResult(stored=0, duplicates=len(events))
    targets = resolve_targets(conn, unique)
    rows = [
        {
            "id": uuid.uuid4(),
            "type": event.type.value,
            "lead_id": targets[index].lead_id,
            "outbox_id": targets[index].outbox_id,
            "provider": event.provider,
            "dedup_key": event.dedup_key,
            "occurred_at": event.occurred_at,
            "received_at": received_at,
            "processed_at": None,
            "payload": event.payload,
        }
        for index, event in enumerate(unique)
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(EVENTS).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(EVENTS.c.id)
    )
    stored = sum(conn.execute(statement.values(row)).first() is not None for row in rows)
    return StoreResult(stored=stored, duplicates=len(events) - stored)


# -- processing ---------------------------------------------------------------------------------


def process_events(
    engine: Engine,
    *,
    now: datetime,
    settings: Settings,
    limit: int = 5000,
    channels: Mapping[str, AnyChannel] | None = None,
    catalog: SequenceCatalog | None = None,
) -> EventsReport:
    """Apply up to ``limit`` unprocessed events, oldest first, in one transaction; then answer
    HELP messages. ``report.more`` says whether events were left for another call."""
    catalog = catalog or SequenceCatalog.open(settings.sequences_dir)
    report = EventsReport()
    with engine.begin() as conn:
        rows = _claim(conn, now=now, limit=limit)
        applier = _Applier(conn=conn, now=now, catalog=catalog, report=report)
        for row in rows:
            applier.apply(row)
        _score(conn, rows, now=now, settings=settings, catalog=catalog, report=report)
    report.more = len(rows) >= limit
    if report.hot_tasks:
        _notify_owners(engine, report, now=now, settings=settings, channels=channels)
    if applier.help_requests:
        sms = channels.get("sms") if channels is not None else None
        if sms is None:
            from channels.registry import build_sms_channel

            sms = build_sms_channel(settings)
        _answer_help(applier.help_requests, sms, settings, report)
    return report


def _notify_owners(
    engine: Engine,
    report: EventsReport,
    *,
    now: datetime,
    settings: Settings,
    channels: Mapping[str, AnyChannel] | None,
) -> None:
    """A lead an event made hot reaches its salesperson at once: notify the new tasks' owners
    (after the commit, once per task: ``notify_tasks`` records each notification first)."""
    from scoring.notify import notify_tasks
    from scoring.rules import load_rules, scoring_path
    from scoring.team import load_team, team_path

    path = scoring_path(settings.sequences_dir)
    rules = _cached_rules(path, path.stat().st_mtime_ns, load_rules)
    team = load_team(team_path(settings.sequences_dir))
    notified = notify_tasks(
        engine,
        task_ids=report.hot_tasks,
        now=now,
        settings=settings,
        rules=rules,
        team=team,
        channels=channels,
    )
    report.owners_notified = sum(notified.sent.values())


def _claim(conn: Connection, *, now: datetime, limit: int) -> list[Row[Any]]:
    query = (
        select(EVENTS)
        .where(EVENTS.c.processed_at.is_(None))
        .order_by(EVENTS.c.occurred_at, EVENTS.c.received_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(conn.execute(query))
    if rows:
        conn.execute(update(EVENTS).where(EVENTS.c.id.in_([r.id for r in rows])).values(processed_at=now))
    return rows


@dataclass
class _Applier:
    """Applies claimed events one by one, in the order they happened."""

    conn: Connection
    now: datetime
    catalog: SequenceCatalog
    report: EventsReport
    help_requests: list[tuple[uuid.UUID, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._handlers: dict[str, Callable[[Row[Any]], None]] = {
            EventType.UNSUBSCRIBE.value: lambda row: self._opt_out(row, "email", "unsubscribed"),
            EventType.SPAM_REPORT.value: lambda row: self._opt_out(row, "email", "spam report"),
            EventType.SMS_STOP.value: lambda row: self._opt_out(row, "sms", "sms stop"),
            EventType.SMS_START.value: self._opt_in,
            EventType.SMS_HELP.value: self._help,
            EventType.SMS_STATUS.value: self._sms_status,
            EventType.BOUNCE.value: self._bounce,
            EventType.DROPPED.value: self._dropped,
        }

    def apply(self, row: Row[Any]) -> None:
        self.report.processed[row.type] += 1
        if row.outbox_id is not None and row.provider in PROVIDERS:
            self._delivery(row)
        handler = self._handlers.get(row.type)
        if handler is not None:
            handler(row)
        if row.type in ENGAGING and row.lead_id is not None:
            self._engaged(row.lead_id, row.occurred_at)
        if row.type in EXITING and row.lead_id is not None:
            self.report.exited.update(
                exit_on_event(
                    self.conn,
                    lead_ids=[row.lead_id],
                    event_type=row.type,
                    occurred_at=row.occurred_at,
                    now=self.now,
                    catalog=self.catalog,
                )
            )

    def _delivery(self, row: Row[Any]) -> None:
        payload = row.payload or {}
        message_id = payload.get("MessageSid") if row.provider == "twilio" else None
        if confirm_sent(
            self.conn,
            outbox_id=row.outbox_id,
            seen_at=row.occurred_at,
            now=self.now,
            provider_message_id=message_id,
            evidence=f"{row.provider} {row.type} event",
        ):
            self.report.confirmed_sent += 1
        status = (
            payload.get("MessageStatus") if row.type == EventType.SMS_STATUS else EMAIL_STATUS.get(row.type)
        )
        if status and advance_status(self.conn, outbox_id=row.outbox_id, status=str(status), now=self.now):
            self.report.delivery_updates += 1

    def _opt_out(self, row: Row[Any], channel: str, reason: str) -> None:
        address = address_of(self.conn, row, channel)
        lead_ids = _lead_ids(self.conn, row, channel, address)
        result = opt_out(
            self.conn,
            channel=channel,
            address=address,
            lead_ids=lead_ids,
            reason=reason,
            source=row.provider or "event",
            occurred_at=row.occurred_at,
            now=self.now,
            catalog=self.catalog,
        )
        self.report.suppressed[channel] += int(result.suppressed)
        self.report.exited[reason] += result.exited

    def _suppress_only(self, row: Row[Any], channel: str, reason: str) -> None:
        address = address_of(self.conn, row, channel)
        if address and suppress(
            self.conn, channel=channel, address=address, reason=reason, source=row.provider, now=self.now
        ):
            self.report.suppressed[channel] += 1

    def _opt_in(self, row: Row[Any]) -> None:
        address = address_of(self.conn, row, "sms")
        if address and opt_in(self.conn, channel="sms", address=address):
            self.report.unsuppressed["sms"] += 1

    def _help(self, row: Row[Any]) -> None:
        address = address_of(self.conn, row, "sms")
        if address:
            self.help_requests.append((row.id, address))

    def _sms_status(self, row: Row[Any]) -> None:
        if str((row.payload or {}).get("ErrorCode", "")) == OPTED_OUT_CODE:
            self._opt_out(row, "sms", f"sms stop (provider {OPTED_OUT_CODE})")

    def _bounce(self, row: Row[Any]) -> None:
        # "blocked" is SendGrid's temporary refusal by the receiving server; only hard bounces suppress.
        if (row.payload or {}).get("type") != "blocked":
            self._suppress_only(row, "email", "bounce")

    def _dropped(self, row: Row[Any]) -> None:
        reason = str((row.payload or {}).get("reason", "")).lower()
        if any(word in reason for word in _SUPPRESSING_DROPS):
            self._suppress_only(row, "email", f"dropped: {reason}"[:200])

    def _engaged(self, lead_id: uuid.UUID, at: datetime) -> None:
        self.report.engaged += self.conn.execute(
            update(LEADS)
            .where(
                LEADS.c.id == lead_id, or_(LEADS.c.last_engaged_at.is_(None), LEADS.c.last_engaged_at < at)
            )
            .values(last_engaged_at=at)
        ).rowcount


def _lead_ids(conn: Connection, row: Row[Any], channel: str, address: str | None) -> set[uuid.UUID]:
    """The event's lead, and every lead with the same address (a number can be shared)."""
    found = {row.lead_id} if row.lead_id is not None else set()
    if address and channel == "sms":
        found.update(leads_with_phone(conn, address))
    elif address:
        canonical = canonical_address("email", address)
        found.update(conn.execute(select(LEADS.c.id).where(LEADS.c.email == canonical)).scalars())
    return found


def _score(
    conn: Connection,
    rows: Sequence[Row[Any]],
    *,
    now: datetime,
    settings: Settings,
    catalog: SequenceCatalog,
    report: EventsReport,
) -> None:
    """Engagement points and the status moves they cause (skipped, with a log line, when the
    scoring package or its rules file is not there)."""
    if not rows:
        return
    try:
        from scoring.engagement import apply_event_scores
        from scoring.routing import route_moves
        from scoring.rules import load_rules, scoring_path
    except ImportError as exc:
        logger.warning("scoring is unavailable (%s): events applied without score changes", exc)
        report.scoring = "unavailable"
        return
    path = scoring_path(settings.sequences_dir)
    if not path.is_file():
        logger.warning("no scoring rules at %s: events applied without score changes", path)
        report.scoring = "no rules"
        return
    rules = _cached_rules(path, path.stat().st_mtime_ns, load_rules)
    moves = apply_event_scores(conn, events=rows, now=now, rules=rules)
    report.status_moves = len(moves)
    if moves:
        routed = route_moves(conn, moves=moves, now=now, rules=rules, catalog=catalog)
        report.hot_tasks.extend(routed.task_ids)
    report.scoring = "applied"


_RULES_CACHE: dict[tuple[Path, int], Any] = {}


def _cached_rules(path: Path, mtime_ns: int, load: Callable[[Path], Any]) -> Any:
    """The scoring rules of ``path`` as last modified (parsing them checks the whole library)."""
    key = (path, mtime_ns)
    if key not in _RULES_CACHE:
        _RULES_CACHE.clear()
        _RULES_CACHE[key] = load(path)
    return _RULES_CACHE[key]


def _answer_help(
    requests: Sequence[tuple[uuid.UUID, str]], sms: AnyChannel, settings: Settings, report: EventsReport
) -> None:
    """Send the help text once per HELP message (a transactional reply: no window, no consent)."""
    messages = [
        SmsMessage(outbox_id=f"help-{event_id.hex}", to=number, body=settings.sms_help_text)
        for event_id, number in requests
    ]
    for outcome in sms.send_many(messages):
        if outcome.ok:
            report.help_sent += 1
        else:
            report.help_failed += 1
            logger.warning("HELP answer %s failed: %s", outcome.outbox_id, outcome.error)
