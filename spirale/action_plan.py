"""The action plan in numbers, as the brief keeps it in Excel: per week and per sequence, the planned
sends by channel, who owns them, what they cost and how many leads they reach; and per salesperson
and week, the sales tasks to do.

The numbers are projected from the live database: each active enrollment's remaining steps are
placed with the planner's rules (``sequences.planner.next_due``: the spacing, the lead's jitter, the
channels' send windows in the lead's time zone), repeat cycles included, over the horizon. A step is
counted as a send only when the dispatcher would send it: the lead has the address and the consent
(transactional steps need no consent), the address is not suppressed, the step's ``if`` holds and the
lead is not in the step's holdout. Frequency-cap deferrals and later exits are not foreseen, so the
plan is an upper bound. SMS cost is per segment, the segment count estimated with the sample lead.

Owners: a sequence with manual steps (calls, LinkedIn, tasks) is led by sales, so its touches belong
to each lead's owner; a fully automated sequence belongs to ``marketing``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Table, select

from channels.sms_length import sms_length
from models.leads import lead_context
from models.suppressions import address_hash, suppressed_hashes
from models.tables import Enrollment, EnrollmentState, Lead, SalesTask, TaskState
from sequences.catalog import SequenceCatalog
from sequences.planner import lead_zone, next_due
from sequences.rendering import sample_context
from sequences.schema import Channel, Step
from sequences.schema import Sequence as SequenceSpec
from sequences.variants import HOLDOUT, assign_variant, experiment_step
from sequences.windows import next_allowed
from spirale.errors import RenderError, SequenceError

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
MARKETING = "marketing"
UNASSIGNED = "(unassigned)"
CHUNK = 2000
DEFAULT_ZONE = ZoneInfo("Europe/Paris")
SEND_CHANNELS = (Channel.EMAIL, Channel.SMS)


@dataclass(frozen=True, slots=True)
class Costs:
    """Unit costs in euros: per email, per SMS segment, per sales call."""

    email: float
    sms: float
    call: float


@dataclass
class PlanLine:
    """Sheet 1: one sequence's planned touches for one owner in one ISO week."""

    week_start: date
    sequence: str
    owner: str
    counts: Counter[str] = field(default_factory=Counter)  # by channel, plus "sms_segments"
    leads: set[uuid.UUID] = field(default_factory=set)

    @property
    def week(self) -> str:
        year, number, _ = self.week_start.isocalendar()
        return f"{year}-W{number:02d}"

    def budget(self, costs: Costs) -> float:
        counts = self.counts
        return round(
            counts[Channel.EMAIL.value] * costs.email
            + counts["sms_segments"] * costs.sms
            + counts[Channel.CALL.value] * costs.call,
            4,
        )


@dataclass
class TaskLine:
    """Sheet 2: one salesperson's tasks in one ISO week: open tasks already created, and manual
    steps the sequences will create."""

    week_start: date
    owner: str
    open_tasks: int = 0
    overdue: int = 0
    planned: Counter[str] = field(default_factory=Counter)  # call | linkedin | task

    @property
    def week(self) -> str:
        year, number, _ = self.week_start.isocalendar()
        return f"{year}-W{number:02d}"


@dataclass
class ActionPlan:
    """The projected plan over ``weeks`` ISO weeks from the week holding ``start``."""

    start: datetime
    weeks: int
    costs: Costs
    lines: list[PlanLine]
    tasks: list[TaskLine]
    warnings: list[str] = field(default_factory=list)

    @property
    def first_week(self) -> date:
        return week_start(self.start.astimezone(UTC).date())


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def build_action_plan(
    conn: Connection, *, catalog: SequenceCatalog, start: datetime, weeks: int, costs: Costs
) -> ActionPlan:
    """Project the live enrollments and open sales tasks over ``weeks`` weeks from ``start``."""
    if weeks < 1:
        raise ValueError(f"the plan needs at least 1 week, got {weeks}")
    if start.tzinfo is None:
        raise ValueError("the plan needs an aware start instant")
    first = week_start(start.astimezone(UTC).date())
    horizon = _Horizon(start, datetime.combine(first + timedelta(weeks=weeks), time(0), UTC))
    builder = _PlanBuilder(catalog, horizon)
    for chunk in _enrollment_chunks(conn):
        builder.add_chunk(conn, chunk)
    _add_open_tasks(conn, builder, horizon)
    return ActionPlan(
        start=start,
        weeks=weeks,
        costs=costs,
        lines=sorted(builder.lines.values(), key=lambda x: (x.week_start, x.sequence, x.owner)),
        tasks=sorted(builder.tasks.values(), key=lambda x: (x.week_start, x.owner)),
        warnings=builder.warnings(),
    )


@dataclass(frozen=True, slots=True)
class _Horizon:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class _Touch:
    step: Step
    at: datetime  # aware, in the lead's time zone


def _enrollment_chunks(conn: Connection) -> Iterator[list[Mapping[str, Any]]]:
    lead_columns = [c for c in LEADS.c if c.name not in ("attributes", "id")]
    query = (
        select(
            ENROLLMENTS.c.lead_id,
            ENROLLMENTS.c.sequence_name,
            ENROLLMENTS.c.step_index,
            ENROLLMENTS.c.cycle,
            ENROLLMENTS.c.next_due_at,
            ENROLLMENTS.c.enrolled_at,
            *lead_columns,
        )
        .join(LEADS, LEADS.c.id == ENROLLMENTS.c.lead_id)
        .where(ENROLLMENTS.c.state == EnrollmentState.ACTIVE.value)
        .order_by(ENROLLMENTS.c.id)
    )
    batch: list[Mapping[str, Any]] = []
    for row in conn.execute(query).mappings():
        batch.append(dict(row))
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


class _PlanBuilder:
    """Accumulates projected touches into plan and task lines."""

    def __init__(self, catalog: SequenceCatalog, horizon: _Horizon) -> None:
        self.catalog, self.horizon = catalog, horizon
        self.lines: dict[tuple[date, str, str], PlanLine] = {}
        self.tasks: dict[tuple[date, str], TaskLine] = {}
        self.unknown: Counter[str] = Counter()
        self.render_problems: dict[str, str] = {}
        self._segments: dict[tuple[str, str, str | None], int] = {}
        self._zones: dict[tuple[str, str, str], tuple[ZoneInfo, str]] = {}

    def _zone(self, sequence: SequenceSpec, lead: Mapping[str, Any]) -> tuple[ZoneInfo, str]:
        """The lead's zone and holiday country; cached when the lead names its zone (the phone
        number, parsed otherwise, is the costly part)."""
        if not lead.get("timezone"):
            return lead_zone(sequence, lead)
        key = (sequence.name, lead["timezone"], lead.get("country") or "")
        zone = self._zones.get(key)
        if zone is None:
            zone = self._zones[key] = lead_zone(sequence, lead)
        return zone

    def warnings(self) -> list[str]:
        notes = [
            f"{count} active enrollments in sequence {name!r}, which is not in the library: not planned"
            for name, count in sorted(self.unknown.items())
        ]
        notes += [
            f"SMS {where}: {problem} (counted as 1 segment)"
            for where, problem in self.render_problems.items()
        ]
        return notes

    def add_chunk(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        suppressed = _suppressed(conn, rows)
        for row in rows:
            sequence = self._sequence(row["sequence_name"])
            if sequence is not None:
                self._add_enrollment(sequence, row, suppressed)

    def _sequence(self, name: str) -> SequenceSpec | None:
        if name in self.unknown:
            self.unknown[name] += 1
            return None
        try:
            return self.catalog.get(name)
        except SequenceError:
            self.unknown[name] += 1  # reported in the plan's warnings, not silently dropped
            return None

    def _add_enrollment(
        self, sequence: SequenceSpec, row: Mapping[str, Any], suppressed: Mapping[str, set[str]]
    ) -> None:
        context = lead_context(row)
        lead_id: uuid.UUID = row["lead_id"]
        sales_led = any(step.channel.is_manual for step in sequence.steps)
        owner = (row["owner"] or UNASSIGNED) if sales_led else MARKETING
        renderer = self.catalog.renderer
        for touch in _project(sequence, row, self._zone(sequence, context), self.horizon):
            if touch.step.if_ and not renderer.evaluate_condition(touch.step.if_, context):
                continue
            if touch.step.channel.is_manual:
                self._count(sequence, touch, owner, lead_id)
                self.task_line(touch.at.date(), row["owner"] or UNASSIGNED).planned[
                    touch.step.channel.value
                ] += 1
            elif _would_send(sequence, touch.step, row, suppressed):
                self._count(sequence, touch, owner, lead_id)

    def _count(self, sequence: SequenceSpec, touch: _Touch, owner: str, lead_id: uuid.UUID) -> None:
        monday = week_start(touch.at.date())
        line = self.lines.get((monday, sequence.name, owner))
        if line is None:
            line = self.lines[(monday, sequence.name, owner)] = PlanLine(monday, sequence.name, owner)
        line.counts[touch.step.channel.value] += 1
        if touch.step.channel is Channel.SMS:
            line.counts["sms_segments"] += self._sms_segments(sequence, touch.step, lead_id)
        line.leads.add(lead_id)

    def _sms_segments(self, sequence: SequenceSpec, step: Step, lead_id: uuid.UUID) -> int:
        variant = assign_variant(
            step,
            lead_key=str(lead_id),
            sequence_name=sequence.name,
            experiment=experiment_step(sequence, step),
        )
        key = (sequence.name, step.id, variant)
        segments = self._segments.get(key)
        if segments is None:
            context = sample_context(sequence, step, variant)
            try:
                text = self.catalog.renderer.render_step(sequence, step, variant, context).text or ""
                segments = sms_length(text).segments
            except RenderError as exc:
                self.render_problems[f"{sequence.name}/{step.id}"] = str(exc)
                segments = 1
            self._segments[key] = segments
        return segments

    def task_line(self, day: date, owner: str) -> TaskLine:
        """The task line of ``owner`` for the week holding ``day`` (created on first use)."""
        monday = week_start(day)
        line = self.tasks.get((monday, owner))
        if line is None:
            line = self.tasks[(monday, owner)] = TaskLine(monday, owner)
        return line


def _would_send(
    sequence: SequenceSpec, step: Step, row: Mapping[str, Any], suppressed: Mapping[str, set[str]]
) -> bool:
    """Whether the dispatcher would send this step to this lead (address, consent, suppression,
    holdout), as far as the lead's record tells today."""
    channel = step.channel.value
    address = row["email"] if step.channel is Channel.EMAIL else row["phone"]
    if not address or (not step.transactional and not row[f"consent_{channel}"]):
        return False
    if address_hash(channel, address) in suppressed[channel]:
        return False
    variant = assign_variant(
        step,
        lead_key=str(row["lead_id"]),
        sequence_name=sequence.name,
        experiment=experiment_step(sequence, step),
    )
    return variant != HOLDOUT


def _suppressed(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    emails = {address_hash("email", r["email"]) for r in rows if r["email"]}
    phones = {address_hash("sms", r["phone"]) for r in rows if r["phone"]}
    return {
        "email": suppressed_hashes(conn, channel="email", hashes=emails),
        "sms": suppressed_hashes(conn, channel="sms", hashes=phones),
    }


def _project(
    sequence: SequenceSpec, row: Mapping[str, Any], zone: tuple[ZoneInfo, str], horizon: _Horizon
) -> Iterator[_Touch]:
    """The enrollment's remaining steps (and later repeat cycles) that fall before the horizon's end.
    An overdue step is counted at the start: the next dispatch sends it."""
    tz, country = zone
    key = str(row["lead_id"])
    steps = sequence.steps
    index, cycle = row["step_index"], row["cycle"]
    at = max(row["next_due_at"] or horizon.start, horizon.start).astimezone(tz)
    while True:
        while index < len(steps):
            if at >= horizon.end:
                return
            yield _Touch(steps[index], at)
            index += 1
            if index < len(steps):
                at = next_due(sequence, index, at, tz=tz, country=country, lead_key=key).at
        next_cycle = _next_cycle_start(sequence, row["enrolled_at"], cycle + 1, at, tz, country)
        if next_cycle is None:
            return
        index, cycle, at = 0, cycle + 1, next_cycle


def _next_cycle_start(
    sequence: SequenceSpec, enrolled_at: datetime, cycle: int, after: datetime, tz: ZoneInfo, country: str
) -> datetime | None:
    """When cycle ``cycle`` of a recurring policy starts, as the dispatcher places it; None when the
    sequence does not repeat or has run its ``times``."""
    repeat = sequence.repeat
    if repeat is None or (repeat.times is not None and cycle >= repeat.times):
        return None
    first = sequence.steps[0]
    due = max(enrolled_at + repeat.every * cycle, after + timedelta(minutes=1))
    return next_allowed(due, sequence.window_for(first.channel), tz, country, first.channel.value).at


def _add_open_tasks(conn: Connection, builder: _PlanBuilder, horizon: _Horizon) -> None:
    """Open tasks due before the horizon's end, in the week they are due (overdue ones: this week)."""
    query = (
        select(TASKS.c.owner, TASKS.c.due_at, LEADS.c.timezone)
        .join(LEADS, LEADS.c.id == TASKS.c.lead_id)
        .where(TASKS.c.state == TaskState.OPEN.value, TASKS.c.due_at < horizon.end)
    )
    for owner, due_at, zone_name in conn.execute(query):
        day = max(due_at, horizon.start).astimezone(_zone(zone_name)).date()
        line = builder.task_line(day, owner or UNASSIGNED)
        line.open_tasks += 1
        line.overdue += due_at < horizon.start


@cache
def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else DEFAULT_ZONE
    except (ZoneInfoNotFoundError, ValueError):
        # A bad zone on a lead record is bad data, not a failure: the planner falls back the same way.
        return DEFAULT_ZONE
