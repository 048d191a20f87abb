"""``spirale plan``: when each step of a sequence would go out for one lead, and why a time moved."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from sequences.durations import format_duration
from spirale.commands.inputs import fail, load_sequence_argument, parse_start, read_lead
from spirale.errors import SpiraleError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from sequences.planner import PlannedStep
    from sequences.schema import Sequence


class OutputFormat(StrEnum):
    """How ``spirale plan`` prints the timeline."""

    TABLE = "table"
    JSON = "json"


class _TimelineByDefault(TyperGroup):
    """``spirale plan SEQUENCE ...`` runs ``plan timeline``; ``spirale plan export`` is a subcommand."""

    # ``ctx`` is Typer's vendored click Context, which Typer does not export for annotations.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["timeline", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    """Add ``plan`` (a sequence's timeline) and ``plan export`` (the action plan workbook)."""
    from spirale.commands.plan_export import export_command

    group = typer.Typer(
        cls=_TimelineByDefault,
        no_args_is_help=True,
        help="A sequence's timeline (spirale plan SEQUENCE --start ...), or the action plan (plan export).",
    )
    group.command("timeline")(plan_command)
    group.command("export")(export_command)
    app.add_typer(group, name="plan")


def plan_command(
    sequence: Annotated[
        str, typer.Argument(help="A sequence YAML file, or the name of one in sequences/library/.")
    ],
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="Enrollment instant, ISO 8601 (2026-12-19T19:30); without an offset, lead-local time.",
        ),
    ],
    lead: Annotated[
        Path | None, typer.Option("--lead", help="A JSON file of lead fields; a sample lead by default.")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="table or json.")
    ] = OutputFormat.TABLE,
    cycles: Annotated[
        int, typer.Option("--cycles", min=1, help="Repeat cycles to show (needs repeat:).")
    ] = 1,
) -> None:
    """Show when each step would go out for a lead: local send time, gap, and why a time moved."""
    # Imported here so other commands do not pay for the holiday and phone-number tables.
    from sequences.planner import lead_zone, plan

    lead_fields = read_lead(lead) if lead is not None else dict(_sample_lead())
    enrolled = parse_start(start)
    loaded = load_sequence_argument(sequence)
    tz, country = lead_zone(loaded, lead_fields)
    if enrolled.tzinfo is None:
        enrolled = enrolled.replace(tzinfo=tz)
    try:
        timeline = plan(loaded, lead_fields, enrolled, cycles=cycles)
    except SpiraleError as exc:
        fail(str(exc), code=1)
    if output_format is OutputFormat.JSON:
        typer.echo(json.dumps(_as_json(loaded, timeline), ensure_ascii=False, indent=2))
    else:
        Console().print(_as_table(loaded, timeline, tz, country, show_cycles=cycles > 1))


def _sample_lead() -> dict[str, Any]:
    from sequences.rendering import SAMPLE_LEAD

    return dict(SAMPLE_LEAD)


def _as_json(sequence: Sequence, timeline: list[PlannedStep]) -> dict[str, Any]:
    return {
        "sequence": sequence.name,
        "steps": [
            {
                "step": planned.step_id,
                "channel": planned.channel.value,
                "at": planned.at.isoformat(),
                "moved": planned.moved,
                "skipped": planned.skipped,
                "gap": None if planned.gap is None else format_duration(planned.gap),
                "cycle": planned.cycle,
                "variants": list(planned.variant_ids),
            }
            for planned in timeline
        ],
    }


def _as_table(
    sequence: Sequence, timeline: list[PlannedStep], tz: ZoneInfo, country: str, *, show_cycles: bool
) -> Table:
    table = Table(title=f"{sequence.name}: send times in {tz.key} (public holidays: {country})")
    if show_cycles:
        table.add_column("cycle", justify="right")
    for column in ("step", "channel", "local send time", "gap", "note"):
        table.add_column(column, no_wrap=column != "note")
    for planned in timeline:
        cells = [
            planned.step_id,
            planned.channel.value,
            f"{planned.at:%a %Y-%m-%d %H:%M %Z}",
            "-" if planned.gap is None else format_duration(planned.gap),
            _note(planned),
        ]
        table.add_row(*([str(planned.cycle)] if show_cycles else []), *(Text(cell) for cell in cells))
    return table


def _note(planned: PlannedStep) -> str:
    if planned.skipped:
        return "skipped: condition is false (next gap counts from this due time)"
    notes = [f"moved: {planned.moved}"] if planned.moved else []
    if planned.variant_ids:
        notes.append("A/B: " + ", ".join(planned.variant_ids))
    return "; ".join(notes)
