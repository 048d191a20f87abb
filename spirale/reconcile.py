"""Reconciliation of ``unknown`` outbox rows: messages whose send may or may not have reached the
provider (a timeout, a 5xx, a crash after ``sending`` was committed). They are never resent blindly.

For each row, in order:

1. a provider event about it (SendGrid ``processed`` / ``delivered`` / ... carrying
   ``custom_args.outbox_id``; a Twilio status callback) proves the provider has it: ``sent``;
2. a lookup where one exists: Twilio's message status when the SID is known; the local outbox's
   ``.eml`` file or ``sms.jsonl`` line: found means ``sent``;
3. only where the answer is certain that the provider never saw it (the local outbox wrote no
   file, and its writes are atomic) does the row become ``failed`` with a ``retry_at``, so the
   dispatcher's recovery sends it again as a NEW attempt row (up to ``send_max_attempts``);
4. otherwise the row waits; once the grace period (24 h by default) has passed without evidence it
   becomes ``failed`` with error "no provider evidence" and is NOT retried: for SendGrid and
   Twilio, silence is not proof, and a duplicate is worse than a loss an operator can see. Evidence
   arriving later still turns it into ``sent`` (``spirale.delivery.confirm_sent``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, Table, func, select, update

from channels.base import AnyChannel
from channels.local_outbox import LocalOutboxEmail, LocalOutboxSms
from models.tables import Event, OutboxState
from spirale.delivery import NO_EVIDENCE, advance_status, confirm_sent
from spirale.dispatch.writes import OUTBOX
from spirale.errors import ChannelError
from spirale.settings import Settings

logger = logging.getLogger(__name__)

EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
DEFAULT_GRACE = timedelta(hours=24)
NOT_SENT = "not_sent"
PROVIDERS = ("sendgrid", "twilio")


@dataclass
class ReconcileReport:
    """What one reconciliation pass did."""

    examined: int = 0
    confirmed: Counter[str] = field(default_factory=Counter)  # by kind of evidence
    resent: int = 0  # certainly never sent: failed with retry_at, a new attempt follows
    failed: int = 0  # no evidence after the grace period
    waiting: int = 0
    lookup_errors: int = 0

    def rows(self) -> list[dict[str, str | int]]:
        """One row per outcome, for a table artifact."""
        rows: list[dict[str, str | int]] = [{"outcome": "examined", "key": "", "count": self.examined}]
        rows += [{"outcome": "sent", "key": k, "count": n} for k, n in sorted(self.confirmed.items())]
        for name in ("resent", "failed", "waiting", "lookup_errors"):
            rows.append({"outcome": name, "key": "", "count": int(getattr(self, name))})
        return rows

    def summary(self) -> str:
        return (
            f"examined {self.examined} unknown messages: sent {sum(self.confirmed.values())}, "
            f"resent {self.resent}, failed {self.failed}, waiting {self.waiting}, "
            f"lookup errors {self.lookup_errors}"
        )


def reconcile_unknown(
    engine: Engine,
    *,
    now: datetime,
    settings: Settings,
    channels: Mapping[str, AnyChannel],
    grace: timedelta = DEFAULT_GRACE,
    limit: int = 5000,
) -> ReconcileReport:
    """Resolve up to ``limit`` ``unknown`` outbox rows (see the module docstring)."""
    report = ReconcileReport()
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                select(OUTBOX)
                .where(OUTBOX.c.state == OutboxState.UNKNOWN.value)
                .order_by(OUTBOX.c.updated_at)
            ).fetchmany(limit)
        )
        seen = _provider_events(conn, [row.id for row in rows])
    report.examined = len(rows)
    lookups = _Lookups(channels)
    for row in rows:
        with engine.begin() as conn:
            _resolve(conn, row, seen.get(row.id), lookups, now=now, grace=grace, report=report)
    if report.examined:
        logger.info("reconcile: %s", report.summary())
    return report


def _provider_events(conn: Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """The first provider event about each of these outbox rows."""
    found: dict[uuid.UUID, datetime] = {}
    for start in range(0, len(ids), 1000):
        query = (
            select(EVENTS.c.outbox_id, func.min(EVENTS.c.occurred_at))
            .where(EVENTS.c.outbox_id.in_(ids[start : start + 1000]), EVENTS.c.provider.in_(PROVIDERS))
            .group_by(EVENTS.c.outbox_id)
        )
        found.update({outbox_id: at for outbox_id, at in conn.execute(query)})
    return found


def _resolve(
    conn: Connection,
    row: Row[Any],
    event_at: datetime | None,
    lookups: _Lookups,
    *,
    now: datetime,
    grace: timedelta,
    report: ReconcileReport,
) -> None:
    if event_at is not None:
        if confirm_sent(conn, outbox_id=row.id, seen_at=event_at, now=now, evidence="provider event"):
            report.confirmed["event"] += 1
        return
    verdict = lookups.check(row, report)
    if verdict is not None and verdict.seen:
        if confirm_sent(conn, outbox_id=row.id, seen_at=row.updated_at, now=now, evidence=verdict.evidence):
            report.confirmed[verdict.kind] += 1
            if verdict.status:
                advance_status(conn, outbox_id=row.id, status=verdict.status, now=now)
        return
    if verdict is not None:
        _mark_failed(conn, row.id, now, NOT_SENT, verdict.evidence, retry_at=now)
        report.resent += 1
    elif row.updated_at <= now - grace:
        _mark_failed(conn, row.id, now, NO_EVIDENCE, "no provider evidence", retry_at=None)
        report.failed += 1
    else:
        report.waiting += 1


def _mark_failed(
    conn: Connection,
    outbox_id: uuid.UUID,
    now: datetime,
    code: str,
    message: str,
    *,
    retry_at: datetime | None,
) -> None:
    conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == outbox_id, OUTBOX.c.state == OutboxState.UNKNOWN.value)
        .values(
            state=OutboxState.FAILED.value,
            error_code=code,
            error_message=message[:500],
            retry_at=retry_at,
            updated_at=now,
        )
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A lookup's answer: ``seen`` by the provider (with its delivery ``status``), or certainly not."""

    seen: bool
    kind: str
    evidence: str
    status: str | None = None


class _Lookups:
    """Asks the channels that can answer whether they have a message."""

    def __init__(self, channels: Mapping[str, AnyChannel]) -> None:
        self.channels = channels
        self._sms_ids: set[str] | None = None

    def check(self, row: Row[Any], report: ReconcileReport) -> Verdict | None:
        """A verdict, or ``None`` when no lookup can tell."""
        channel = self.channels.get(row.channel)
        if channel is None or channel.name != row.provider:
            return None
        outbox_id = str(row.id)
        if isinstance(channel, LocalOutboxEmail):
            found = (channel.email_dir / f"{outbox_id}.eml").is_file()
            return _local_verdict(found, "the .eml file")
        if isinstance(channel, LocalOutboxSms):
            return _local_verdict(outbox_id in self._local_sms(channel), "the sms.jsonl line")
        if row.provider == "twilio" and row.provider_message_id:
            return self._twilio(channel, row.provider_message_id, report)
        return None

    def _local_sms(self, channel: LocalOutboxSms) -> set[str]:
        if self._sms_ids is None:
            self._sms_ids = _jsonl_outbox_ids(channel)
        return self._sms_ids

    @staticmethod
    def _twilio(channel: AnyChannel, sid: str, report: ReconcileReport) -> Verdict | None:
        lookup = getattr(channel, "message_status", None)
        if lookup is None:
            return None
        try:
            status = str(lookup(sid))
        except ChannelError as exc:
            report.lookup_errors += 1
            logger.warning("reconcile: Twilio lookup of %s failed: %s", sid, exc)
            return None
        return Verdict(True, "lookup", f"Twilio reports {status}", status=status)


def _local_verdict(found: bool, what: str) -> Verdict:
    if found:
        return Verdict(True, "local outbox", f"{what} exists")
    return Verdict(False, "local outbox", f"the local outbox never wrote {what}: sent again as a new attempt")


def _jsonl_outbox_ids(channel: LocalOutboxSms) -> set[str]:
    """The outbox ids of every whole line of ``sms.jsonl`` (a torn last line is not a send)."""
    if not channel.path.is_file():
        return set()
    found: set[str] = set()
    with open(channel.path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("outbox_id"), str):
                found.add(record["outbox_id"])
    return found
