"""``spirale ab``: review an A/B experiment, compute its statistics from counts, promote a winner.

An EXPERIMENT is ``sequence/step`` (the step whose variants are tested), or ``sequence`` alone when
it runs one experiment (``reactivation-offer``: its reminders share the offer's arms).
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from scoring.ab_stats import ExperimentStats

console = Console()
errors = Console(stderr=True)
ab_app = typer.Typer(
    name="ab", help="Review A/B experiments and promote their winners.", no_args_is_help=True
)


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    HTML = "html"


class StatsFormat(StrEnum):
    JSON = "json"
    TABLE = "table"


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _instant(now: str | None) -> datetime:
    from spirale.clock import parse_instant, utcnow

    try:
        return parse_instant(now) if now else utcnow()
    except ValueError as exc:
        raise _fail(f"--now: expected an ISO-8601 instant, got {now!r}", 2) from exc


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    out.write_text(text, encoding="utf-8")
    console.print(f"wrote {out}")


@ab_app.command("report")
def report(
    experiment: Annotated[str, typer.Argument(help="sequence/step, or sequence when it has one experiment")],
    format: Annotated[
        ReportFormat, typer.Option("--format", help="table, json or html")
    ] = ReportFormat.TABLE,
    metric: Annotated[
        str, typer.Option(help="conversions, clicks, opens, replies, meetings, delivered or sent")
    ] = "conversions",
    out: Annotated[Path | None, typer.Option(help="write the report to this file")] = None,
    window_days: Annotated[int, typer.Option(min=1, help="attribution window after the send, in days")] = 30,
    mde: Annotated[
        float | None, typer.Option(help="minimum detectable effect, absolute (0.01 = 1 point)")
    ] = None,
    now: Annotated[str | None, typer.Option(help="ISO-8601 instant to review at (default: now)")] = None,
) -> None:
    """Which offer won, by how much, and how sure we are."""
    from datetime import timedelta

    from scoring.ab_report import build_review, render_table
    from sequences.catalog import SequenceCatalog
    from spirale import runtime
    from spirale.errors import SpiraleError
    from spirale.settings import get_settings

    settings = get_settings()
    instant = _instant(now)
    try:
        review = build_review(
            runtime.database(settings),
            experiment=experiment,
            now=instant,
            metric=metric,
            catalog=SequenceCatalog.open(settings.sequences_dir),
            window=timedelta(days=window_days),
            mde=mde,
        )
    except (SpiraleError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if format is ReportFormat.JSON:
        _emit(review.to_json(), out)
    elif format is ReportFormat.HTML:
        _emit(review.html(), out)
    else:
        _emit(render_table(review), out)


@ab_app.command("stats")
def stats(
    counts: Annotated[
        Path, typer.Option("--counts", help='JSON file of {"arm": {"n": ..., "conversions": ...}}')
    ],
    format: Annotated[StatsFormat, typer.Option("--format", help="json or table")] = StatsFormat.JSON,
    mde: Annotated[
        float | None, typer.Option(help="minimum detectable effect, absolute (0.01 = 1 point)")
    ] = None,
) -> None:
    """The review's statistics from counts given directly (the arm named "holdout" is the control)."""
    from scoring.ab_stats import CountsError, analyze, parse_counts

    try:
        data = json.loads(counts.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read {counts}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise _fail(f"{counts}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    try:
        result = analyze(parse_counts(data), mde=mde)
    except CountsError as exc:
        raise _fail(f"{counts}: {exc}") from exc
    if format is StatsFormat.JSON:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
        return
    _print_stats_table(result)


def _print_stats_table(result: ExperimentStats) -> None:
    from rich.table import Table

    from scoring.ab_report import format_arm

    table = Table()
    rows = [
        {"arm": arm.id, "n": arm.n, "conversions": arm.conversions, **format_arm(arm)} for arm in result.arms
    ]
    for key in rows[0]:
        table.add_column(key, justify="left" if key == "arm" else "right")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)
    console.print(f"Sample guard: {result.guard.message}", highlight=False)
    console.print(f"Recommendation: {result.recommendation}", highlight=False)


@ab_app.command("promote")
def promote(
    experiment: Annotated[str, typer.Argument(help="sequence/step, or sequence when it has one experiment")],
    variant: Annotated[str, typer.Argument(help="the variant new leads go to")],
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the promotion history)")],
    drop_holdout: Annotated[
        bool, typer.Option("--drop-holdout", help="send to the holdout's share too")
    ] = False,
    actor: Annotated[str | None, typer.Option(help="who decides (default: the current user)")] = None,
    now: Annotated[str | None, typer.Option(help="ISO-8601 instant of the decision (default: now)")] = None,
) -> None:
    """Send future assignments of EXPERIMENT to VARIANT (leads already assigned keep their arm)."""
    from scoring.experiments import resolve_experiment
    from scoring.promotion import promote as record_promotion
    from sequences.catalog import SequenceCatalog
    from sequences.variants import HOLDOUT
    from spirale import runtime
    from spirale.errors import SpiraleError
    from spirale.settings import get_settings

    settings = get_settings()
    instant = _instant(now)
    try:
        found = resolve_experiment(experiment, SequenceCatalog.open(settings.sequences_dir))
        with runtime.database(settings).begin() as conn:
            record = record_promotion(
                conn,
                sequence=found.sequence,
                step=found.step,
                variant=variant,
                keep_holdout=not drop_holdout,
                actor=actor or getpass.getuser(),
                reason=reason,
                now=instant,
                arms=[arm for arm in found.arms if arm != HOLDOUT],
            )
    except SpiraleError as exc:
        raise _fail(str(exc)) from exc
    holdout = "kept" if record.keep_holdout else "dropped: every new lead gets the offer"
    console.print(
        f"promoted {record.variant!r} in {found.name} (by {record.actor}); holdout {holdout}. "
        "Leads already assigned keep their arm.",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(ab_app, name="ab")
