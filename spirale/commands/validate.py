"""``spirale validate [PATH ...]``: check sequence files fully and print every problem.

One line per problem, ``FILE:LINE:COL: error: MESSAGE`` (or ``warning``), sorted by file and line, then a
one-line summary. Exit status: 0 when there is no error, 1 when there is one, 2 on a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from spirale.settings import get_settings

if TYPE_CHECKING:
    from sequences.diagnostics import Diagnostic

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
    from sequences.diagnostics import count_errors, count_warnings, sort_diagnostics
    from sequences.validate import sequence_files, validate_files

    settings = get_settings()
    missing = [p for p in [*(paths or []), *([templates] if templates else [])] if not p.exists()]
    if missing:
        typer.echo(f"error: no such file or directory: {', '.join(str(p) for p in missing)}", err=True)
        raise typer.Exit(USAGE_ERROR)
    configs, sequence_paths = _split_config_files(list(paths or []), settings.sequences_dir)
    files = [
        (_shown(path), templates or templates_dir)
        for path, templates_dir in sequence_files(sequence_paths, settings.sequences_dir)
        if path.name not in CONFIG_FILES and (sequence_paths or not paths)
    ]
    diagnostics = sort_diagnostics(validate_files(files) + _validate_configs(configs))
    files += [(path, path) for path in configs]
    for diagnostic in diagnostics:
        typer.echo(str(diagnostic))
    errors, warnings = count_errors(diagnostics), count_warnings(diagnostics)
    summary = f"{_plural(len(files), 'file')}, {_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    style = "bold red" if errors else ("yellow" if warnings else "green")
    Console(soft_wrap=True).print(summary, style=style, highlight=False)
    if errors:
        raise typer.Exit(1)


#: Configuration files beside the library, each with its own validator.
CONFIG_FILES = ("forms.yaml", "scoring.yaml", "team.yaml")


def _split_config_files(paths: list[Path], sequences_dir: Path) -> tuple[list[Path], list[Path]]:
    """The configuration files to check (all of them by default) and the sequence paths."""
    if not paths:
        return [_shown(sequences_dir / name) for name in CONFIG_FILES if (sequences_dir / name).exists()], []
    configs = [p for p in paths if p.is_file() and p.name in CONFIG_FILES]
    for directory in (p for p in paths if p.is_dir()):
        configs += [_shown(directory / name) for name in CONFIG_FILES if (directory / name).exists()]
    return configs, [p for p in paths if p not in configs]


def _validate_configs(paths: list[Path]) -> list[Diagnostic]:
    from scoring.rules import validate_scoring_file
    from scoring.team import validate_team_file
    from sequences.forms import validate_forms_file

    validators = {"forms.yaml": validate_forms_file, "scoring.yaml": validate_scoring_file}
    validators["team.yaml"] = validate_team_file
    return [problem for path in paths for problem in validators[path.name](path)]


def _shown(path: Path) -> Path:
    """The path as the user reads it best: relative to the working directory when it is below it."""
    cwd = Path.cwd()
    return path.relative_to(cwd) if path.is_absolute() and path.is_relative_to(cwd) else path


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
