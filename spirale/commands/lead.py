"""``spirale lead show EMAIL`` and ``spirale lead import FILE.csv``.

``show`` explains one lead: status, fit and grade, engagement as it stands now, every ledger row
(and what it still counts for), enrollments, tasks, suppressions. ``import`` loads a CSV file with a
report per rejected row; nothing is half-imported (see ``spirale.lead_import``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
lead_app = typer.Typer(
    name="lead", help="Look at one lead, or import leads and customers.", no_args_is_help=True
)

FormatOption = Annotated[str, typer.Option("--format", help="table or json")]
NowOption = Annotated[str | None, typer.Option(help="ISO-8601 instant to act at (default: the real time)")]


def _instant(now: str | None) -> datetime:
    from spirale.clock import parse_instant, utcnow

    try:
        return parse_instant(now) if now else utcnow()
    except ValueError as exc:
        errors.print(f"[red]error:[/] --now: expected an ISO-8601 instant, got {now!r}", highlight=False)
        raise typer.Exit(2) from exc


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


@lead_app.command("show")
def show(
    email: Annotated[str, typer.Argument(help="the lead's email address")],
    output: FormatOption = "table",
    now: NowOption = None,
) -> None:
    """Show a lead and explain its scores."""
    from models.db import read_only_connection
    from scoring.profile import lead_profile
    from scoring.rules import load_rules, scoring_path
    from spirale import runtime
    from spirale.errors import SpiraleError
    from spirale.settings import get_settings

    instant = _instant(now)
    settings = get_settings()
    try:
        rules = load_rules(scoring_path(settings.sequences_dir))
        with read_only_connection(runtime.database(settings)) as conn:
            profile = lead_profile(conn, email=email, now=instant, rules=rules)
    except (SpiraleError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if profile is None:
        raise _fail(f"no lead with the email {email}")
    if output == "json":
        typer.echo(json.dumps(profile, ensure_ascii=False, indent=2))
        return
    _print_profile(profile)


def _print_profile(profile: dict[str, Any]) -> None:
    status = profile["status"] + (
        f" ({profile['disqualified_reason']})" if profile["disqualified_reason"] else ""
    )
    console.print(f"[bold]{profile['name'] or profile['email']}[/] <{profile['email']}> {profile['company']}")
    console.print(f"status: [bold]{status}[/]   owner: {profile['owner'] or '-'}", highlight=False)
    console.print(
        f"fit: {profile['fit']:g} (grade {profile['grade']})   engagement now: {profile['engagement']:g} "
        f"(half-life {profile['engagement_half_life_days']:g} days)",
        highlight=False,
    )
    if profile["suppressions"]:
        console.print(f"[red]suppressed on: {', '.join(profile['suppressions'])}[/]")
    _table("score ledger", profile["ledger"], ("at", "kind", "rule", "points", "now", "detail"))
    _table(
        "enrollments",
        profile["enrollments"],
        ("sequence_name", "state", "step_index", "next_due_at", "exit_reason"),
    )
    _table("tasks", profile["tasks"], ("id", "kind", "owner", "state", "outcome", "due_at"))


def _table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(table if rows else f"{title}: none")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@lead_app.command("import")
def import_command(
    path: Annotated[
        Path, typer.Argument(help="CSV file: email, first_name, ..., customer_class, last_purchase_at")
    ],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="import the valid rows even when some are rejected")
    ] = False,
    output: FormatOption = "table",
    now: NowOption = None,
) -> None:
    """Import leads and customers from a CSV file; every rejected row is reported with its reasons."""
    from scoring.notify import notify_tasks
    from scoring.rules import load_rules, scoring_path
    from scoring.team import load_team, team_path
    from sequences.catalog import SequenceCatalog
    from spirale import runtime
    from spirale.errors import SpiraleError
    from spirale.lead_import import import_leads, read_csv
    from spirale.settings import get_settings

    instant = _instant(now)
    settings = get_settings()
    try:
        rules = load_rules(scoring_path(settings.sequences_dir))
        team = load_team(team_path(settings.sequences_dir))
        engine = runtime.database(settings)
        rows = read_csv(path)
        report = import_leads(
            engine,
            rows=rows,
            source=f"import:{path.name}",
            now=instant,
            rules=rules,
            catalog=SequenceCatalog.open(settings.sequences_dir),
            team=team,
            skip_invalid=skip_invalid,
        )
        if report.routing.task_ids:
            notify_tasks(
                engine,
                task_ids=report.routing.task_ids,
                now=instant,
                settings=settings,
                rules=rules,
                team=team,
            )
    except SpiraleError as exc:
        raise _fail(str(exc)) from exc
    _print_import(path, report, output)
    if report.rejected and not report.written:
        raise typer.Exit(1)


def _print_import(path: Path, report: Any, output: str) -> None:
    if output == "json":
        summary = {
            "file": str(path),
            "rows": report.rows,
            "imported": report.written,
            "created": report.created,
            "updated": report.updated,
            "rejected": [
                {"line": r.line, "email": r.email, "reasons": list(r.reasons)} for r in report.rejected
            ],
            "disqualified": [{"line": n, "email": e, "reason": why} for n, e, why in report.disqualified],
            "statuses": dict(report.statuses),
            "enrolled": dict(report.routing.enrolled),
        }
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    for reject in report.rejected:
        errors.print(
            f"{path}:{reject.line}: {reject.email or '(no email)'}: {'; '.join(reject.reasons)}",
            highlight=False,
        )
    for line, email, reason in report.disqualified:
        console.print(f"{path}:{line}: {email}: disqualified: {reason}", highlight=False)
    if not report.written:
        errors.print(f"[red]nothing imported:[/] {len(report.rejected)} row(s) to fix (or --skip-invalid)")
        return
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items())) or "none"
    console.print(
        f"imported {report.created + report.updated} of {report.rows} rows ({report.created} new, "
        f"{report.updated} updated; {len(report.rejected)} rejected): {statuses}",
        highlight=False,
    )


def _privacy_aliases() -> None:
    """``spirale lead export`` / ``lead erase``: the GDPR requests, also under ``spirale privacy``."""
    from spirale.commands.privacy import erase_command, export_command

    lead_app.command("export", help="Export all data held about a person, as JSON (GDPR).")(export_command)
    lead_app.command("erase", help="Erase a person's data, keeping only a hashed suppression (GDPR).")(
        erase_command
    )


_privacy_aliases()


def register(app: typer.Typer) -> None:
    """Add ``lead show`` and ``lead import`` to the ``spirale`` command line."""
    app.add_typer(lead_app, name="lead")
