"""Routing: putting each lead on the track its status calls for.

- **hot**: an owner from the team (territory, else balanced round robin), the ``sales-cadence``
  enrollment and, at once, the task for its first attempt on the owner's list (due at the next
  legal calling slot); the owner is notified afterwards (``scoring.notify``);
- **warm**: ``whitepaper-nurture``, or the sequence of the form the lead filled in;
- **cold**: the ``incubator``;
- **customers**: the contact policy of their class; former and disqualified leads: no track.

A lead is live in at most one of the ``exclusive`` sequences: moving to another exits the old
enrollment (``exit_reason = "moved to <sequence>"``) and cancels its open tasks; a disqualified
lead leaves every sequence. Statuses themselves are written by the caller
(``scoring.engagement.record_moves``): routing only acts on them.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, or_, select, update

from models.claims import ENROLLMENTS
from models.tables import LIVE_ENROLLMENT_STATES, EnrollmentState, Lead, LeadStatus, SalesTask, TaskState
from scoring.call_limit import enforce_call_limit
from scoring.rules import ScoringRules
from scoring.status import StatusMove
from scoring.team import Team, assign_owners, load_team, team_path
from sequences.catalog import SequenceCatalog
from sequences.planner import lead_zone
from sequences.schema import Channel
from sequences.schema import Sequence as SequenceSpec
from sequences.windows import next_allowed
from spirale.dispatch.writes import insert_ignoring_duplicates
from spirale.enrollment import enroll_leads

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
#: A row of ``_LEAD_COLUMNS`` (attribute access by column name).
LeadRow = Any
#: The task of a hot lead whose sales sequence does not open with a manual step.
HOT_TASK_STEP = "hot-lead"
_LEAD_COLUMNS = (
    LEADS.c.id,
    LEADS.c.status,
    LEADS.c.owner,
    LEADS.c.country,
    LEADS.c.timezone,
    LEADS.c.phone,
    LEADS.c.attributes,
    LEADS.c.customer_class,
    LEADS.c.disqualified_reason,
)


@dataclass
class RoutingResult:
    """What routing did: enrollments per sequence, exits, owners given, tasks of hot leads."""

    enrolled: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    owners: dict[uuid.UUID, str] = field(default_factory=dict)
    task_ids: list[uuid.UUID] = field(default_factory=list)

    def merge(self, other: RoutingResult) -> None:
        self.enrolled.update(other.enrolled)
        self.exited.update(other.exited)
        self.owners.update(other.owners)
        self.task_ids.extend(other.task_ids)


def target_sequence(
    status: str, rules: ScoringRules, *, customer_class: str | None = None, preferred: str | None = None
) -> str | None:
    """The sequence a lead of ``status`` belongs in (``None``: no track)."""
    routing = rules.routing
    if status == LeadStatus.HOT.value:
        return routing.hot
    if status == LeadStatus.WARM.value:
        return preferred if preferred and preferred != routing.hot else routing.warm
    if status == LeadStatus.COLD.value:
        return routing.cold
    if status == LeadStatus.CUSTOMER.value:
        return routing.customers.get(customer_class or "")
    return None


@dataclass
class Router:
    """Routes leads with one set of rules, sequences and team (loaded from the sequences directory
    when not given)."""

    rules: ScoringRules
    catalog: SequenceCatalog
    team: Team | None = None

    def __post_init__(self) -> None:
        self.exclusive = self.rules.routing.exclusive_sequences()

    def route(self, conn: Connection, *, moves: Sequence[StatusMove], now: datetime) -> RoutingResult:
        """Put each moved lead on the track of its new status (caller commits)."""
        result = RoutingResult()
        if not moves:
            return result
        leads = {
            row.id: row
            for row in conn.execute(select(*_LEAD_COLUMNS).where(LEADS.c.id.in_([m.lead_id for m in moves])))
        }
        targets: dict[uuid.UUID, str | None] = {}
        for move in moves:
            lead = leads.get(move.lead_id)
            if lead is not None:
                targets[move.lead_id] = target_sequence(
                    move.new, self.rules, customer_class=lead.customer_class, preferred=move.sequence
                )
        self._exit_other_tracks(conn, targets, leads, now, result)
        self._enroll(conn, targets, now, result)
        hot = [leads[lead_id] for lead_id, target in targets.items() if target == self.rules.routing.hot]
        if hot:
            self._hand_to_sales(conn, hot, now, result)
        return result

    def _exit_other_tracks(
        self,
        conn: Connection,
        targets: Mapping[uuid.UUID, str | None],
        leads: Mapping[uuid.UUID, LeadRow],
        now: datetime,
        result: RoutingResult,
    ) -> None:
        live = conn.execute(
            select(ENROLLMENTS.c.id, ENROLLMENTS.c.lead_id, ENROLLMENTS.c.sequence_name).where(
                ENROLLMENTS.c.lead_id.in_(list(targets)), ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES)
            )
        ).all()
        exits: list[tuple[uuid.UUID, str]] = []
        for enrollment_id, lead_id, sequence_name in live:
            target = targets[lead_id]
            if leads[lead_id].status == LeadStatus.DISQUALIFIED.value:
                exits.append(
                    (enrollment_id, f"disqualified: {leads[lead_id].disqualified_reason or 'no reason'}")
                )
            elif sequence_name in self.exclusive and sequence_name != target:
                exits.append(
                    (enrollment_id, f"moved to {target}" if target else f"lead is {leads[lead_id].status}")
                )
        exit_enrollments(conn, exits=exits, now=now)
        result.exited.update(reason for _, reason in exits)

    def _enroll(
        self, conn: Connection, targets: Mapping[uuid.UUID, str | None], now: datetime, result: RoutingResult
    ) -> None:
        groups: dict[str, list[uuid.UUID]] = defaultdict(list)
        for lead_id, target in targets.items():
            if target is not None:
                groups[target].append(lead_id)
        for name, lead_ids in groups.items():
            sequence, version = self.catalog.get(name), self.catalog.version(name)
            enrolled = enroll_leads(conn, lead_ids=lead_ids, sequence=sequence, version=version, now=now)
            result.enrolled[name] += enrolled.enrolled

    def _hand_to_sales(
        self, conn: Connection, leads: Sequence[LeadRow], now: datetime, result: RoutingResult
    ) -> None:
        if self.team is None:
            self.team = load_team(team_path(self.catalog.sequences_dir))
        owners = assign_owners(conn, team=self.team, leads=[dict(row._mapping) for row in leads])
        changed = [
            {"b_id": lead.id, "b_owner": owners[lead.id]} for lead in leads if lead.owner != owners[lead.id]
        ]
        if changed:
            conn.execute(
                update(LEADS).where(LEADS.c.id == bindparam("b_id")).values(owner=bindparam("b_owner")),
                changed,
            )
        result.owners.update(owners)
        result.task_ids.extend(self._first_tasks(conn, leads, owners, now))
        enforce_call_limit(
            conn, lead_ids=[lead.id for lead in leads], now=now, rules=self.rules, catalog=self.catalog
        )

    def _first_tasks(
        self, conn: Connection, leads: Sequence[LeadRow], owners: Mapping[uuid.UUID, str], now: datetime
    ) -> list[uuid.UUID]:
        """The task of each hot lead's first attempt, on its owner's list now, due at the next slot
        the step's window allows (the legal calling hours for a call)."""
        sequence = self.catalog.get(self.rules.routing.hot)
        first = _FirstAttempt.of(sequence)
        by_lead = {lead.id: lead for lead in leads}
        enrollments = conn.execute(
            select(ENROLLMENTS.c.id, ENROLLMENTS.c.lead_id, ENROLLMENTS.c.cycle).where(
                ENROLLMENTS.c.lead_id.in_(list(by_lead)),
                ENROLLMENTS.c.sequence_name == sequence.name,
                ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES),
            )
        ).all()
        rows = [
            first.task_row(enrollment_id, by_lead[lead_id], cycle, owners[lead_id], now)
            for enrollment_id, lead_id, cycle in enrollments
        ]
        if not rows:
            return []
        insert_ignoring_duplicates(conn, TASKS, rows)
        query = select(TASKS.c.id).where(
            TASKS.c.enrollment_id.in_([row["enrollment_id"] for row in rows]),
            TASKS.c.step_id == first.step_id,
        )
        return list(conn.execute(query).scalars())


@dataclass(frozen=True)
class _FirstAttempt:
    """The first step of the hot sequence as a task: a manual step itself, else a generic one."""

    sequence: SequenceSpec
    step_id: str
    channel: Channel
    note: str

    @classmethod
    def of(cls, sequence: SequenceSpec) -> _FirstAttempt:
        first = sequence.steps[0]
        if first.channel.is_manual:
            return cls(sequence, first.id, first.channel, first.note or "")
        return cls(sequence, HOT_TASK_STEP, Channel.TASK, "Prospect chaud : le contacter au plus vite.")

    def task_row(
        self, enrollment_id: uuid.UUID, lead: LeadRow, cycle: int, owner: str, now: datetime
    ) -> dict[str, Any]:
        tz, country = lead_zone(
            self.sequence, {"timezone": lead.timezone, "country": lead.country, "phone": lead.phone}
        )
        due = next_allowed(now, self.sequence.window_for(self.channel), tz, country, self.channel.value).at
        return {
            "id": uuid.uuid4(),
            "lead_id": lead.id,
            "enrollment_id": enrollment_id,
            "sequence_name": self.sequence.name,
            "step_id": self.step_id,
            "cycle": cycle,
            "kind": self.channel.value,
            "owner": owner,
            "note": self.note,
            "state": TaskState.OPEN.value,
            "outcome": None,
            "due_at": due,
            "created_at": now,
            "done_at": None,
        }


def exit_enrollments(conn: Connection, *, exits: Sequence[tuple[uuid.UUID, str]], now: datetime) -> None:
    """Exit live enrollments with their reasons and cancel their open tasks (caller commits).

    The claim is cleared too: a dispatcher holding the row loses its fence and redoes its batch,
    so an exited enrollment never sends another step."""
    if not exits:
        return
    conn.execute(
        update(ENROLLMENTS)
        # No IN (...) here: an expanding parameter cannot take part in an executemany.
        .where(
            and_(
                ENROLLMENTS.c.id == bindparam("b_id"),
                or_(*(ENROLLMENTS.c.state == state for state in LIVE_ENROLLMENT_STATES)),
            )
        )
        .values(
            state=EnrollmentState.EXITED.value,
            exit_reason=bindparam("b_reason"),
            next_due_at=None,
            claimed_by=None,
            lease_until=None,
            updated_at=bindparam("b_now", type_=ENROLLMENTS.c.updated_at.type),
        ),
        [{"b_id": enrollment_id, "b_reason": reason[:500], "b_now": now} for enrollment_id, reason in exits],
    )
    cancel_open_tasks(conn, enrollment_ids=[enrollment_id for enrollment_id, _ in exits], now=now)


def cancel_open_tasks(conn: Connection, *, enrollment_ids: Sequence[uuid.UUID], now: datetime) -> int:
    """Cancel the open tasks of these enrollments; returns how many."""
    if not enrollment_ids:
        return 0
    statement = (
        update(TASKS)
        .where(TASKS.c.enrollment_id.in_(list(enrollment_ids)), TASKS.c.state == TaskState.OPEN.value)
        .values(state=TaskState.CANCELLED.value, done_at=now)
    )
    return conn.execute(statement).rowcount


def route_moves(
    conn: Connection,
    *,
    moves: Sequence[StatusMove],
    now: datetime,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team | None = None,
) -> RoutingResult:
    """Route status moves (from ``apply_event_scores`` or rescoring); the caller commits, then
    notifies the owners of ``result.task_ids`` (``scoring.notify.notify_tasks``)."""
    return Router(rules=rules, catalog=catalog, team=team).route(conn, moves=moves, now=now)
