"""``spirale plan`` through the real command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from spirale.cli import app
from spirale.settings import get_settings

runner = CliRunner()

NURTURE = """\
name: {name}
timezone: Europe/Paris
spacing:
  golden: {first: 1d, ratio: 1.618, max_gap: 14d}
steps:
  - id: welcome
    channel: email
    template: welcome.j2
  - id: reminder
    channel: sms
    text: "Votre guide vous attend. STOP au 36180"
    wait: 1d
  - id: case-study
    channel: email
    template: case-study.j2
"""

PARIS_LEAD = {"id": "lead-1", "email": "camille@example.fr", "country": "FR", "timezone": "Europe/Paris"}


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "library").mkdir()
    monkeypatch.setenv("SPIRALE_SEQUENCES_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path / "library"
    get_settings.cache_clear()


def write_sequence(folder: Path, name: str = "nurture", text: str = NURTURE) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text.replace("{name}", name), encoding="utf-8")
    return path


def write_lead(folder: Path, fields: Any = PARIS_LEAD) -> Path:
    path = folder / "lead.json"
    path.write_text(json.dumps(fields), encoding="utf-8")
    return path


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["plan", *args], env={"COLUMNS": "200"})


def test_json_lists_each_step_with_its_local_time_and_why_it_moved(library: Path, tmp_path: Path) -> None:
    path = write_sequence(library)
    result = invoke(
        str(path), "--start", "2026-12-19T19:30", "--lead", str(write_lead(tmp_path)), "--format", "json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["sequence"] == "nurture"
    assert [{k: s[k] for k in ("step", "channel", "at", "moved", "skipped")} for s in payload["steps"]] == [
        {
            "step": "welcome",
            "channel": "email",
            "at": "2026-12-19T19:30:00+01:00",
            "moved": None,
            "skipped": False,
        },
        {
            "step": "reminder",
            "channel": "sms",
            "at": "2026-12-21T08:00:00+01:00",
            "moved": "Sunday: sms window",
            "skipped": False,
        },
        {
            "step": "case-study",
            "channel": "email",
            "at": "2026-12-22T22:50:00+01:00",
            "moved": None,
            "skipped": False,
        },
    ]
    assert [s["gap"] for s in payload["steps"]] == [None, "1d 12h 30m", "1d 14h 50m"]


def test_table_shows_send_times_gaps_and_reasons(library: Path, tmp_path: Path) -> None:
    write_sequence(library)
    result = invoke("nurture", "--start", "2026-12-19T19:30+01:00", "--lead", str(write_lead(tmp_path)))
    assert result.exit_code == 0, result.output
    reminder = next(line for line in result.stdout.splitlines() if "reminder" in line)
    assert "Mon 2026-12-21 08:00 CET" in reminder
    assert "1d 12h 30m" in reminder
    assert "moved: Sunday: sms window" in reminder
    assert "Europe/Paris" in result.stdout


def test_an_offset_in_start_is_honoured_for_a_lead_elsewhere(library: Path, tmp_path: Path) -> None:
    write_sequence(library)
    lead = write_lead(tmp_path, {"email": "sam@example.com", "timezone": "America/New_York", "country": "US"})
    result = invoke("nurture", "--start", "2026-12-19T13:30:00Z", "--lead", str(lead), "--format", "json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]
    assert steps[0]["at"] == "2026-12-19T08:30:00-05:00"
    assert steps[1]["at"] == "2026-12-21T08:00:00-05:00"


def test_without_a_lead_file_a_sample_lead_is_planned(library: Path) -> None:
    write_sequence(library)
    result = invoke("nurture", "--start", "2026-12-19T19:30+01:00", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [s["step"] for s in json.loads(result.stdout)["steps"]] == ["welcome", "reminder", "case-study"]


def test_cycles_repeat_the_sequence(library: Path, tmp_path: Path) -> None:
    write_sequence(library, text=NURTURE + "repeat: {every: P1M, times: 2}\n")
    result = invoke(
        "nurture",
        "--start",
        "2026-12-19T19:30",
        "--lead",
        str(write_lead(tmp_path)),
        "--cycles",
        "3",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]
    assert [s["cycle"] for s in steps] == [1, 1, 1, 2, 2, 2]
    assert steps[3]["at"] == "2027-01-19T19:30:00+01:00"


@pytest.mark.parametrize("start", ["tomorrow", "2026-13-01T10:00", ""])
def test_a_bad_start_is_a_usage_error(library: Path, tmp_path: Path, start: str) -> None:
    write_sequence(library)
    result = invoke("nurture", "--start", start, "--lead", str(write_lead(tmp_path)))
    assert result.exit_code == 2
    assert "is not an ISO 8601 instant" in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read lead file"), ("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")],
)
def test_an_unreadable_lead_file_is_a_usage_error(
    library: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    write_sequence(library)
    lead = tmp_path / "lead.json"
    if content is not None:
        lead.write_text(content, encoding="utf-8")
    result = invoke("nurture", "--start", "2026-12-19T19:30", "--lead", str(lead))
    assert result.exit_code == 2
    assert message in result.stderr
    assert isinstance(result.exception, SystemExit)


def test_an_unknown_sequence_is_a_usage_error(library: Path) -> None:
    write_sequence(library)
    result = invoke("nurtur", "--start", "2026-12-19T19:30")
    assert result.exit_code == 2
    assert "unknown sequence 'nurtur'" in result.stderr


def test_an_invalid_sequence_prints_its_diagnostics_and_exits_1(library: Path) -> None:
    path = write_sequence(library, text=NURTURE.replace("channel: sms", "channel: pigeon"))
    result = invoke("nurture", "--start", "2026-12-19T19:30")
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:10:")
    assert ": error: " in first
    assert "Traceback" not in result.output
