"""What each arm of an A/B experiment got: recipients, sends, deliveries, opens, clicks, replies,
meetings and conversions, read from ``variant_assignments``, ``outbox`` and ``events``.

An experiment is one step of one sequence that has variants (``reactivation-offer/offer``). Its
later steps with the same arm ids (the reminders) belong to it: the dispatcher gives each lead one
arm for all of them (``sequences.variants.experiment_step``), so their sends, opens and clicks count
for the arm too.

Every count is of distinct leads, so a rate is a share of the arm's recipients (intent to treat:
a lead assigned to a variant counts even if its message failed, exactly as a holdout lead counts
without receiving anything). Replies, meetings and conversions count inside the attribution window:
``window`` (30 days by default) after the lead's first send, or after its assignment for the
holdout, which is sent nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, select

from models.tables import Event, EventType, OutboxMessage, OutboxState, VariantAssignment
from sequences.catalog import SequenceCatalog
from sequences.schema import Sequence
from sequences.variants import HOLDOUT, experiment_step
from spirale.errors import SequenceError

ASSIGNMENTS: Table = VariantAssignment.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]

DEFAULT_WINDOW = timedelta(days=30)
#: The counts a review can be run on, in funnel order.
METRICS = ("sent", "delivered", "opens", "clicks", "replies", "meetings", "conversions")
MESSAGE_EVENTS = {
    EventType.DELIVERED.value: "delivered",
    EventType.OPEN.value: "opens",
    EventType.CLICK.value: "clicks",
}
LEAD_EVENTS = {
    EventType.REPLY.value: "replies",
    EventType.SMS_REPLY.value: "replies",
    EventType.MEETING_BOOKED.value: "meetings",
    EventType.CONVERTED.value: "conversions",
}


@dataclass(frozen=True)
class Experiment:
    """One A/B test: a sequence, the step that names the experiment, its arms and member steps."""

    sequence: str
    step: str
    arms: tuple[str, ...]
    steps: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.sequence}/{self.step}"

    @property
    def key(self) -> str:
        """A slug for artifact keys: ``ab-reactivation-offer-offer``."""
        return f"ab-{self.sequence}-{self.step}".lower().replace("_", "-")


def experiments_in(sequence: Sequence) -> list[Experiment]:
    """The experiments of a sequence: one per distinct set of arms, named by its first step."""
    found: dict[str, list[str]] = {}
    for step in sequence.steps:
        if step.variants:
            found.setdefault(experiment_step(sequence, step), []).append(step.id)
    experiments = []
    for step_id, members in found.items():
        step = sequence.steps[sequence.step_index(step_id)]
        arms = tuple(v.id for v in step.variants) + ((HOLDOUT,) if step.holdout else ())
        experiments.append(Experiment(sequence.name, step_id, arms, tuple(members)))
    return experiments


def resolve_experiment(text: str, catalog: SequenceCatalog) -> Experiment:
    """``sequence/step``, or ``sequence`` alone when it runs one experiment (raises SequenceError)."""
    name, _, step_id = text.partition("/")
    experiments = experiments_in(catalog.get(name))
    if not experiments:
        raise SequenceError(f"sequence {name!r} has no step with variants: there is nothing to review")
    if not step_id:
        if len(experiments) > 1:
            choices = ", ".join(e.name for e in experiments)
            raise SequenceError(f"sequence {name!r} runs several experiments: name one of {choices}")
        return experiments[0]
    for experiment in experiments:
        if step_id == experiment.step or step_id in experiment.steps:
            return experiment
    raise SequenceError(
        f"step {step_id!r} of {name!r} is not an experiment: expected one of "
        + ", ".join(e.step for e in experiments)
    )


@dataclass
class ArmOutcome:
    """The funnel of one arm: distinct leads at each stage, conversion value, windows still open."""

    arm: str
    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    replies: int = 0
    meetings: int = 0
    conversions: int = 0
    revenue: float = 0.0
    open_windows: int = 0

    def count(self, metric: str) -> int:
        """The number of leads that reached ``metric`` (one of ``METRICS``)."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(METRICS)}")
        value: int = getattr(self, metric)
        return value

    def as_row(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass
class _Lead:
    arm: str
    assigned_at: datetime
    first_send: datetime | None = None
    reached: set[str] = field(default_factory=set)
    revenue: float = 0.0


def measure(
    conn: Connection, *, experiment: Experiment, now: datetime, window: timedelta = DEFAULT_WINDOW
) -> list[ArmOutcome]:
    """Each arm's funnel at ``now`` (arms of the sequence file first, then any other stored arm)."""
    leads = _assigned(conn, experiment)
    outbox_leads = _sends(conn, experiment, leads)
    _message_events(conn, experiment, outbox_leads, leads)
    _lead_events(conn, experiment, leads, window)
    outcomes = {arm: ArmOutcome(arm) for arm in experiment.arms}
    for lead in leads.values():
        outcome = outcomes.setdefault(lead.arm, ArmOutcome(lead.arm))
        outcome.recipients += 1
        for metric in lead.reached:
            setattr(outcome, metric, getattr(outcome, metric) + 1)
        outcome.revenue += lead.revenue
        if _window_start(lead) + window > now:
            outcome.open_windows += 1
    return list(outcomes.values())


def _window_start(lead: _Lead) -> datetime:
    return lead.first_send or lead.assigned_at


def _in_experiment(experiment: Experiment) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return ASSIGNMENTS.c.sequence_name == experiment.sequence, ASSIGNMENTS.c.step_id.in_(experiment.steps)


def _assigned(conn: Connection, experiment: Experiment) -> dict[uuid.UUID, _Lead]:
    """Each lead's arm: normally drawn at the experiment step; a lead that skipped it (no consent
    yet) was drawn at its first member step it reached, on the same key, so the arm is the same."""
    query = (
        select(ASSIGNMENTS.c.lead_id, ASSIGNMENTS.c.variant, ASSIGNMENTS.c.assigned_at)
        .where(*_in_experiment(experiment))
        .order_by(ASSIGNMENTS.c.assigned_at.desc())
    )
    return {lead_id: _Lead(variant, at) for lead_id, variant, at in conn.execute(query)}


def _sends(
    conn: Connection, experiment: Experiment, leads: Mapping[uuid.UUID, _Lead]
) -> dict[uuid.UUID, uuid.UUID]:
    """Marks sent leads and their first send; returns outbox id -> lead id."""
    query = select(OUTBOX.c.id, OUTBOX.c.lead_id, OUTBOX.c.state, OUTBOX.c.sent_at).where(
        OUTBOX.c.sequence_name == experiment.sequence, OUTBOX.c.step_id.in_(experiment.steps)
    )
    owners: dict[uuid.UUID, uuid.UUID] = {}
    for outbox_id, lead_id, state, sent_at in conn.execute(query):
        lead = leads.get(lead_id)
        if lead is None:
            continue
        owners[outbox_id] = lead_id
        if state == OutboxState.SENT.value and sent_at is not None:
            lead.reached.add("sent")
            if lead.first_send is None or sent_at < lead.first_send:
                lead.first_send = sent_at
    return owners


def _message_events(
    conn: Connection,
    experiment: Experiment,
    owners: Mapping[uuid.UUID, uuid.UUID],
    leads: Mapping[uuid.UUID, _Lead],
) -> None:
    query = (
        select(EVENTS.c.outbox_id, EVENTS.c.type)
        .join(OUTBOX, OUTBOX.c.id == EVENTS.c.outbox_id)
        .where(
            OUTBOX.c.sequence_name == experiment.sequence,
            OUTBOX.c.step_id.in_(experiment.steps),
            EVENTS.c.type.in_(list(MESSAGE_EVENTS)),
        )
    )
    for outbox_id, event_type in conn.execute(query):
        lead_id = owners.get(outbox_id)
        if lead_id is not None:
            leads[lead_id].reached.add(MESSAGE_EVENTS[event_type])


def _lead_events(
    conn: Connection, experiment: Experiment, leads: Mapping[uuid.UUID, _Lead], window: timedelta
) -> None:
    members = select(ASSIGNMENTS.c.lead_id).where(*_in_experiment(experiment)).distinct().subquery()
    query = (
        select(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.occurred_at, EVENTS.c.payload)
        .join(members, members.c.lead_id == EVENTS.c.lead_id)
        .where(EVENTS.c.type.in_(list(LEAD_EVENTS)))
    )
    for lead_id, event_type, occurred_at, payload in conn.execute(query):
        lead = leads.get(lead_id)
        if lead is None:
            continue
        start = _window_start(lead)
        if not start <= occurred_at <= start + window:
            continue
        metric = LEAD_EVENTS[event_type]
        lead.reached.add(metric)
        if metric == "conversions":
            lead.revenue += _value(payload)


def _value(payload: Mapping[str, Any] | None) -> float:
    value = (payload or {}).get("value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
