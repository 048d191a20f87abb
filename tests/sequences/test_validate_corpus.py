"""The broken-sequence corpus: each ``tests/sequences/broken/NAME.yaml`` has a sibling ``NAME.expected``
pinning the exact lines ``spirale validate`` prints for it (file name, line, column, severity, message),
like pre-commit's tests pin their messages. Also the CLI itself: exit codes, output, summary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sequences.diagnostics import Diagnostic
from sequences.validate import validate_paths, validate_sequence_file
from spirale.cli import app

BROKEN = Path(__file__).parent / "broken"
TEMPLATES = BROKEN / "templates"
LIBRARY_SEQUENCES = Path(__file__).resolve().parents[2] / "sequences"


def _expected(name: str) -> list[str]:
    """The pinned output of ``broken/NAME.yaml``: ``broken/NAME.expected``, one line per diagnostic."""
    return (BROKEN / f"{name}.expected").read_text(encoding="utf-8").splitlines()


CORPUS = sorted(p.stem for p in BROKEN.glob("*.yaml"))


def _lines(diagnostics: list[Diagnostic]) -> list[str]:
    return [f"{Path(d.file).name}:{d.line}:{d.col}: {d.severity}: {d.message}" for d in diagnostics]


def test_the_corpus_is_complete() -> None:
    assert len(CORPUS) >= 35
    assert sorted(p.stem for p in BROKEN.glob("*.expected")) == CORPUS


@pytest.mark.parametrize("name", CORPUS)
def test_broken_file_reports_exactly(name: str) -> None:
    expected = _expected(name)
    assert expected, "every corpus file is broken in some way"
    diagnostics = validate_sequence_file(BROKEN / f"{name}.yaml", TEMPLATES)
    assert _lines(diagnostics) == expected


def test_diagnostics_name_the_file_as_given() -> None:
    path = BROKEN / "06-unknown-channel.yaml"
    (diagnostic,) = validate_sequence_file(path, TEMPLATES)
    assert diagnostic.file == str(path)
    assert str(diagnostic) == f"{path}:8:14: error: {diagnostic.message}"


def test_validate_paths_uses_templates_beside_the_files_and_sorts() -> None:
    paths = [BROKEN / "23-sms-without-stop.yaml", BROKEN / "18-undefined-variable.yaml"]
    diagnostics = validate_paths(paths, LIBRARY_SEQUENCES)
    assert _lines(diagnostics) == _expected("18-undefined-variable") + _expected("23-sms-without-stop")


# --- the command line -----------------------------------------------------------------------------

runner = CliRunner()


def _copy_sequences(tmp_path: Path, *names: str) -> Path:
    """A sequences directory (library/ + templates/) holding some corpus files."""
    root = tmp_path / "seqs"
    shutil.copytree(TEMPLATES, root / "templates")
    (root / "library").mkdir()
    for name in names:
        shutil.copy(BROKEN / f"{name}.yaml", root / "library" / f"{name}.yaml")
    return root


def _valid(name: str) -> str:
    return (
        f"name: {name}\n"
        "steps:\n"
        "  - id: welcome\n"
        "    channel: email\n"
        "    template: welcome\n"
        '    subject: "Bonjour {{ lead.first_name }}"\n'
    )


def test_cli_exit_0_on_a_clean_directory(tmp_path: Path) -> None:
    root = _copy_sequences(tmp_path)
    (root / "library" / "welcome.yaml").write_text(_valid("welcome"), encoding="utf-8")
    (root / "forms.yaml").write_text("forms: {livre-blanc: {sequence: welcome}}\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 0, result.output
    # The sequence and forms.yaml beside the library (checked by its own validator).
    assert result.output.splitlines() == ["2 files, 0 errors, 0 warnings"]


def test_cli_exit_0_with_warnings_only(tmp_path: Path) -> None:
    root = _copy_sequences(tmp_path, "25-sms-two-segments")
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 0
    path = root / "library" / "25-sms-two-segments.yaml"
    assert result.output.splitlines() == [
        f"{path}:5:11: warning: sms 'check-in' is 2 segments (GSM-7, 166 characters)",
        "1 file, 0 errors, 1 warning",
    ]


def test_cli_exit_1_prints_every_problem_sorted_by_file(tmp_path: Path) -> None:
    root = _copy_sequences(tmp_path, "33-bad-exit-when", "06-unknown-channel", "25-sms-two-segments")
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    library = root / "library"
    expected = [
        f"{library}/{line}"
        for name in ("06-unknown-channel", "25-sms-two-segments", "33-bad-exit-when")
        for line in _expected(name)
    ]
    assert lines == [*expected, "3 files, 3 errors, 1 warning"]


def test_cli_on_files_reports_duplicate_names(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "welcome.yaml").write_text(_valid("welcome"), encoding="utf-8")
    first, second = tmp_path / "a" / "welcome.yaml", tmp_path / "b" / "welcome.yaml"
    result = runner.invoke(app, ["validate", str(first), str(second), "--templates", str(TEMPLATES)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{second}:1:7: error: duplicate sequence name 'welcome' (also in {first})",
        "2 files, 1 error, 0 warnings",
    ]


def test_cli_relative_paths_stay_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy_sequences(tmp_path, "06-unknown-channel")
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["validate", "library/06-unknown-channel.yaml"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"library/{_expected('06-unknown-channel')[0]}"


def test_cli_exit_2_on_a_missing_path(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_cli_default_is_the_shipped_library() -> None:
    result = runner.invoke(app, ["validate"])
    summary = result.output.splitlines()[-1]
    sequences = len(list((LIBRARY_SEQUENCES / "library").glob("*.yaml")))
    configs = sum((LIBRARY_SEQUENCES / name).exists() for name in ("forms.yaml", "scoring.yaml", "team.yaml"))
    assert summary.startswith(f"{sequences + configs} files, ")
    assert result.exit_code == (0 if ", 0 errors, " in summary else 1)


def test_cli_reports_configuration_files_with_their_own_validators(tmp_path: Path) -> None:
    forms = tmp_path / "forms.yaml"
    forms.write_text("forms:\n  x: {sequence: whitepaper-nurture, sorce: web}\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(forms)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{forms}:2:37: error: unknown key 'sorce' in forms.x (did you mean 'source'?)",
        "1 file, 1 error, 0 warnings",
    ]
