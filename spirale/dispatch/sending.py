"""Steps 3 and 4 of a batch: commit ``sending`` before any provider call, send through the
channels, record each outcome. Only the channel's own bounded retries happen here; a message
that is still rate-limited is recorded ``failed`` with a ``retry_at`` and retried as a new
attempt by ``recovery.py``; a message with an unknown outcome is never resent from here."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from channels.base import AnyChannel as DeliveryChannel
from channels.base import SendOutcome
from models.bulk import move_state, update_rows
from models.db import write_transaction
from models.suppressions import suppress
from models.tables import OutboxState
from spirale.dispatch.batch import PendingSend
from spirale.dispatch.report import DispatchReport
from spirale.dispatch.writes import OUTBOX
from spirale.errors import ChannelError, PermanentSendError, RetryableSendError, UnknownOutcomeError
from spirale.settings import Settings

RECORDED_COLUMNS = (
    "state",
    "provider_message_id",
    "segments",
    "error_code",
    "error_message",
    "sent_at",
    "retry_at",
)
DEFAULT_RETRY_DELAY = timedelta(minutes=1)
SENDING, SENT = OutboxState.SENDING.value, OutboxState.SENT.value


@dataclass
class SendRecorder:
    """Sends pending messages through their channels and records the outcomes."""

    engine: Engine
    channels: Mapping[str, DeliveryChannel]
    settings: Settings
    rand: Callable[[], float] = random.random  # full jitter of the backoff (injectable for tests)

    def send_and_record(self, sends: Sequence[PendingSend], *, now: datetime, report: DispatchReport) -> None:
        if not sends:
            return
        # Only rows this call moved from pending to sending are sent: a concurrent recoverer that
        # picked the same orphan gets none of them.
        with report.timed("mark"):
            moved = self._mark_sending([s.outbox_id for s in sends], now)
        by_channel: dict[str, list[PendingSend]] = defaultdict(list)
        for send in sends:
            if send.outbox_id in moved:
                by_channel[send.channel].append(send)
        if not by_channel:
            return
        records: list[dict[str, Any]] = []
        to_suppress: list[tuple[str, str, str]] = []
        for channel_kind, group in by_channel.items():
            with report.timed("send"):
                outcomes = self.channels[channel_kind].send_many([s.message for s in group])
            for send, outcome in zip(group, outcomes, strict=True):
                records.append(self._record(send, outcome, now, report, to_suppress))
        with report.timed("record"), write_transaction(self.engine) as conn:
            update_rows(
                conn,
                OUTBOX,
                records,
                set_columns=RECORDED_COLUMNS,
                where={"id": "id", "state": "expected"},
                constants={"updated_at": now},
            )
            for channel, address, reason in to_suppress:
                suppress(conn, channel=channel, address=address, reason=reason, source="provider", now=now)

    def _mark_sending(self, ids: list[uuid.UUID], now: datetime) -> set[uuid.UUID]:
        with write_transaction(self.engine) as conn:
            return move_state(
                conn,
                OUTBOX,
                ids,
                from_state=OutboxState.PENDING.value,
                to_state=OutboxState.SENDING.value,
                now=now,
            )

    def _retry_delay(self, send: PendingSend, error: RetryableSendError) -> timedelta:
        # Full jitter: rows refused together (an outage) come back spread out, not in one wave;
        # never earlier than the provider's own reset.
        backoff = _backoff(send.attempt, self.settings.retry_max_delay_seconds) * self.rand()
        return max(backoff, timedelta(seconds=error.retry_after or 0))

    def _record(
        self,
        send: PendingSend,
        outcome: SendOutcome,
        now: datetime,
        report: DispatchReport,
        to_suppress: list[tuple[str, str, str]],
    ) -> dict[str, Any]:
        result = outcome.result
        if result is not None:
            report.sent[send.channel] += 1
            return {
                "id": send.outbox_id,
                "expected": SENDING,
                "state": SENT,
                "provider_message_id": result.provider_message_id,
                "segments": result.segments or send.segments,
                "error_code": None,
                "error_message": None,
                "sent_at": now,
                "retry_at": None,
            }
        row: dict[str, Any] = {
            "id": send.outbox_id,
            "expected": SENDING,
            "provider_message_id": None,
            "segments": send.segments,
            "sent_at": None,
            "retry_at": None,
        }
        error = outcome.error
        assert error is not None  # a SendOutcome carries exactly one of result / error
        row |= {"error_code": error.provider_code or _status(error), "error_message": str(error)[:500]}
        if isinstance(error, UnknownOutcomeError):
            report.unknown[send.channel] += 1
            row["state"] = OutboxState.UNKNOWN.value
        elif isinstance(error, RetryableSendError):
            report.failed[send.channel] += 1
            row |= {"state": OutboxState.FAILED.value, "retry_at": now + self._retry_delay(send, error)}
        else:
            report.failed[send.channel] += 1
            row["state"] = OutboxState.FAILED.value
            if isinstance(error, PermanentSendError) and error.suppress_address:
                address = getattr(send.message, "to", "")
                to_suppress.append((send.channel, address, f"provider {error.provider_code or 'refusal'}"))
                report.suppressed[send.channel] += 1
        return row


def _backoff(attempt: int, cap_seconds: int) -> timedelta:
    """At most 1 min, 2, 4, 8 ... between attempts of a message the provider never processed."""
    step: timedelta = DEFAULT_RETRY_DELAY * 2 ** min(attempt - 1, 16)
    return min(step, timedelta(seconds=cap_seconds))


def _status(error: ChannelError) -> str | None:
    return str(error.status_code) if error.status_code is not None else type(error).__name__
