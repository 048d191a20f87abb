"""What to do with one due enrollment, checked at send time: exit, skip, defer, hold out, create a
sales task, suppress, or send. Pure decisions over data the engine loaded for the whole batch; the
results go into ``BatchWrites`` and the report, never straight to the database."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from models.claims import ClaimedEnrollment
from models.suppressions import address_hash
from models.tables import EnrollmentState, EventType, OutboxState
from scoring.promotion import PromotionRecord, effective_step
from sequences.planner import DuePlanner, cycle_due, lead_zone
from sequences.schema import Channel, ExitCondition, Sequence, Step
from sequences.variants import HOLDOUT, assign_variant, experiment_step
from sequences.windows import next_allowed
from spirale.dispatch.batch import BatchWrites
from spirale.dispatch.messages import MessageBuilder
from spirale.dispatch.report import DispatchReport
from spirale.errors import RenderError

#: Lead statuses that can end an enrollment (``exit_when: [hot]`` ...).
STATUS_EXITS = {
    ExitCondition.HOT: "hot",
    ExitCondition.WARM: "warm",
    ExitCondition.COLD: "cold",
    ExitCondition.CUSTOMER: "customer",
    ExitCondition.DISQUALIFIED: "disqualified",
}
#: Events that end an enrollment when its sequence lists the condition.
EVENT_EXITS: dict[ExitCondition, frozenset[str]] = {
    ExitCondition.REPLIED: frozenset({EventType.REPLY, EventType.SMS_REPLY}),
    ExitCondition.MEETING_BOOKED: frozenset({EventType.MEETING_BOOKED}),
    ExitCondition.CONVERTED: frozenset({EventType.CONVERTED}),
    ExitCondition.UNSUBSCRIBED: frozenset({EventType.UNSUBSCRIBE, EventType.SMS_STOP, EventType.SPAM_REPORT}),
    ExitCondition.CLICKED: frozenset({EventType.CLICK}),
    ExitCondition.BOUNCED: frozenset({EventType.BOUNCE}),
}
EXIT_EVENT_TYPES = frozenset().union(*EVENT_EXITS.values())


@dataclass
class BatchFacts:
    """What the engine loaded for a batch, in one query each."""

    leads: Mapping[uuid.UUID, Mapping[str, Any]]
    suppressed: Mapping[str, set[str]]  # channel -> address hashes
    recent_sends: dict[uuid.UUID, list[datetime]]  # marketing sends inside the frequency-cap window
    assignments: Mapping[tuple[uuid.UUID, str, str], str]  # (lead, sequence, step) -> variant
    exit_events: Mapping[uuid.UUID, list[tuple[str, datetime]]]  # lead -> [(type, occurred_at)]
    promotions: Mapping[tuple[str, str], PromotionRecord] = field(default_factory=dict)  # A/B winners


@dataclass
class StepDecider:
    """Decides each claimed enrollment of one batch."""

    facts: BatchFacts
    writes: BatchWrites
    report: DispatchReport
    builder: MessageBuilder
    cap_count: int
    cap_window: timedelta
    _now: datetime = field(init=False)
    _zones: dict[tuple[str, str, str], tuple[ZoneInfo, str]] = field(default_factory=dict)
    _planner: DuePlanner = field(default_factory=DuePlanner)

    def __post_init__(self) -> None:
        self._now = self.writes.now

    def _zone(self, sequence: Sequence, lead: Mapping[str, Any]) -> tuple[ZoneInfo, str]:
        """The lead's time zone and country, falling back to the sequence's (cached per batch)."""
        key = (lead["timezone"] or "", lead["country"] or "", sequence.name)
        zone = self._zones.get(key)
        if zone is None:
            zone = self._zones[key] = lead_zone(sequence, lead["context"])
        return zone

    def decide(self, row: ClaimedEnrollment, sequence: Sequence) -> None:
        lead = self.facts.leads.get(row.lead_id)
        if lead is None:
            self._exit(row, "lead erased")
            return
        if row.step_index >= len(sequence.steps):
            self._finish(row, sequence, lead)
            return
        reason = self._exit_reason(row, sequence, lead)
        if reason:
            self._exit(row, reason)
            return
        step = sequence.steps[row.step_index]
        if step.if_ and not self.builder.renderer.evaluate_condition(step.if_, lead["context"]):
            self.report.skipped["condition"] += 1
            self._advance(row, sequence, lead, previous_at=row.next_due_at, sent=False)
            return
        if not self._in_window(row, sequence, step, lead):
            return
        if step.channel.is_manual:
            self._task(row, sequence, step, lead)
        else:
            self._message(row, sequence, step, lead)

    # -- exits and completion -------------------------------------------------------------
    def _exit_reason(self, row: ClaimedEnrollment, sequence: Sequence, lead: Mapping[str, Any]) -> str | None:
        for condition in sequence.exit_when:
            status = STATUS_EXITS.get(condition)
            if status is not None and lead["status"] == status:
                return f"lead is {status}"
        for event_type, occurred_at in self.facts.exit_events.get(row.lead_id, ()):
            if occurred_at < row.enrolled_at:
                continue
            for condition in sequence.exit_when:
                if event_type in EVENT_EXITS.get(condition, ()):
                    return condition.value
        return None

    def _exit(self, row: ClaimedEnrollment, reason: str) -> None:
        self.report.exited[reason] += 1
        self.writes.hold(row, next_due_at=None, state=EnrollmentState.EXITED, exit_reason=reason)

    def _finish(self, row: ClaimedEnrollment, sequence: Sequence, lead: Mapping[str, Any]) -> None:
        """Past the last step: start the next cycle of a recurring policy, or complete."""
        repeat = sequence.repeat
        if repeat is not None and (repeat.times is None or row.cycle + 1 < repeat.times):
            tz, country = self._zone(sequence, lead)
            start = cycle_due(sequence, row.enrolled_at, row.cycle + 1, tz)
            window = sequence.window_for(sequence.steps[0].channel)
            due = next_allowed(max(start, self._now), window, tz, country, sequence.steps[0].channel.value).at
            self.writes.advance(
                row.id, step_index=0, cycle=row.cycle + 1, next_due_at=due, last_step_at=row.last_step_at
            )
            return
        self.report.completed += 1
        self.writes.hold(row, next_due_at=None, state=EnrollmentState.COMPLETED)

    def _advance(
        self,
        row: ClaimedEnrollment,
        sequence: Sequence,
        lead: Mapping[str, Any],
        *,
        previous_at: datetime,
        sent: bool,
    ) -> None:
        """Move to the next step, due one gap after ``previous_at`` (the send, or the skipped due time)."""
        index = row.step_index + 1
        last = self._now if sent else row.last_step_at
        if index >= len(sequence.steps):
            if sequence.repeat is None:
                self.report.completed += 1
                self.writes.advance(
                    row.id,
                    step_index=index,
                    cycle=row.cycle,
                    next_due_at=None,
                    last_step_at=last,
                    state=EnrollmentState.COMPLETED,
                )
                return
            # Leave the row due now: the next claim starts the next cycle in ``_finish``.
            self.writes.advance(
                row.id, step_index=index, cycle=row.cycle, next_due_at=previous_at, last_step_at=last
            )
            return
        tz, country = self._zone(sequence, lead)
        due = self._planner.next_due(
            sequence, index, previous_at, tz=tz, country=country, lead_key=lead["key"]
        ).at
        self.writes.advance(row.id, step_index=index, cycle=row.cycle, next_due_at=due, last_step_at=last)

    # -- deferrals --------------------------------------------------------------------------
    def _defer(self, row: ClaimedEnrollment, until: datetime, reason: str) -> None:
        self.report.deferred[reason] += 1
        self.writes.hold(row, next_due_at=until)

    def _in_window(
        self, row: ClaimedEnrollment, sequence: Sequence, step: Step, lead: Mapping[str, Any]
    ) -> bool:
        if step.transactional:
            return True
        tz, country = self._zone(sequence, lead)
        if self._planner.window_open(sequence, step.channel, self._now, tz, country):
            return True
        window = sequence.window_for(step.channel)
        self._defer(row, next_allowed(self._now, window, tz, country, step.channel.value).at, "window")
        return False

    def _capped_until(self, lead_id: uuid.UUID) -> datetime | None:
        sends = self.facts.recent_sends.get(lead_id)
        if not sends:
            return None
        horizon = self._now - self.cap_window
        live = sorted(t for t in sends if t > horizon)
        if len(live) < self.cap_count:
            return None
        return live[-self.cap_count] + self.cap_window

    # -- manual steps and messages -------------------------------------------------------------
    def _task(self, row: ClaimedEnrollment, sequence: Sequence, step: Step, lead: Mapping[str, Any]) -> None:
        context = self.builder.context(sequence, step, None, lead)
        rendered = self.builder.renderer.render_step(sequence, step, None, context)
        self.writes.task(
            lead_id=row.lead_id,
            enrollment_id=row.id,
            sequence_name=sequence.name,
            step_id=step.id,
            cycle=row.cycle,
            kind=step.channel.value,
            owner=lead["owner"],
            note=rendered.text or step.note or "",
        )
        self.report.tasks[step.channel.value] += 1
        self._advance(row, sequence, lead, previous_at=self._now, sent=True)

    def _message(
        self, row: ClaimedEnrollment, sequence: Sequence, step: Step, lead: Mapping[str, Any]
    ) -> None:
        channel = step.channel.value
        address = lead["email"] if step.channel is Channel.EMAIL else lead["phone"]
        if not address:
            self.report.skipped[f"no {'email' if step.channel is Channel.EMAIL else 'phone'}"] += 1
            self._advance(row, sequence, lead, previous_at=row.next_due_at, sent=False)
            return
        if not step.transactional and not lead[f"consent_{channel}"]:
            self.report.skipped[f"no {channel} consent"] += 1
            self._advance(row, sequence, lead, previous_at=row.next_due_at, sent=False)
            return
        hashed = lead.get(f"hash_{channel}") or address_hash(channel, address)
        if hashed in self.facts.suppressed.get(channel, ()):
            self._suppressed(row, sequence, step, lead, address)
            return
        if not step.transactional:
            capped = self._capped_until(row.lead_id)
            if capped is not None:
                tz, country = self._zone(sequence, lead)
                window = sequence.window_for(step.channel)
                self._defer(row, next_allowed(capped, window, tz, country, channel).at, "frequency_cap")
                return
        variant = self._variant(row, sequence, step)
        if variant == HOLDOUT:
            self.report.holdout += 1
            self._advance(row, sequence, lead, previous_at=self._now, sent=True)
            return
        self._send(row, sequence, step, lead, address, variant)

    def _variant(self, row: ClaimedEnrollment, sequence: Sequence, step: Step) -> str | None:
        if not step.variants:
            return None
        variant = self.facts.assignments.get((row.lead_id, sequence.name, step.id))
        if variant is None:
            experiment = experiment_step(sequence, step)
            # New leads are drawn on the promoted weights; leads already assigned keep their arm.
            drawn_on = effective_step(step, self.facts.promotions.get((sequence.name, experiment)))
            variant = self.facts.assignments.get((row.lead_id, sequence.name, experiment)) or (
                assign_variant(
                    drawn_on, lead_key=str(row.lead_id), sequence_name=sequence.name, experiment=experiment
                )
                or ""
            )
            self.writes.assignment(
                lead_id=row.lead_id,
                enrollment_id=row.id,
                sequence=sequence.name,
                step=step.id,
                variant=variant,
            )
        return variant

    def _suppressed(
        self, row: ClaimedEnrollment, sequence: Sequence, step: Step, lead: Mapping[str, Any], address: str
    ) -> None:
        self.report.suppressed[step.channel.value] += 1
        self.writes.outbox_row(
            state=OutboxState.SUPPRESSED,
            **self._row_keys(row, sequence, step, address, None),
            provider="none",
            transactional=step.transactional,
        )
        self._advance(row, sequence, lead, previous_at=self._now, sent=False)

    def _send(
        self,
        row: ClaimedEnrollment,
        sequence: Sequence,
        step: Step,
        lead: Mapping[str, Any],
        address: str,
        variant: str | None,
    ) -> None:
        outbox_id = self.builder.new_id()
        try:
            message, subject, segments = self.builder.build(outbox_id, sequence, step, variant, lead, address)
        except RenderError as exc:
            # A broken template must not be skipped silently: fail the step and pause the enrollment
            # so an operator fixes the template and resumes it.
            self.report.failed[step.channel.value] += 1
            self.writes.outbox_row(
                state=OutboxState.FAILED,
                **self._row_keys(row, sequence, step, address, variant),
                provider="none",
                transactional=step.transactional,
                error_code="render",
                error_message=str(exc)[:500],
            )
            self.writes.hold(
                row,
                next_due_at=None,
                state=EnrollmentState.PAUSED,
                exit_reason=f"render error in step {step.id}",
            )
            return
        self.writes.outbox.append(
            {
                "id": outbox_id,
                "state": OutboxState.PENDING.value,
                "attempt": 1,
                "created_at": self._now,
                "updated_at": self._now,
                "segments": segments,
                "subject": subject,
                "error_code": None,
                "error_message": None,
                "provider": self.builder.provider_name(step.channel.value),
                "transactional": step.transactional,
                **self._row_keys(row, sequence, step, address, variant),
            }
        )
        self.writes.sends.append(self.builder.pending(outbox_id, step.channel.value, message, row, segments))
        if not step.transactional:
            self.facts.recent_sends.setdefault(row.lead_id, []).append(self._now)
        self._advance(row, sequence, lead, previous_at=self._now, sent=True)

    @staticmethod
    def _row_keys(
        row: ClaimedEnrollment, sequence: Sequence, step: Step, address: str, variant: str | None
    ) -> dict[str, Any]:
        return {
            "enrollment_id": row.id,
            "lead_id": row.lead_id,
            "sequence_name": sequence.name,
            "step_id": step.id,
            "cycle": row.cycle,
            "channel": step.channel.value,
            "to_address": address,
            "variant": variant,
        }


def lead_facts(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The per-lead dict the decider works on: raw columns plus the plain template context (a plain
    ``dict`` is completed in place rather than copied)."""
    context = {
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "email": row["email"] or "",
        "phone": row["phone"] or "",
        "company": row["company"],
        "job_title": row["job_title"],
        "country": row["country"],
        "timezone": row["timezone"] or "",
        "status": row["status"],
        "owner": row["owner"] or "",
        "consent": {"email": bool(row["consent_email"]), "sms": bool(row["consent_sms"])},
    }
    facts: dict[str, Any] = row if isinstance(row, dict) else dict(row)
    facts["context"] = context
    facts["key"] = str(row["id"])
    return facts
