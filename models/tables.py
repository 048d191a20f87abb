"""The database tables (SQLModel). UUID keys, timezone-aware UTC datetimes, enums stored as text.

``XBase`` holds the fields a caller may supply; ``X(table=True)`` adds keys and bookkeeping. The
dispatch hot loop does not use these classes row by row: it runs Core statements on ``X.__table__``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime


def _utc(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


def _enum(default: StrEnum) -> Any:
    # Stored as the plain value ('active'), not SQLAlchemy's default of the member name ('ACTIVE'),
    # so Core statements and partial indexes can use the values marketers see.
    return Field(default=default, sa_type=String(16))


class LeadStatus(StrEnum):
    """Where a lead stands: the brief's hot / warm / cold routing, plus customers and rejects."""

    HOT = "hot"
    WARM = "warm"
    COLD = "cold"
    CUSTOMER = "customer"
    FORMER_CUSTOMER = "former_customer"
    DISQUALIFIED = "disqualified"


class EnrollmentState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    EXITED = "exited"


#: An enrollment in these states is live: at most one per lead and sequence (``ux_enrollments_live``).
LIVE_ENROLLMENT_STATES = (EnrollmentState.ACTIVE.value, EnrollmentState.PAUSED.value)


class OutboxState(StrEnum):
    """``pending -> sending -> sent | failed | unknown | suppressed``. ``sending`` is committed
    before the provider call; ``unknown`` is reconciled, never resent blindly."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SUPPRESSED = "suppressed"


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class LeadBase(SQLModel):
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=20)  # E.164
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    job_title: str = ""
    country: str = Field(default="FR", max_length=2)
    timezone: str | None = None
    consent_email: bool = False
    consent_email_source: str | None = None
    consent_email_at: datetime | None = _utc(default=None)
    consent_sms: bool = False
    consent_sms_source: str | None = None
    consent_sms_at: datetime | None = _utc(default=None)
    status: LeadStatus = _enum(LeadStatus.COLD)
    customer_class: str | None = Field(default=None, max_length=1)
    owner: str | None = None
    source: str | None = None


class Lead(LeadBase, table=True):
    """A contact: prospect, suspect or customer."""

    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_email", "email", unique=True),
        Index("ix_leads_phone", "phone"),
        Index("ix_leads_status", "status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _utc()
    updated_at: datetime = _utc()
    last_engaged_at: datetime | None = _utc(default=None)  # last contact initiated by the lead (CNIL)
    last_contacted_at: datetime | None = _utc(default=None)
    # Scoring: fit (who the lead is) and engagement (what it does, decaying since engagement_at).
    fit_score: float = 0.0
    engagement_score: float = 0.0
    engagement_at: datetime | None = _utc(default=None)
    disqualified_reason: str | None = None
    last_purchase_at: datetime | None = _utc(default=None)  # customers: reactivation after inactivity


class Enrollment(SQLModel, table=True):
    """One lead going through one sequence. ``step_index`` is the next step to run."""

    __tablename__ = "enrollments"
    __table_args__ = (
        Index("ix_enrollments_due", "state", "next_due_at"),
        Index("ix_enrollments_lead", "lead_id"),
        # One live enrollment per lead and sequence: re-enrolling is idempotent.
        Index(
            "ux_enrollments_live",
            "lead_id",
            "sequence_name",
            unique=True,
            sqlite_where=text("state IN ('active', 'paused')"),
            postgresql_where=text("state IN ('active', 'paused')"),
        ),
        # A dispatcher reads its claimed batch's leads, sends and assignments by its worker id.
        Index(
            "ix_enrollments_claimed",
            "claimed_by",
            sqlite_where=text("claimed_by IS NOT NULL"),
            postgresql_where=text("claimed_by IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lead_id: uuid.UUID = Field(foreign_key="leads.id")
    sequence_name: str
    sequence_version: str
    step_index: int = 0
    cycle: int = 0
    state: EnrollmentState = _enum(EnrollmentState.ACTIVE)
    next_due_at: datetime | None = _utc(default=None)
    last_step_at: datetime | None = _utc(default=None)
    exit_reason: str | None = None
    enrolled_at: datetime = _utc()
    updated_at: datetime = _utc()
    claimed_by: str | None = None
    lease_until: datetime | None = _utc(default=None)


class VariantAssignment(SQLModel, table=True):
    """The sticky A/B arm (or ``holdout``) a lead got for one step of one sequence."""

    __tablename__ = "variant_assignments"
    __table_args__ = (UniqueConstraint("lead_id", "sequence_name", "step_id", name="ux_assignment"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lead_id: uuid.UUID = Field(foreign_key="leads.id")
    enrollment_id: uuid.UUID = Field(foreign_key="enrollments.id")
    sequence_name: str
    step_id: str
    variant: str
    assigned_at: datetime = _utc()


class OutboxMessage(SQLModel, table=True):
    """One send attempt of one step of one enrollment: the exactly-once ledger."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "cycle", "step_id", "attempt", name="ux_outbox_attempt"),
        Index("ix_outbox_lead_created", "lead_id", "created_at"),
        Index("ix_outbox_state", "state"),
        Index("ix_outbox_provider_id", "provider_message_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    enrollment_id: uuid.UUID = Field(foreign_key="enrollments.id")
    lead_id: uuid.UUID = Field(foreign_key="leads.id")
    sequence_name: str
    step_id: str
    cycle: int = 0
    attempt: int = 1
    channel: str
    provider: str
    to_address: str
    variant: str | None = None
    transactional: bool = False
    state: OutboxState = _enum(OutboxState.PENDING)
    subject: str | None = None
    segments: int | None = None
    provider_message_id: str | None = None
    delivery_status: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    created_at: datetime = _utc()
    updated_at: datetime = _utc()
    sent_at: datetime | None = _utc(default=None)
    retry_at: datetime | None = _utc(default=None)  # a retryable failure (never processed) is retried then


class EventType(StrEnum):
    """Normalized event types; the raw provider payload is kept beside each event."""

    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCE = "bounce"
    DROPPED = "dropped"
    OPEN = "open"
    CLICK = "click"
    SPAM_REPORT = "spam_report"
    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"
    REPLY = "reply"
    MEETING_BOOKED = "meeting_booked"
    CONVERTED = "converted"
    FORM_SUBMITTED = "form_submitted"
    SMS_STATUS = "sms_status"
    SMS_STOP = "sms_stop"
    SMS_START = "sms_start"
    SMS_HELP = "sms_help"
    SMS_REPLY = "sms_reply"


class Event(SQLModel, table=True):
    """A normalized event (delivery, open, click, reply, STOP ...) with the raw provider payload."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_lead", "lead_id", "occurred_at"),
        Index("ix_events_unprocessed", "processed_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    type: str
    lead_id: uuid.UUID | None = Field(default=None, foreign_key="leads.id")
    outbox_id: uuid.UUID | None = Field(default=None, foreign_key="outbox.id")
    provider: str | None = None
    dedup_key: str = Field(unique=True)
    occurred_at: datetime = _utc()
    received_at: datetime = _utc()
    processed_at: datetime | None = _utc(default=None)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Suppression(SQLModel, table=True):
    """An address that must never be contacted on a channel. Only the hash is required, so an
    erased lead stays blocked on re-import (GDPR)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address_hash", name="ux_suppression"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    channel: str  # email | sms
    address_hash: str = Field(max_length=64)
    address: str | None = None
    reason: str
    source: str | None = None
    created_at: datetime = _utc()


class SalesTask(SQLModel, table=True):
    """A manual step for a salesperson: a call, a LinkedIn InMail, a follow-up."""

    __tablename__ = "sales_tasks"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "cycle", "step_id", name="ux_task_step"),
        Index("ix_tasks_owner_state", "owner", "state", "due_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lead_id: uuid.UUID = Field(foreign_key="leads.id")
    enrollment_id: uuid.UUID | None = Field(default=None, foreign_key="enrollments.id")
    sequence_name: str | None = None
    step_id: str | None = None
    cycle: int = 0
    kind: str  # call | linkedin | task | notify
    owner: str | None = None
    note: str = ""
    state: TaskState = _enum(TaskState.OPEN)
    outcome: str | None = None
    due_at: datetime = _utc()
    created_at: datetime = _utc()
    done_at: datetime | None = _utc(default=None)


class FormSubmission(SQLModel, table=True):
    """A web-form download, stored durably before anything else happens (idempotent on its key)."""

    __tablename__ = "form_submissions"
    __table_args__ = (Index("ix_submissions_pending", "status", "received_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    form_id: str
    submission_key: str = Field(unique=True, max_length=128)
    email: str = Field(max_length=320)
    lead_id: uuid.UUID  # answered at once; the intake creates or reuses the lead under this id
    status: str = Field(default="received", sa_type=String(16))  # received | processed | rejected
    error: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = _utc()
    processed_at: datetime | None = _utc(default=None)


class ScoreEntry(SQLModel, table=True):
    """One line of a lead's score ledger, so every score is explainable."""

    __tablename__ = "score_ledger"
    __table_args__ = (Index("ix_score_ledger_lead", "lead_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lead_id: uuid.UUID = Field(foreign_key="leads.id")
    kind: str = Field(sa_type=String(16))  # fit | engagement | decay | qualification
    rule: str
    points: float
    event_id: uuid.UUID | None = Field(default=None, foreign_key="events.id")
    detail: str = ""
    created_at: datetime = _utc()


class Promotion(SQLModel, table=True):
    """An A/B decision: future assignments of a step go to ``variant`` (who, when, why)."""

    __tablename__ = "experiment_promotions"
    __table_args__ = (Index("ix_promotions_step", "sequence_name", "step_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    sequence_name: str
    step_id: str
    variant: str
    keep_holdout: bool = True
    actor: str
    reason: str = ""
    created_at: datetime = _utc()


# Lookups the API and reconciliation make on every request or pass: a form submission's waiting
# siblings by email, and the provider events of an outbox message.
Index(
    "ix_submissions_email",
    FormSubmission.__table__.c.email,  # type: ignore[attr-defined]
    FormSubmission.__table__.c.status,  # type: ignore[attr-defined]
)
Index("ix_events_outbox", Event.__table__.c.outbox_id)  # type: ignore[attr-defined]
