"""``spirale tasks [--owner NAME]``: a salesperson's open tasks, due first; and
``spirale task done TASK --outcome OUTCOME``: log what happened.

Listing first defers any call that would break the legal limit (4 prospecting calls per person per
30 days, Code de la consommation D223-9), so no unlawful call ever shows as due. Logging
``reached`` or ``meeting`` ends the sales cadence; ``not-interested`` ends it and gives the lead
back to marketing at once.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
task_app = typer.Typer(name="task", help="Log the outcome of a sales task.", no_args_is_help=True)
PARIS = ZoneInfo("Europe/Paris")
NowOption = Annotated[str | None, typer.Option(help="ISO-8601 instant to act at (default: the real time)")]


def _instant(now: str | None) -> datetime:
    from spirale.clock import parse_instant, utcnow

    try:
        return parse_instant(now) if now else utcnow()
    except ValueError as exc:
        errors.print(f"[red]error:[/] --now: expected an ISO-8601 instant, got {now!r}", highlight=False)
        raise typer.Exit(2) from exc


def tasks_command(
    owner: Annotated[str | None, typer.Option(help="only this salesperson's tasks")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    now: NowOption = None,
) -> None:
    """List open sales tasks, the earliest due first."""
    from scoring.call_limit import enforce_call_limit
    from scoring.rules import load_rules, scoring_path
    from scoring.task_list import open_tasks
    from sequences.catalog import SequenceCatalog
    from spirale import runtime
    from spirale.errors import SpiraleError
    from spirale.settings import get_settings

    instant = _instant(now)
    settings = get_settings()
    try:
        rules = load_rules(scoring_path(settings.sequences_dir))
        engine = runtime.database(settings)
        with engine.begin() as conn:
            enforce_call_limit(
                conn, now=instant, rules=rules, catalog=SequenceCatalog.open(settings.sequences_dir)
            )
            tasks = open_tasks(conn, owner=owner)
    except SpiraleError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    if output == "json":
        typer.echo(json.dumps([_plain(task) for task in tasks], ensure_ascii=False, indent=2))
        return
    _print_tasks(tasks, instant, owner)


def _plain(task: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, datetime) else (str(v) if k == "id" else v) for k, v in task.items()
    }


def _print_tasks(tasks: list[dict[str, Any]], now: datetime, owner: str | None) -> None:
    table = Table(title=f"open tasks{f' of {owner}' if owner else ''}", title_justify="left")
    for column in ("task", "due (Paris)", "kind", "owner", "lead", "phone", "email", "step"):
        table.add_column(column)
    for task in tasks:
        due = task["due_at"].astimezone(PARIS).strftime("%a %d/%m %H:%M")
        name = " ".join(p for p in (task["first_name"], task["last_name"]) if p) or "-"
        lead = f"{name} ({task['company']})" if task["company"] else name
        table.add_row(
            str(task["id"])[:8],
            f"[bold]{due}[/]" if task["due_at"] <= now else due,
            task["kind"],
            task["owner"] or "-",
            lead,
            task["phone"] or "-",
            task["email"] or "-",
            f"{task['sequence_name'] or '-'}/{task['step_id'] or '-'}",
        )
    console.print(table if tasks else "no open task")


@task_app.command("done")
def done(
    task: Annotated[
        str, typer.Argument(help="the task id (or its first characters, as `spirale tasks` shows)")
    ],
    outcome: Annotated[
        str, typer.Option(help="reached | no-answer | voicemail | wrong-number | not-interested | meeting")
    ],
    actor: Annotated[
        str | None, typer.Option(help="who made the attempt (default: the task's owner)")
    ] = None,
    now: NowOption = None,
) -> None:
    """Log the outcome of a call, InMail or other sales task."""
    from scoring.cadence import hand_back_completed, record_outcome
    from scoring.rules import load_rules, scoring_path
    from scoring.task_list import TASKS, find_task
    from sequences.catalog import SequenceCatalog
    from spirale import runtime
    from spirale.errors import SpiraleError
    from spirale.settings import get_settings

    instant = _instant(now)
    settings = get_settings()
    try:
        rules = load_rules(scoring_path(settings.sequences_dir))
        engine = runtime.database(settings)
        with engine.begin() as conn:
            task_id = find_task(conn, task)
            who = actor or conn.execute(TASKS.select().where(TASKS.c.id == task_id)).mappings().one()["owner"]
            result = record_outcome(
                conn, task_id=task_id, outcome=outcome, now=instant, actor=who or "unknown", rules=rules
            )
            back = 0
            if result.exit_reason == "not interested":
                back = hand_back_completed(
                    conn, now=instant, rules=rules, catalog=SequenceCatalog.open(settings.sequences_dir)
                )
    except SpiraleError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    if result.already:
        console.print(f"task {task_id} already logged as {result.outcome.value}", highlight=False)
        return
    console.print(f"task {task_id}: {result.outcome.value}", highlight=False)
    if result.cadence_ended:
        console.print(f"the sales cadence ends ({result.exit_reason})", highlight=False)
    if back:
        console.print("the lead goes back to marketing", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``tasks`` and ``task done`` to the ``spirale`` command line."""
    app.command("tasks")(tasks_command)
    app.add_typer(task_app, name="task")
