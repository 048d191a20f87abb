"""After a crash or a provider hiccup: what was left half-way is finished, never duplicated.

- ``pending`` rows older than the lease never reached a provider (``sending`` is committed first):
  they are rebuilt and sent.
- ``sending`` rows older than the lease may have reached the provider: they become ``unknown``
  and wait for reconciliation (provider events or a message lookup), never a blind resend.
- ``failed`` rows with a ``retry_at`` were refused as "not processed" (rate limit, connection
  refused, an open circuit): once due, a new attempt row is created and sent. There is no last
  attempt: the provider never saw these messages, so retrying cannot duplicate them, and the
  backoff between attempts (``sending.py``) grows to ``retry_max_delay_seconds``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select, update

from models.ids import ordered_id
from models.suppressions import address_hash, suppressed_hashes
from models.tables import EnrollmentState, OutboxState
from sequences.catalog import SequenceCatalog
from spirale.dispatch.batch import PendingSend
from spirale.dispatch.facts import lead_rows
from spirale.dispatch.messages import MessageBuilder
from spirale.dispatch.report import DispatchReport
from spirale.dispatch.sending import SendRecorder
from spirale.dispatch.writes import ENROLLMENTS, OUTBOX
from spirale.errors import RenderError, SequenceError

RESEND_COLUMNS = (
    OUTBOX.c.id,
    OUTBOX.c.enrollment_id,
    OUTBOX.c.lead_id,
    OUTBOX.c.sequence_name,
    OUTBOX.c.step_id,
    OUTBOX.c.cycle,
    OUTBOX.c.attempt,
    OUTBOX.c.channel,
    OUTBOX.c.to_address,
    OUTBOX.c.variant,
    OUTBOX.c.transactional,
    OUTBOX.c.provider,
)


@dataclass
class Recovery:
    """Finishes work that a crashed or rate-limited dispatcher left behind."""

    catalog: SequenceCatalog
    builder: MessageBuilder
    recorder: SendRecorder
    lease: timedelta

    def run(self, *, now: datetime, report: DispatchReport) -> None:
        engine = self.recorder.engine
        with engine.begin() as conn:
            self._stale_sending_to_unknown(conn, now, report)
            orphans = self._take_orphans(conn, now)
            retries = self._new_attempts(conn, now)
        report.recovered += len(orphans)
        report.retried += len(retries)
        rows = orphans + retries
        if rows:
            with engine.connect() as conn:
                leads = lead_rows(conn, {row["lead_id"] for row in rows})
                blocked = self._suppressed_rows(conn, rows)
                ended = self._ended_rows(conn, rows)
            for row in rows:
                if row["id"] in blocked:
                    self._close(
                        row["id"], now, OutboxState.SUPPRESSED, "suppressed", "suppressed while waiting"
                    )
                    report.suppressed[row["channel"]] += 1
                elif row["id"] in ended:
                    self._close(
                        row["id"], now, OutboxState.FAILED, "exited", "the enrollment ended while waiting"
                    )
                    report.skipped["exited while waiting"] += 1
            waiting = [row for row in rows if row["id"] not in blocked | ended]
            sends = [s for s in (self._rebuild(row, leads, now, report) for row in waiting) if s is not None]
            self.recorder.send_and_record(sends, now=now, report=report)

    @staticmethod
    def _ended_rows(conn: Connection, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """Rows of enrollments that exited (a reply, a meeting, an opt-out) while they waited."""
        enrollment_ids = list({row["enrollment_id"] for row in rows})
        query = select(ENROLLMENTS.c.id).where(
            ENROLLMENTS.c.id.in_(enrollment_ids), ENROLLMENTS.c.state == EnrollmentState.EXITED.value
        )
        exited = set(conn.execute(query).scalars())
        return {row["id"] for row in rows if row["enrollment_id"] in exited}

    @staticmethod
    def _suppressed_rows(conn: Connection, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """Rows whose address was suppressed while they waited: checked again at send time.
        Several rows may wait for one address (an orphan and a retry, two steps of one lead):
        every one of them is blocked."""
        blocked: set[uuid.UUID] = set()
        for channel in {row["channel"] for row in rows}:
            waiting: dict[str, list[uuid.UUID]] = defaultdict(list)
            for row in rows:
                if row["channel"] == channel:
                    waiting[address_hash(channel, row["to_address"])].append(row["id"])
            for found in suppressed_hashes(conn, channel=channel, hashes=set(waiting)):
                blocked.update(waiting[found])
        return blocked

    def _stale_sending_to_unknown(self, conn: Connection, now: datetime, report: DispatchReport) -> None:
        result = conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.state == OutboxState.SENDING.value, OUTBOX.c.updated_at < now - self.lease)
            .values(
                state=OutboxState.UNKNOWN.value,
                error_code="interrupted",
                error_message="the dispatcher stopped after committing 'sending': reconcile, never resend",
                updated_at=now,
            )
            .returning(OUTBOX.c.channel)
        )
        for (channel,) in result:
            report.unknown[channel] += 1

    def _take_orphans(self, conn: Connection, now: datetime) -> list[dict[str, Any]]:
        # Refreshing updated_at is the claim: a concurrent recoverer's WHERE no longer matches.
        result = conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.state == OutboxState.PENDING.value, OUTBOX.c.updated_at < now - self.lease)
            .values(updated_at=now)
            .returning(*RESEND_COLUMNS)
        )
        return [dict(row) for row in result.mappings()]

    def _new_attempts(self, conn: Connection, now: datetime) -> list[dict[str, Any]]:
        due = conn.execute(
            update(OUTBOX)
            .where(
                and_(
                    OUTBOX.c.state == OutboxState.FAILED.value,
                    OUTBOX.c.retry_at.is_not(None),
                    OUTBOX.c.retry_at <= now,
                )
            )
            .values(retry_at=None, updated_at=now)
            .returning(*RESEND_COLUMNS)
        )
        fresh = [dict(row) | {"id": ordered_id(), "attempt": row["attempt"] + 1} for row in due.mappings()]
        if fresh:
            conn.execute(
                OUTBOX.insert(),
                [
                    {k: v for k, v in row.items()}
                    | {"state": OutboxState.PENDING.value, "created_at": now, "updated_at": now}
                    for row in fresh
                ],
            )
        return fresh

    def _rebuild(
        self,
        row: Mapping[str, Any],
        leads: Mapping[uuid.UUID, Mapping[str, Any]],
        now: datetime,
        report: DispatchReport,
    ) -> PendingSend | None:
        lead = leads.get(row["lead_id"])
        try:
            sequence = self.catalog.get(row["sequence_name"])
            step = sequence.steps[sequence.step_index(row["step_id"])]
            if lead is None:
                raise SequenceError("lead erased")
            message, _, _ = self.builder.build(
                row["id"], sequence, step, row["variant"], lead, row["to_address"]
            )
        except (SequenceError, RenderError, StopIteration) as exc:
            self._close(row["id"], now, OutboxState.FAILED, "rebuild", str(exc))
            report.failed[row["channel"]] += 1
            return None
        return PendingSend(
            outbox_id=row["id"],
            channel=row["channel"],
            message=message,
            lead_id=row["lead_id"],
            enrollment_id=row["enrollment_id"],
            attempt=row["attempt"],
        )

    def _close(self, outbox_id: uuid.UUID, now: datetime, state: OutboxState, code: str, reason: str) -> None:
        """End a pending row without sending it (suppressed meanwhile, or impossible to rebuild)."""
        with self.recorder.engine.begin() as conn:
            conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == outbox_id, OUTBOX.c.state == OutboxState.PENDING.value)
                .values(state=state.value, error_code=code, error_message=reason[:500], updated_at=now)
            )
