"""The dispatch engine.

One batch runs four short transactions, so that no message is ever sent twice and none is lost:

1. **claim**: ``claim_due`` leases up to N due enrollments to this worker (``models/claims.py``).
2. **decide**: checks at send time (exit conditions, suppression, consent, ``if``, window,
   frequency cap, variant), renders, then in ONE transaction inserts the outbox rows as
   ``pending`` (UNIQUE per enrollment/cycle/step/attempt) and advances the enrollments, fenced
   on this worker's lease.
3. **sending**: marks the batch's rows ``sending`` and commits *before* any provider call.
4. **record**: sends through the channels and records ``sent | failed | unknown`` (and suppresses
   addresses the provider reports as opted out).

A crash before 3 leaves ``pending`` rows (never sent: ``recovery.py`` sends them); a crash after 3
leaves ``sending`` rows that become ``unknown`` and are reconciled, never resent blindly.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from channels.base import AnyChannel as DeliveryChannel
from models.claims import ClaimedEnrollment, Shard, claim_due, release
from models.db import read_only_connection, write_transaction
from models.tables import EnrollmentState
from sequences.catalog import SequenceCatalog
from spirale.dispatch.batch import BatchWrites
from spirale.dispatch.decide import StepDecider
from spirale.dispatch.facts import load_facts
from spirale.dispatch.messages import MessageBuilder
from spirale.dispatch.recovery import Recovery
from spirale.dispatch.report import DispatchReport
from spirale.dispatch.sending import SendRecorder
from spirale.dispatch.writes import LeaseLostError, flush_decisions
from spirale.errors import SequenceError
from spirale.settings import Settings


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Dispatcher:
    """Everything a dispatch tick needs; build one per process and call ``dispatch_due(now=...)``."""

    engine: Engine
    catalog: SequenceCatalog
    channels: Mapping[str, DeliveryChannel]
    settings: Settings
    worker_id: str = field(default_factory=default_worker_id)
    shard: Shard | None = None

    def __post_init__(self) -> None:
        self.builder = MessageBuilder(
            renderer=self.catalog.renderer,
            settings=self.settings,
            providers={kind: channel.name for kind, channel in self.channels.items()},
        )
        self.recorder = SendRecorder(engine=self.engine, channels=self.channels, settings=self.settings)
        self.lease = timedelta(seconds=self.settings.claim_lease_seconds)
        self.cap_window = timedelta(hours=self.settings.frequency_cap_hours)
        self.recovery = Recovery(
            catalog=self.catalog,
            builder=self.builder,
            recorder=self.recorder,
            lease=self.lease,
        )

    def dispatch_due(self, *, now: datetime, max_batches: int | None = None) -> DispatchReport:
        """Send every step due at ``now`` (in batches), then return what happened."""
        report = DispatchReport()
        self.recovery.run(now=now, report=report)
        report.merge(self.drain(now=now, max_batches=max_batches))
        return report

    def drain(self, *, now: datetime, max_batches: int | None = None) -> DispatchReport:
        """Claim and process batch after batch until nothing is due (or ``max_batches``)."""
        report = DispatchReport()
        last = 0
        while max_batches is None or report.batches < max_batches:
            with report.timed("claim"):
                claimed = self.claim(now)
            last = len(claimed)
            if not claimed:
                break
            report.claimed += last
            report.batches += 1
            self.process(claimed, now=now, report=report)
        # A short last batch means nothing was left: only a full one at the limit may leave steps due.
        if report.batches == max_batches and last >= self.settings.dispatch_batch_size:
            report.stopped_full = 1
        return report

    def claim(self, now: datetime) -> list[ClaimedEnrollment]:
        """Lease the next batch of due enrollments to this worker (committed)."""
        with write_transaction(self.engine) as conn:
            return claim_due(
                conn,
                now=now,
                worker_id=self.worker_id,
                limit=self.settings.dispatch_batch_size,
                lease=self.lease,
                shard=self.shard,
            )

    def process(self, claimed: Sequence[ClaimedEnrollment], *, now: datetime, report: DispatchReport) -> None:
        """Decide, write, send and record one claimed batch."""
        writes = self.decide(claimed, now=now, report=report)
        try:
            with report.timed("write"), write_transaction(self.engine) as conn:
                flush_decisions(conn, writes)
        except LeaseLostError:
            # Nothing of this batch was written; the rows are (or will be) another worker's.
            report.skipped["lease lost"] += len(claimed)
            self.release([row.id for row in claimed])
            return
        self.recorder.send_and_record(writes.sends, now=now, report=report)

    def decide(
        self, claimed: Sequence[ClaimedEnrollment], *, now: datetime, report: DispatchReport
    ) -> BatchWrites:
        """Run every send-time check on a claimed batch and render its messages (no writes)."""
        writes = BatchWrites(now=now, worker_id=self.worker_id)
        # A read: on SQLite it must not take the write lock other dispatchers are waiting for.
        with report.timed("read"), read_only_connection(self.engine) as conn:
            facts = load_facts(conn, worker_id=self.worker_id, now=now, cap_window=self.cap_window)
        decider = StepDecider(
            facts=facts,
            writes=writes,
            report=report,
            builder=self.builder,
            cap_count=self.settings.frequency_cap_count,
            cap_window=self.cap_window,
        )
        with report.timed("decide"):
            for row in claimed:
                try:
                    sequence = self.catalog.get(row.sequence_name)
                except SequenceError as exc:
                    # Paused, not dropped: the operator fixes the file and resumes the enrollments.
                    report.exited["sequence unavailable"] += 1
                    writes.hold(
                        row,
                        next_due_at=row.next_due_at,
                        state=EnrollmentState.PAUSED,
                        exit_reason=f"sequence unavailable: {exc}"[:500],
                    )
                    continue
                decider.decide(row, sequence)
        return writes

    def release(self, ids: Sequence[uuid.UUID]) -> None:
        with self.engine.begin() as conn:
            release(conn, ids=ids, worker_id=self.worker_id)


def dispatch_due(dispatcher: Dispatcher, *, now: datetime, max_batches: int | None = None) -> DispatchReport:
    """Functional entry point: ``dispatch_due(dispatcher, now=...)``."""
    return dispatcher.dispatch_due(now=now, max_batches=max_batches)
