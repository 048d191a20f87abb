"""The demo's world: the simulated clock, the people still to come, the market's pending
reactions, and the actions the outside world takes between the engine's runs.

Everything here goes through the product's own entry points, as the real world would:

- a web-form download is validated and stored by the API's functions (``spirale.api.forms``);
- a provider event is stored as the webhooks store it (``spirale.events.store_events``);
- a sale is recorded as ``POST /conversions`` records it (``scoring.conversions``);
- a salesperson logs an attempt as ``spirale tasks done`` does (``scoring.cadence.record_outcome``).

The engine's own work (intake, event processing, scoring, dispatch) runs in the Prefect flows.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine, Table, func, select

from channels.base import AnyChannel, ChannelKind
from channels.local_outbox import LocalOutboxEmail, LocalOutboxSms
from channels.unsubscribe import UnsubscribeSigner
from models.tables import FormSubmission, OutboxMessage, OutboxState, SalesTask, TaskState, VariantAssignment
from scoring.cadence import CallLimitError, Outcome, record_outcome
from scoring.conversions import record_conversion
from scoring.rules import ScoringRules
from scoring.team import Team, load_team, team_path
from sequences.catalog import SequenceCatalog
from sequences.forms import forms_path, load_forms
from spirale.api.context import ApiContext
from spirale.api.forms import FieldError, store_submission, validate_submission
from spirale.demo.behaviour import Agenda, Conversion, Market, SentMessage
from spirale.demo.population import Download
from spirale.dispatch import DispatchReport
from spirale.errors import ConfigError
from spirale.events import store_events
from spirale.intake import IntakeSetup
from spirale.settings import Settings

OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
ASSIGNMENTS: Table = VariantAssignment.__table__  # type: ignore[attr-defined]
SUBMISSIONS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
SHOP = "demo-shop"


class SimulatedClock:
    """The moving clock: the flows get ``now`` as a parameter, the API and the outbox files read it here."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Totals:
    """What happened over the whole run, beyond what the database keeps."""

    dispatch: DispatchReport = field(default_factory=DispatchReport)
    outcomes: Counter[str] = field(default_factory=Counter)
    refused_calls: int = 0
    form_errors: Counter[str] = field(default_factory=Counter)
    disqualified: Counter[str] = field(default_factory=Counter)


@dataclass
class DemoWorld:
    """Shared by the run and its ``demo-week`` flow runs (one process)."""

    settings: Settings
    engine: Engine
    catalog: SequenceCatalog
    rules: ScoringRules
    clock: SimulatedClock
    market: Market
    downloads: deque[Download]
    first_day: date
    agenda: Agenda = field(default_factory=Agenda)
    totals: Totals = field(default_factory=Totals)
    on_day: Callable[[date], object] | None = None
    _drawn: set[tuple[uuid.UUID, str]] = field(default_factory=set)
    _assignments_seen: datetime | None = None

    def __post_init__(self) -> None:
        sequences_dir = self.settings.sequences_dir
        self.forms = load_forms(forms_path(sequences_dir))
        self.team: Team = load_team(team_path(sequences_dir))
        self.intake = IntakeSetup.load(sequences_dir)
        outbox = self.settings.outbox_dir
        # The local outbox, its emails dated by the simulated clock (dispatch and owner alerts).
        self.channels: dict[str, AnyChannel] = {
            ChannelKind.EMAIL: LocalOutboxEmail(outbox, clock=self.clock),
            ChannelKind.SMS: LocalOutboxSms(outbox),
        }
        self.api = ApiContext(
            settings=self.settings,
            engine=self.engine,
            clock=self.clock,
            forms=self.forms,
            catalog=self.catalog,
            signer=UnsubscribeSigner(self.settings.secret_key),
            sendgrid=None,
            twilio=None,
            start_intake=None,
            on_events=None,
        )

    def day_done(self, day: date) -> None:
        """Tell the run a simulated day is over (its progress bar)."""
        if self.on_day is not None:
            self.on_day(day)

    # -- people arriving --------------------------------------------------------------------------
    def receive_downloads(self, until: datetime) -> int:
        """Post every form filled in by ``until``, each at its own instant; returns how many."""
        received = 0
        while self.downloads and self.downloads[0].at <= until:
            download = self.downloads.popleft()
            self.clock.now = download.at
            try:
                submission = validate_submission(download.fields)
            except FieldError as exc:
                # The API answers 422 and stores nothing: the visitor sees the error on the form.
                self.totals.form_errors[exc.field] += 1
                continue
            store_submission(self.api, download.form_id, self.forms[download.form_id], submission)
            received += 1
        self.clock.now = until
        return received

    def waiting_submissions(self) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).where(SUBMISSIONS.c.status == "received")
            return int(conn.execute(query).scalar_one())

    # -- the market -------------------------------------------------------------------------------
    def deliver_reactions(self, now: datetime) -> int:
        """Store the provider events and sales that have happened by ``now``; returns how many."""
        due = self.agenda.due(now)
        events = [item for item in due if not isinstance(item, Conversion)]
        sales = [item for item in due if isinstance(item, Conversion)]
        with self.engine.begin() as conn:
            stored = store_events(conn, events, received_at=now).stored if events else 0
            for sale in sales:
                stored += record_conversion(
                    conn,
                    lead_id=sale.lead_id,
                    occurred_at=sale.at,
                    value=sale.value,
                    source=SHOP,
                    external_id=sale.order,
                    received_at=now,
                )
        return stored

    def observe_sends(self, now: datetime) -> int:
        """Put the market's reactions to the messages sent at ``now`` on the agenda."""
        query = select(
            OUTBOX.c.id,
            OUTBOX.c.lead_id,
            OUTBOX.c.sequence_name,
            OUTBOX.c.step_id,
            OUTBOX.c.channel,
            OUTBOX.c.variant,
            OUTBOX.c.to_address,
            OUTBOX.c.sent_at,
        ).where(OUTBOX.c.state == OutboxState.SENT.value, OUTBOX.c.sent_at >= now)
        with self.engine.connect() as conn:
            sent = [SentMessage(*row) for row in conn.execute(query)]
        self.agenda.add(self.market.reactions(sent))
        return len(sent)

    def draw_conversions(self, now: datetime) -> None:
        """Each lead newly drawn into an A/B arm buys, or not, at its arm's true rate."""
        query = select(
            ASSIGNMENTS.c.lead_id,
            ASSIGNMENTS.c.sequence_name,
            ASSIGNMENTS.c.variant,
            ASSIGNMENTS.c.assigned_at,
        ).order_by(ASSIGNMENTS.c.assigned_at)
        if self._assignments_seen is not None:
            query = query.where(ASSIGNMENTS.c.assigned_at > self._assignments_seen)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        for lead_id, sequence, arm, assigned_at in rows:
            if (lead_id, sequence) not in self._drawn:
                self._drawn.add((lead_id, sequence))
                sale = self.market.conversion(lead_id, sequence=sequence, arm=arm, at=assigned_at)
                self.agenda.add([sale] if sale else [])
        self._assignments_seen = now

    # -- the sales team ---------------------------------------------------------------------------
    def log_sales_attempts(self, now: datetime) -> int:
        """Each sales-cadence task due by ``now`` is attempted and its outcome logged."""
        query = (
            select(TASKS.c.id, TASKS.c.lead_id, TASKS.c.kind, TASKS.c.owner)
            .where(
                TASKS.c.state == TaskState.OPEN.value,
                TASKS.c.sequence_name == self.rules.routing.hot,
                TASKS.c.due_at <= now,
            )
            .order_by(TASKS.c.due_at)
        )
        with self.engine.connect() as conn:
            due = conn.execute(query).all()
        for task_id, lead_id, kind, owner in due:
            self._attempt(task_id, lead_id, kind, owner or "sales", now)
        return len(due)

    def _attempt(self, task_id: uuid.UUID, lead_id: uuid.UUID, kind: str, owner: str, now: datetime) -> None:
        outcome = self.market.outcome(kind)
        try:
            with self.engine.begin() as conn:
                record_outcome(
                    conn, task_id=task_id, outcome=outcome.value, now=now, actor=owner, rules=self.rules
                )
        except CallLimitError:
            # The law caps prospecting calls; the salesperson is told so and the task waits.
            self.totals.refused_calls += 1
            return
        self.totals.outcomes[outcome.value] += 1
        if outcome is Outcome.MEETING:
            sale = self.market.after_meeting(lead_id, now)
            self.agenda.add([sale] if sale else [])


_current: ContextVar[DemoWorld | None] = ContextVar("spirale_demo_world", default=None)


@contextmanager
def living_in(world: DemoWorld) -> Iterator[DemoWorld]:
    """Run the ``demo-week`` flows started in this context in ``world``."""
    token = _current.set(world)
    try:
        yield world
    finally:
        _current.reset(token)


def current_world() -> DemoWorld:
    """The world of the running demo (``demo-week`` runs only inside ``spirale demo``)."""
    world = _current.get()
    if world is None:
        raise ConfigError("the demo-week flow runs inside `spirale demo`, which sets up its world")
    return world
