"""``spirale preview SEQUENCE``: render every step for a lead into files a browser opens offline.

Exit status: 0 when every step rendered, 1 when a step failed to render (the preview is still
written, with the error in its place) or the sequence is invalid, 2 on a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spirale.commands.inputs import fail, load_sequence_argument, parse_start, read_lead
from spirale.errors import SpiraleError
from spirale.settings import PROJECT_ROOT, get_settings

if TYPE_CHECKING:
    from sequences.preview import Preview

DEFAULT_OUT = PROJECT_ROOT / "var" / "preview"


def register(app: typer.Typer) -> None:
    """Add ``preview`` to the ``spirale`` command line."""
    app.command("preview")(preview_command)


def preview_command(
    sequence: Annotated[
        str, typer.Argument(help="A sequence YAML file, or the name of one in sequences/library/.")
    ],
    lead: Annotated[
        Path | None, typer.Option("--lead", help="A JSON file of lead fields; a sample lead by default.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: var/preview/SEQUENCE).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--start", help="Enrollment instant, ISO 8601; without an offset, lead-local time."),
    ] = None,
) -> None:
    """Render every step for a lead (email HTML/text, SMS segments, notes) with an index in send order."""
    from sequences.catalog import SequenceCatalog
    from sequences.planner import lead_zone
    from sequences.preview import PreviewRequest, build_preview, preview_lead
    from spirale.clock import utcnow

    settings = get_settings()
    fields = read_lead(lead) if lead is not None else None
    loaded = load_sequence_argument(sequence)
    enrolled = parse_start(start, "2026-12-07T09:00") if start else utcnow()
    if enrolled.tzinfo is None:
        enrolled = enrolled.replace(tzinfo=lead_zone(loaded, preview_lead(fields))[0])
    request = PreviewRequest(
        sequence=loaded,
        lead=fields,
        start=enrolled,
        sender={"name": settings.sender_name, "email": settings.sender_email},
        public_url=settings.public_url,
        secret_key=settings.secret_key,
    )
    renderer = SequenceCatalog.open(settings.sequences_dir).renderer
    try:
        preview = build_preview(request, renderer=renderer, out_dir=out or DEFAULT_OUT / loaded.name)
    except SpiraleError as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"cannot write the preview: {exc}", code=1)
    _report(preview)


def _report(preview: Preview) -> None:
    counts: dict[str, int] = {}
    for entry in preview.entries:
        counts[entry.step.channel.value] = counts.get(entry.step.channel.value, 0) + 1
    summary = ", ".join(f"{count} {channel}" for channel, count in counts.items())
    typer.echo(f"{preview.sequence.name}: {len(preview.entries)} messages ({summary})")
    for entry in preview.errors:
        typer.echo(f"error: step {entry.title}: {entry.error}", err=True)
    typer.echo(f"open {preview.index.resolve().as_uri()}")
    if preview.errors:
        raise typer.Exit(1)
