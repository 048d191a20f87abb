"""The ``spirale`` command line. Each command lives in ``spirale/commands/<name>.py`` and exposes
``register(app)``; heavy imports (Prefect, the database) happen inside the commands, so
``spirale validate`` stays fast."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import spirale.commands

app = typer.Typer(
    name="spirale",
    help="Spirale: nurture sequences as files you can validate, simulate and test.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(spirale.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"spirale.commands.{module_info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()
