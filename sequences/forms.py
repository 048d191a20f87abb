"""Web forms: which sequence a form download starts (``sequences/forms.yaml``).

::

    forms:
      livre-blanc: {sequence: whitepaper-nurture, description: "Livre blanc", source: whitepaper}

``source`` records where the lead came from (scoring, reports); it defaults to the form id.
``validate_forms_file`` reports every problem at its ``FILE:LINE:COL`` for ``spirale validate``;
``load_forms`` returns the forms or raises ``ConfigError`` listing them.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from scoring.source import LoadedFile, load_model
from sequences.diagnostics import Diagnostic, count_errors, sort_diagnostics
from sequences.loader import library_files
from spirale.errors import ConfigError

FORM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class FormSpec(BaseModel):
    """One web form: the sequence it enrolls into."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequence: str
    description: str = ""
    source: str | None = None


class FormsFile(BaseModel):
    """The whole ``forms.yaml`` document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    forms: dict[str, FormSpec]


def forms_path(sequences_dir: Path) -> Path:
    """Where the forms of a sequences directory are declared."""
    return sequences_dir / "forms.yaml"


def _parse(path: Path) -> LoadedFile[FormsFile]:
    loaded = load_model(path, FormsFile, what="the forms file")
    if loaded.model is not None:
        available = sorted(p.stem for p in library_files(path.parent))
        for form_id, form in loaded.model.forms.items():
            if not FORM_ID.match(form_id):
                message = f"form id {form_id!r} must be lowercase letters, digits, '-' or '_'"
                loaded.diagnostics.append(loaded.at(("forms", form_id), message, at_key=True))
            if form.sequence not in available:
                choices = ", ".join(available) or "none in library/"
                message = f"unknown sequence {form.sequence!r}: expected one of {choices}"
                loaded.diagnostics.append(loaded.at(("forms", form_id, "sequence"), message))
        loaded.diagnostics = sort_diagnostics(loaded.diagnostics)
    return loaded


def validate_forms_file(path: Path) -> list[Diagnostic]:
    """Every problem of a forms file (empty when valid)."""
    return _parse(path).diagnostics


def load_forms(path: Path) -> dict[str, FormSpec]:
    """The forms declared in ``path``; raises ``ConfigError`` naming every problem."""
    loaded = _parse(path)
    if loaded.model is None or count_errors(loaded.diagnostics):
        lines = "\n".join(str(d) for d in loaded.diagnostics if d.is_error)
        raise ConfigError(f"{path} is not a valid forms file:\n{lines}")
    return dict(loaded.model.forms)
