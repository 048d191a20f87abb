"""``spirale validate [PATH ...]``: check sequence files fully and print every problem.

One line per problem, ``FILE:LINE:COL: error: MESSAGE`` (or ``warning``), sorted by file and line, then a
one-line summary. Exit status: 0 when there is no error, 1 when there is one, 2 on a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from spirale.settings import get_settings

USAGE_ERROR = 2


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the ``spirale`` command line."""
    app.command("validate")(validate_command)


def validate_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Sequence files or directories (default: the sequences directory's library/)."),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option("--templates", help="Templates directory (default: templates/ beside the sequences)."),
    ] = None,
) -> None:
    """Validate sequences: schema, templates, conditions, opt-out mentions and SMS length."""
    from sequences.diagnostics import count_errors, count_warnings
    from sequences.validate import sequence_files, validate_files

    settings = get_settings()
    missing = [p for p in [*(paths or []), *([templates] if templates else [])] if not p.exists()]
    if missing:
        typer.echo(f"error: no such file or directory: {', '.join(str(p) for p in missing)}", err=True)
        raise typer.Exit(USAGE_ERROR)
    files = [
        (_shown(path), templates or templates_dir)
        for path, templates_dir in sequence_files(list(paths or []), settings.sequences_dir)
    ]
    diagnostics = validate_files(files)
    for diagnostic in diagnostics:
        typer.echo(str(diagnostic))
    errors, warnings = count_errors(diagnostics), count_warnings(diagnostics)
    summary = f"{_plural(len(files), 'file')}, {_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    style = "bold red" if errors else ("yellow" if warnings else "green")
    Console(soft_wrap=True).print(summary, style=style, highlight=False)
    if errors:
        raise typer.Exit(1)


def _shown(path: Path) -> Path:
    """The path as the user reads it best: relative to the working directory when it is below it."""
    cwd = Path.cwd()
    return path.relative_to(cwd) if path.is_absolute() and path.is_relative_to(cwd) else path


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
