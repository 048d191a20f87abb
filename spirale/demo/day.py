"""The simulated days of the demo: one Prefect flow run per simulated week, ``demo-week-<date>``,
playing its days one after the other.

Each day runs the engine at the instants the deployments would (Paris time): the nightly scoring
at 02:00 (decay and re-routing, owners told of new hot leads, finished sales cadences handed
back), on Mondays the ``reactivation`` campaign at 06:00 and, every other week, its
``ab-review`` at 07:00 (the real flows, as subflows), then two ticks during the day. A tick
takes in the forms filled in since the last one, applies the events that came back and
dispatches every due step with the ``dispatch`` flow's own tasks. Between the engine's runs the
outside world acts (``spirale.demo.world``): people download, the market reacts, salespeople
log their attempts.

The intake, event and scoring tasks here call the same engine functions as the tasks of
``flows/intake.py``, ``flows/process_events.py`` and ``flows/scoring.py``, under the same task
names, but with the configuration the world loaded once: those tasks read and parse every
configuration file on each run (tens of milliseconds), which a simulated quarter would pay
hundreds of times. A flow run per week, not per day: a flow run costs about 0.13 s of client
time plus the server's, which over 90 days was a seventh of the run; a day is about ten task
runs, never one per message or per lead.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Table, func, select

from flows.ab_review import ab_review
from flows.dispatch import dispatch_batches, recover_unfinished
from flows.params import ABReviewParams, DispatchParams, EventsParams, IntakeParams, ReactivationParams
from flows.reactivation import reactivation
from models.tables import Event
from scoring.cadence import hand_back_completed
from scoring.notify import NotifyReport, notify_tasks
from scoring.rescoring import RescoreReport, rescore_all
from spirale.demo.world import DemoWorld, current_world
from spirale.dispatch import DispatchReport
from spirale.events import EventsReport, process_events
from spirale.intake import IntakeReport, process_submissions

PARIS = ZoneInfo("Europe/Paris")
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
NIGHTLY = time(2, 0)
REACTIVATION = time(6, 0)
AB_REVIEW = time(7, 0)
TICKS = (time(10, 30), time(15, 30))
STEPS_PER_TASK = DispatchParams().steps_per_task
INTAKE_LIMIT = IntakeParams().limit
EVENTS_LIMIT = EventsParams().limit


@dataclass
class DayReport:
    """What simulated days did (one, or a week of them), for the progress line of their week."""

    day: date
    downloads: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    moves: Counter[str] = field(default_factory=Counter)

    def merge(self, other: DayReport) -> None:
        self.downloads += other.downloads
        self.statuses.update(other.statuses)
        self.sent.update(other.sent)
        self.moves.update(other.moves)


def local_instant(day: date, moment: time) -> datetime:
    """``moment`` on ``day`` in Paris, as a UTC instant."""
    return datetime.combine(day, moment, tzinfo=PARIS).astimezone(UTC)


@flow(name="demo-week", flow_run_name="demo-week-{first}", log_prints=False)
def demo_week(first: date, days: int) -> DayReport:
    """``days`` simulated days from ``first``, one after the other (the progress bar moves
    after each)."""
    world = current_world()
    week = DayReport(first)
    for offset in range(days):
        day = first + timedelta(days=offset)
        report = demo_day(world, day)
        week.merge(report)
        world.day_done(day)
    return week


def demo_day(world: DemoWorld, day: date) -> DayReport:
    """The night's scoring, Monday's campaign and review, then the day's ticks."""
    report = DayReport(day)
    night = local_instant(day, NIGHTLY)
    _apply_events(world, night)
    _score(world, night, report)
    if day.weekday() == 0:
        reactivation(ReactivationParams(now=local_instant(day, REACTIVATION)))
        if _review_due(world, day):
            ab_review(ABReviewParams(now=local_instant(day, AB_REVIEW)))
    for index, moment in enumerate(TICKS):
        _tick(world, local_instant(day, moment), report, recover=index == 0)
    return report


@task(
    name="take-in-submissions",
    task_run_name="take-in-submissions-{now:%Y-%m-%dT%H:%M}",
    cache_policy=NO_CACHE,
)
def take_in_submissions(now: datetime) -> IntakeReport:
    """Qualify, score, route and enroll the waiting form submissions (``flows/intake.py``)."""
    world = current_world()
    return process_submissions(
        world.engine,
        now=now,
        settings=world.settings,
        catalog=world.catalog,
        limit=INTAKE_LIMIT,
        setup=world.intake,
        channels=world.channels,
    )


@task(name="apply-events", task_run_name="apply-events-{now:%Y-%m-%dT%H:%M}-{part}", cache_policy=NO_CACHE)
def apply_events(now: datetime, part: int) -> EventsReport:
    """Apply the stored webhook events (``flows/process_events.py``)."""
    world = current_world()
    return process_events(
        world.engine,
        now=now,
        settings=world.settings,
        limit=EVENTS_LIMIT,
        channels=world.channels,
        catalog=world.catalog,
    )


@task(name="rescore-all", task_run_name="rescore-all-{now:%Y-%m-%dT%H:%M}", cache_policy=NO_CACHE)
def rescore(now: datetime) -> RescoreReport:
    """Decay and re-route every lead (``flows/scoring.py``)."""
    world = current_world()
    return rescore_all(world.engine, now=now, rules=world.rules, catalog=world.catalog, team=world.team)


@task(name="notify-owners", cache_policy=NO_CACHE)
def notify_owners(now: datetime, task_ids: list[uuid.UUID]) -> NotifyReport:
    """Tell the owners of the leads that turned hot (``flows/scoring.py``)."""
    world = current_world()
    return notify_tasks(
        world.engine,
        task_ids=task_ids,
        now=now,
        settings=world.settings,
        rules=world.rules,
        team=world.team,
        channels=world.channels,
    )


@task(
    name="hand-back-cadences", task_run_name="hand-back-cadences-{now:%Y-%m-%dT%H:%M}", cache_policy=NO_CACHE
)
def hand_back(now: datetime) -> int:
    """Give back to marketing the leads whose 7 attempts ended without success (``flows/scoring.py``)."""
    world = current_world()
    with world.engine.begin() as conn:
        return hand_back_completed(conn, now=now, rules=world.rules, catalog=world.catalog)


def _review_due(world: DemoWorld, day: date) -> bool:
    """Every other Monday once offers have gone out (the deployment reviews daily; each review
    here is a subflow run, and the run ends with a final one)."""
    weeks = (day - world.first_day).days // 7
    return weeks > 0 and weeks % 2 == 0


def _score(world: DemoWorld, now: datetime, report: DayReport) -> None:
    """The ``scoring`` flow's steps: rescore, tell owners of new hot leads, hand cadences back."""
    world.clock.now = now
    rescored = rescore(now)
    report.moves.update({f"{old} -> {new}": n for (old, new), n in rescored.moves.items()})
    if rescored.task_ids:
        notify_owners(now, rescored.task_ids)
    hand_back(now)


def _tick(world: DemoWorld, now: datetime, report: DayReport, *, recover: bool) -> None:
    settings = world.settings
    report.downloads += world.receive_downloads(now)
    while world.waiting_submissions():
        taken = take_in_submissions(now)
        report.statuses.update(taken.statuses)
        world.totals.disqualified.update(taken.disqualified)
        if taken.processed + taken.rejected == 0:
            break
    world.log_sales_attempts(now)
    _apply_events(world, now)
    dispatched = recover_unfinished(settings, now) if recover else DispatchReport()
    for part in range(1, DispatchParams().max_tasks + 1):
        done = dispatch_batches(settings, now, STEPS_PER_TASK, part)
        dispatched.merge(done)
        if done.claimed < STEPS_PER_TASK:
            break
    world.totals.dispatch.merge(dispatched)
    report.sent.update(dispatched.sent)
    world.observe_sends(now)
    world.draw_conversions(now)


def _apply_events(world: DemoWorld, now: datetime) -> None:
    """Store what the market did by ``now``, then the ``process-events`` passes, if anything waits."""
    world.clock.now = now
    world.deliver_reactions(now)
    waiting = select(func.count()).where(EVENTS.c.processed_at.is_(None))
    with world.engine.connect() as conn:
        if not conn.execute(waiting).scalar_one():
            return
    for part in range(1, EventsParams().max_passes + 1):
        if not apply_events(now, part).more:
            break
