"""Delivery statuses of sent messages, as provider events report them.

Status callbacks and webhook events arrive late, twice and out of order, so a status only ever
moves forward: ``queued < sent < delivered``, and the final ones (``delivered``, ``undelivered``,
``failed``, ``bounced``, ``dropped``) never give way to an earlier or another final one. The
comparison runs inside the UPDATE, so two processors racing on one row cannot move it back.

Any provider event about a message is also proof that the provider received it: an ``unknown``
outbox row (or one failed for lack of evidence) becomes ``sent``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Connection, and_, case, literal, or_, update

from models.tables import EventType, OutboxState
from spirale.dispatch.writes import OUTBOX

#: Rank of each delivery status; a status replaces the stored one only with a higher rank.
STATUS_RANK: dict[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "processed": 1,
    "deferred": 1,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "canceled": 3,
    "bounced": 3,
    "dropped": 3,
    "read": 4,
}
#: Email webhook events -> the delivery status they report.
EMAIL_STATUS: dict[str, str] = {
    EventType.PROCESSED.value: "processed",
    EventType.DEFERRED.value: "deferred",
    EventType.DELIVERED.value: "delivered",
    EventType.BOUNCE.value: "bounced",
    EventType.DROPPED.value: "dropped",
}
NO_EVIDENCE = "no_evidence"
_RANK = case(STATUS_RANK, value=OUTBOX.c.delivery_status, else_=0)


def advance_status(conn: Connection, *, outbox_id: uuid.UUID, status: str, now: datetime) -> bool:
    """Record ``status`` on the row unless it already holds a later one; returns whether it moved."""
    rank = STATUS_RANK.get(status)
    if rank is None:
        return False
    statement = (
        update(OUTBOX)
        .where(OUTBOX.c.id == outbox_id, or_(OUTBOX.c.delivery_status.is_(None), rank > _RANK))
        .values(delivery_status=status, updated_at=now)
    )
    return conn.execute(statement).rowcount > 0


def confirm_sent(
    conn: Connection,
    *,
    outbox_id: uuid.UUID,
    seen_at: datetime,
    now: datetime,
    provider_message_id: str | None = None,
    evidence: str = "provider event",
) -> bool:
    """Mark an ``unknown`` row (or one failed for lack of evidence) ``sent``: the provider has it.
    Returns whether the row changed. A known provider message id is filled in if missing."""
    unresolved = or_(
        OUTBOX.c.state == OutboxState.UNKNOWN.value,
        and_(OUTBOX.c.state == OutboxState.FAILED.value, OUTBOX.c.error_code == NO_EVIDENCE),
    )
    values: dict[str, object] = {
        "state": OutboxState.SENT.value,
        "sent_at": case(
            (OUTBOX.c.sent_at.is_(None), literal(seen_at, OUTBOX.c.sent_at.type)), else_=OUTBOX.c.sent_at
        ),
        "error_code": "reconciled",
        "error_message": f"reconciled: {evidence}",
        "updated_at": now,
    }
    if provider_message_id:
        values["provider_message_id"] = case(
            (OUTBOX.c.provider_message_id.is_(None), provider_message_id),
            else_=OUTBOX.c.provider_message_id,
        )
    statement = update(OUTBOX).where(OUTBOX.c.id == outbox_id, unresolved).values(values)
    return conn.execute(statement).rowcount > 0
