"""``spirale demo``: a whole quarter of marketing automation on the embedded default (SQLite, the
local outbox, a temporary Prefect server), with no credentials and nothing to start by hand.

The run validates the library, builds the synthetic population, imports the CRM base, then plays
the simulated weeks one ``demo-week`` flow run after another with a moving clock, shows a progress
bar per simulated week, runs the final A/B review, prints the summary and writes the report.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy import Engine

from flows.ab_review import ab_review
from flows.dispatch import dispatching_with
from flows.params import ABReviewParams
from scoring.experiments import experiments_in
from scoring.rules import ScoringRules, load_rules, scoring_path
from scoring.team import load_team, team_path
from sequences.catalog import SequenceCatalog
from sequences.diagnostics import count_errors
from sequences.loader import load_library
from sequences.validate import validate_paths
from spirale.demo.behaviour import Market
from spirale.demo.day import DayReport, demo_week
from spirale.demo.orchestration import PrefectApi, database_url
from spirale.demo.population import Population, build_population
from spirale.demo.preparation import (
    demo_settings,
    exported,
    flow_environment,
    import_base,
    midnight,
    open_database,
    prepare_folder,
    resume_day,
)
from spirale.demo.report import write_report
from spirale.demo.results import Results, read_results
from spirale.demo.summary import print_summary
from spirale.demo.world import DemoWorld, SimulatedClock, living_in
from spirale.dispatch import Dispatcher
from spirale.errors import ConfigError, SequenceError
from spirale.settings import Settings

if TYPE_CHECKING:
    from scoring.ab_report import Review

#: The first simulated day: a Monday in January, so the quarter ends with the Easter holidays.
FIRST_DAY = date(2027, 1, 4)
REACTIVATION_EXPERIMENT = "reactivation-offer/offer"


@dataclass(frozen=True)
class DemoOptions:
    """What ``spirale demo`` was asked for."""

    leads: int = 5000
    days: int = 90
    folder: Path = Path("var") / "demo"
    report: Path = Path("var") / "report"
    keep: bool = False
    seed: int = 7


@dataclass
class Run:
    """A run in progress: its world and what the days reported."""

    world: DemoWorld
    first_day: date
    days: int
    total: DayReport = field(init=False)

    def __post_init__(self) -> None:
        self.total = DayReport(self.first_day)


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> Results:
    """Run the demo against the configured Prefect API or a temporary server; returns what it
    produced (the summary is printed and the report written)."""
    began = time.monotonic()
    _validate(settings, console)
    continued = prepare_folder(options.folder, keep=options.keep)
    prefect = PrefectApi(options.folder)
    prefect.start()
    try:
        run = _prepare(settings, options, console, continued=continued)
        with prefect.session(), exported(flow_environment(run.world.settings)):
            _play(run, console)
            review = _final_review(run)
    finally:
        prefect.stop()
    results = _results(run, review, options, prefect)
    report = write_report(results, options.report)
    print_summary(console, results, report=report.parent, elapsed=timedelta(seconds=time.monotonic() - began))
    return results


def _validate(settings: Settings, console: Console) -> None:
    diagnostics = validate_paths([settings.sequences_dir], settings.sequences_dir)
    errors = count_errors(diagnostics)
    if errors:
        for diagnostic in diagnostics:
            console.print(str(diagnostic))
        raise SequenceError(f"{errors} error(s) in {settings.sequences_dir}: fix them before the demo")
    console.print(f"[bold]validate[/] {settings.sequences_dir}: every sequence, template and rule is valid")


def _prepare(settings: Settings, options: DemoOptions, console: Console, *, continued: bool) -> Run:
    """The database, the population and the CRM base: everything before the first day."""
    settings = demo_settings(settings, options.folder)
    engine = open_database(settings)
    first_day = resume_day(engine, FIRST_DAY) if continued else FIRST_DAY
    rules = load_rules(scoring_path(settings.sequences_dir))
    catalog = SequenceCatalog.open(settings.sequences_dir)
    # A continued run gets new people (another seed) arriving over its own days.
    seed = options.seed + (first_day - FIRST_DAY).days
    start = midnight(first_day)
    population = build_population(options.leads, start=start, days=options.days, seed=seed, rules=rules)
    if continued:
        population = Population(downloads=population.downloads)
    else:
        _import_crm(engine, population, settings, now=start, rules=rules, catalog=catalog)
    console.print(
        f"[bold]population[/] {len(population.downloads):,} form downloads to come over {options.days} "
        f"days, {len(population.customers):,} customers and {len(population.dormant):,} dormant "
        "prospects in the CRM" + (f" (continuing {settings.database_url})" if continued else "")
    )
    world = DemoWorld(
        settings=settings,
        engine=engine,
        catalog=catalog,
        rules=rules,
        clock=SimulatedClock(start),
        market=Market(random.Random(seed), measured=_experiment_steps(settings)),
        downloads=deque(population.downloads),
        first_day=first_day,
    )
    return Run(world, first_day, options.days)


def _import_crm(
    engine: Engine,
    population: Population,
    settings: Settings,
    *,
    now: datetime,
    rules: ScoringRules,
    catalog: SequenceCatalog,
) -> None:
    team = load_team(team_path(settings.sequences_dir))
    imported = import_base(engine, population, now=now, rules=rules, catalog=catalog, team=team)
    if not imported.written:
        raise ConfigError(f"the demo's CRM import was refused: {imported.rejected[:3]}")


def _experiment_steps(settings: Settings) -> frozenset[tuple[str, str]]:
    """The first step of every A/B test of the library (sequence, step)."""
    return frozenset(
        (experiment.sequence, experiment.step)
        for sequence in load_library(settings.sequences_dir).values()
        for experiment in experiments_in(sequence)
    )


def _dispatcher(world: DemoWorld) -> Dispatcher:
    """The dispatch tasks' dispatcher, on the world's channels and catalog."""
    return Dispatcher(
        engine=world.engine, catalog=world.catalog, channels=world.channels, settings=world.settings
    )


def _play(run: Run, console: Console) -> None:
    """Every simulated week as one ``demo-week`` flow run, with its progress bar moving each day."""
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=12), MofNCompleteColumn())
    with (
        living_in(run.world),
        dispatching_with(_dispatcher(run.world)),
        Progress(*columns, console=console) as progress,
    ):
        for week_start in range(0, run.days, 7):
            length = min(7, run.days - week_start)
            first = run.first_day + timedelta(days=week_start)
            bar = progress.add_task(_week_label(week_start, first), total=length)
            run.world.on_day = lambda _day, bar=bar: progress.advance(bar)
            week = demo_week(first, length)
            run.total.merge(week)
            progress.update(bar, description=_week_label(week_start, first, week))


def _week_label(index: int, first: date, week: DayReport | None = None) -> str:
    label = f"week {index // 7 + 1:>2} from {first:%d %b}"
    if week is None:
        return label
    hot = week.statuses.get("hot", 0) + sum(n for move, n in week.moves.items() if move.endswith("hot"))
    return (
        f"{label}: {week.downloads:>3} forms {week.sent.get('email', 0):>5} emails "
        f"{week.sent.get('sms', 0):>4} SMS {hot:>3} hot"
    )


def _final_review(run: Run) -> Review | None:
    """The A/B review of the reactivation campaign at the end of the last day (the real flow)."""
    end = midnight(run.first_day + timedelta(days=run.days))
    run.world.clock.now = end
    reviews = ab_review(ABReviewParams(now=end, experiments=[REACTIVATION_EXPERIMENT]))
    return next((r for r in reviews if r.stats.arms and sum(a.n for a in r.stats.arms)), None)


def _results(run: Run, review: Review | None, options: DemoOptions, prefect: PrefectApi) -> Results:
    world = run.world
    extra = {"database_url": world.settings.database_url}
    if prefect.temporary:
        extra["prefect_database"] = database_url(options.folder)
    return read_results(
        world.engine,
        start=run.first_day,
        days=run.days,
        off_target=world.totals.disqualified,
        outcomes=world.totals.outcomes,
        deferred=world.totals.dispatch.deferred,
        blocked=world.totals.dispatch.suppressed,
        review=review,
        outbox_dir=world.settings.outbox_dir,
        refused_calls=world.totals.refused_calls,
        form_errors=world.totals.form_errors,
        extra=extra,
    )
