"""``spirale plan export --out plan.xlsx``: the action plan in Excel, projected from the live database.

Registered by ``spirale/commands/plan.py`` under the ``plan`` group (``spirale plan SEQUENCE`` stays
the timeline of one sequence). Exit status: 0 on success, 1 when the database cannot be used or the
file cannot be written, 2 on a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from spirale.commands.inputs import database_engine, database_errors, fail
from spirale.settings import get_settings

if TYPE_CHECKING:
    from spirale.action_plan import ActionPlan


def export_command(
    out: Annotated[Path, typer.Option("--out", help="The workbook to write (.xlsx).")],
    weeks: Annotated[int, typer.Option("--weeks", min=1, max=520, help="Weeks to plan.")] = 52,
    start: Annotated[
        str | None,
        typer.Option("--start", help="First day of the plan, ISO 8601 (default: now); naive means UTC."),
    ] = None,
) -> None:
    """Write the action plan workbook: sends, owners and budget per week; sales tasks per owner."""
    from models.db import read_only_connection
    from sequences.catalog import SequenceCatalog
    from spirale.action_plan import Costs, build_action_plan
    from spirale.clock import parse_instant, utcnow
    from spirale.plan_workbook import write_workbook

    if out.suffix.lower() != ".xlsx":
        fail(f"--out {out}: the action plan is an Excel workbook, name it *.xlsx")
    try:
        first = parse_instant(start) if start else utcnow()
    except ValueError:
        fail(f"--start {start!r} is not an ISO 8601 date or instant (e.g. 2027-01-04)")
    settings = get_settings()
    costs = Costs(email=settings.cost_email, sms=settings.cost_sms, call=settings.cost_call)
    catalog = SequenceCatalog.open(settings.sequences_dir)
    engine = database_engine()
    with database_errors(), read_only_connection(engine) as conn:
        plan = build_action_plan(conn, catalog=catalog, start=first, weeks=weeks, costs=costs)
    try:
        write_workbook(plan, out, generated_at=utcnow())
    except OSError as exc:
        fail(f"cannot write {out}: {exc}", code=1)
    _report(plan, out)


def _report(plan: ActionPlan, out: Path) -> None:
    console = Console(soft_wrap=True, highlight=False)
    sends = sum(line.counts["email"] + line.counts["sms"] for line in plan.lines)
    tasks = sum(line.open_tasks + sum(line.planned.values()) for line in plan.tasks)
    budget = sum(line.budget(plan.costs) for line in plan.lines)
    console.print(
        f"{plan.weeks} weeks from {plan.first_week:%Y-%m-%d}: {sends} planned sends, {tasks} sales tasks, "
        f"budget {budget:,.2f} €"
    )
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    console.print(f"wrote {out}")
