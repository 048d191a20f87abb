"""``spirale demo``: validate and plan the shipped library, then run a nurture sequence over
simulated weeks through the real dispatcher into the local outbox (SQLite, no credentials)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from channels.base import ChannelKind
from channels.local_outbox import LocalOutboxEmail, LocalOutboxSms
from models.db import dispose_engine, make_engine, upgrade
from models.leads import bulk_insert_leads
from sequences.catalog import SequenceCatalog
from sequences.diagnostics import count_errors, count_warnings
from sequences.loader import load_library
from sequences.planner import plan
from sequences.rendering import SAMPLE_LEAD
from sequences.validate import validate_paths
from spirale.demo.leads import demo_leads
from spirale.dispatch import Dispatcher, DispatchReport
from spirale.enrollment import enroll_leads
from spirale.settings import Settings

#: The demo's clock starts on a Monday morning in Paris and moves an hour per tick.
DEMO_START = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class DemoOptions:
    leads: int = 300
    days: int = 30
    sequence: str = "whitepaper-nurture"
    folder: Path = Path("var") / "demo"


class SimulatedClock:
    """The moving clock: the dispatcher gets ``now`` explicitly, the outbox files read it here."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> int:
    """Run the demo; returns the process exit code."""
    diagnostics = validate_paths([settings.sequences_dir], settings.sequences_dir)
    errors, warnings = count_errors(diagnostics), count_warnings(diagnostics)
    console.print(f"[bold]1. validate[/] sequences/: {errors} errors, {warnings} warnings")
    if errors:
        for diagnostic in diagnostics:
            console.print(str(diagnostic))
        return 1
    _plans(settings, console)
    folder = options.folder.resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'spirale.db'}"
    dispose_engine(url)
    upgrade(url)
    engine = make_engine(url)
    console.print(f"[bold]3. database[/] {url} migrated")
    clock = SimulatedClock(DEMO_START)
    outbox = folder / "outbox"
    catalog = SequenceCatalog.open(settings.sequences_dir)
    dispatcher = Dispatcher(
        engine=engine,
        catalog=catalog,
        channels={
            ChannelKind.EMAIL: LocalOutboxEmail(outbox, clock=clock),
            ChannelKind.SMS: LocalOutboxSms(outbox),
        },
        settings=settings.model_copy(update={"outbox_dir": outbox}),
    )
    leads = demo_leads(options.leads, now=DEMO_START)
    with engine.begin() as conn:
        bulk_insert_leads(conn, leads, now=DEMO_START, normalize=False)
        enrolled = enroll_leads(
            conn,
            lead_ids=[lead["id"] for lead in leads],
            sequence=catalog.get(options.sequence),
            version=catalog.version(options.sequence),
            now=DEMO_START,
        )
    console.print(f"[bold]4. enroll[/] {enrolled.enrolled} leads into {options.sequence}")
    total = _simulate(dispatcher, clock, options.days, console)
    _summary(console, total, outbox, options)
    return 0


def _simulate(dispatcher: Dispatcher, clock: SimulatedClock, days: int, console: Console) -> DispatchReport:
    total = DispatchReport()
    end = DEMO_START + timedelta(days=days)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("5. dispatch (simulated hours)", total=days * 24)
        while clock.now < end:
            total.merge(dispatcher.dispatch_due(now=clock.now))
            clock.now += timedelta(hours=1)
            progress.advance(task)
    return total


def _summary(console: Console, report: DispatchReport, outbox: Path, options: DemoOptions) -> None:
    table = Table(title=f"{options.days} simulated days of {options.sequence} for {options.leads} leads")
    table.add_column("outcome")
    table.add_column("detail")
    table.add_column("count", justify="right")
    for row in report.rows():
        if row["count"]:
            table.add_row(str(row["outcome"]), str(row["key"]), str(row["count"]))
    console.print(table)
    emails = len(list((outbox / "email").glob("*.eml"))) if (outbox / "email").exists() else 0
    sms_file = outbox / "sms.jsonl"
    sms = len(sms_file.read_text().splitlines()) if sms_file.exists() else 0
    console.print(f"outbox: {emails} .eml files in {outbox / 'email'}, {sms} SMS lines in {sms_file}")
    console.print(
        f"sent {report.total_sent} messages, each exactly once; deferred {sum(report.deferred.values())}"
    )


def _plans(settings: Settings, console: Console) -> None:
    """The timeline of every shipped sequence for the sample lead (``spirale plan`` shows one in full)."""
    table = Table(title="2. plan: the shipped library for a sample lead enrolled on a Monday 09:00 Paris")
    for column in ("sequence", "steps", "first send", "last send", "moved by a window"):
        table.add_column(column)
    for name, sequence in sorted(load_library(settings.sequences_dir).items()):
        timeline = plan(sequence, SAMPLE_LEAD, DEMO_START, cycles=2)
        sent = [p for p in timeline if not p.skipped]
        table.add_row(
            name,
            str(len(timeline)),
            f"{sent[0].at:%a %d %b %H:%M}" if sent else "-",
            f"{sent[-1].at:%a %d %b %H:%M}" if sent else "-",
            str(sum(1 for p in timeline if p.moved)),
        )
    console.print(table)
