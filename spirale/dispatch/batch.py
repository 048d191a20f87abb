"""The writes one batch accumulates before its single commit: outbox rows, enrollment advances,
variant assignments and sales tasks. Keeping them as plain dicts lets the engine flush them with a
handful of Core ``executemany`` statements instead of ORM objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.base import EmailMessage, SmsMessage
from models.claims import ClaimedEnrollment
from models.ids import ordered_id
from models.tables import EnrollmentState, OutboxState


@dataclass(slots=True)
class PendingSend:
    """A message decided in this batch: its outbox row id, channel and the message to send."""

    outbox_id: uuid.UUID
    channel: str
    message: EmailMessage | SmsMessage
    lead_id: uuid.UUID
    enrollment_id: uuid.UUID
    segments: int | None = None
    attempt: int = 1


@dataclass
class BatchWrites:
    """Everything a batch will write in its decision transaction."""

    now: datetime
    worker_id: str
    outbox: list[dict[str, Any]] = field(default_factory=list)
    advances: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    sends: list[PendingSend] = field(default_factory=list)

    def advance(
        self,
        enrollment_id: uuid.UUID,
        *,
        step_index: int,
        cycle: int,
        next_due_at: datetime | None,
        last_step_at: datetime | None,
        state: EnrollmentState = EnrollmentState.ACTIVE,
        exit_reason: str | None = None,
    ) -> None:
        self.advances.append(
            {
                "id": enrollment_id,
                "worker": self.worker_id,
                "step_index": step_index,
                "cycle": cycle,
                "state": state.value,
                "next_due_at": next_due_at,
                "last_step_at": last_step_at,
                "exit_reason": exit_reason,
            }
        )

    def hold(
        self,
        row: ClaimedEnrollment,
        *,
        next_due_at: datetime | None,
        state: EnrollmentState = EnrollmentState.ACTIVE,
        exit_reason: str | None = None,
    ) -> None:
        """Keep a claimed enrollment on its current step: due again later, or ended or paused."""
        self.advance(
            row.id,
            step_index=row.step_index,
            cycle=row.cycle,
            next_due_at=next_due_at,
            last_step_at=row.last_step_at,
            state=state,
            exit_reason=exit_reason,
        )

    def outbox_row(self, *, state: OutboxState, **values: Any) -> uuid.UUID:
        row_id = ordered_id()
        self.outbox.append(
            {
                "id": row_id,
                "state": state.value,
                "attempt": values.pop("attempt", 1),
                "created_at": self.now,
                "updated_at": self.now,
                "segments": None,
                "subject": None,
                "variant": None,
                "error_code": None,
                "error_message": None,
                **values,
            }
        )
        return row_id

    def assignment(
        self, *, lead_id: uuid.UUID, enrollment_id: uuid.UUID, sequence: str, step: str, variant: str
    ) -> None:
        self.assignments.append(
            {
                "id": uuid.uuid4(),
                "lead_id": lead_id,
                "enrollment_id": enrollment_id,
                "sequence_name": sequence,
                "step_id": step,
                "variant": variant,
                "assigned_at": self.now,
            }
        )

    def task(self, **values: Any) -> None:
        self.tasks.append(
            {
                "id": uuid.uuid4(),
                "state": "open",
                "created_at": self.now,
                "due_at": self.now,
                "outcome": None,
                **values,
            }
        )
