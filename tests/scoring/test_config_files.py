"""``scoring.yaml`` and ``team.yaml`` as marketers write them: the shipped files are valid, and every
mistake is reported at its FILE:LINE:COL in words a marketer understands."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scoring.rules import load_rules, validate_scoring_file
from scoring.team import Team, departement_of, load_team, validate_team_file
from spirale.errors import ConfigError
from tests.scoring.helpers import SEQUENCES_DIR

SHIPPED = (SEQUENCES_DIR / "scoring.yaml").read_text(encoding="utf-8")


def test_the_shipped_files_are_valid() -> None:
    assert validate_scoring_file(SEQUENCES_DIR / "scoring.yaml") == []
    assert validate_team_file(SEQUENCES_DIR / "team.yaml") == []
    rules = load_rules(SEQUENCES_DIR / "scoring.yaml")
    assert rules.engagement.points["click"] == 5 and rules.engagement.half_life.days == 30
    assert rules.routing.exclusive_sequences() >= {"sales-cadence", "whitepaper-nurture", "incubator"}


@pytest.fixture
def sequences(tmp_path: Path) -> Path:
    """A sequences directory with the shipped library, to write broken rules beside it."""
    shutil.copytree(SEQUENCES_DIR / "library", tmp_path / "library")
    return tmp_path


def messages(path: Path) -> list[str]:
    return [str(d).replace(str(path), "scoring.yaml") for d in validate_scoring_file(path)]


MINIMAL = """\
fit:
  grades: {A: 50, B: 30, C: 15}
engagement:
  half_life: 30d
  points: {click: 5}
thresholds:
  A: {hot: 30, warm: 0}
  B: {hot: 45, warm: 10}
  C: {warm: 20}
  D: {}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("  half_life: 30d", "  half_lfe: 30d"),
            ["scoring.yaml:4:3: error: unknown key 'half_lfe' in engagement (did you mean 'half_life'?)"],
        ),
        (
            MINIMAL.replace("{click: 5}", "{clik: 5}"),
            [
                "scoring.yaml:5:12: error: engagement.points.clik: unknown event type 'clik' (did you mean "
                "'click'?): expected one of bounce, click, "
            ],
        ),
        (
            MINIMAL.replace("  D: {}\n", ""),
            ["scoring.yaml:6:1: error: thresholds: thresholds needs every grade; missing D"],
        ),
        (
            MINIMAL.replace("A: {hot: 30, warm: 0}", "A: {hot: 5, warm: 10}"),
            ["scoring.yaml:7:3: error: thresholds.A: the hot threshold must be at least the warm one"],
        ),
        (
            MINIMAL.replace("grades: {A: 50, B: 30, C: 15}", "grades: {A: 50, B: 60, C: 15}"),
            ["scoring.yaml:2:3: error: fit.grades: grades must decrease: A > B > C"],
        ),
        (
            MINIMAL + "routing: {warm: whitepaper-nuture}\n",
            ["scoring.yaml:11:17: error: unknown sequence 'whitepaper-nuture': expected one of "],
        ),
        (
            MINIMAL + "cadence: {attempts: 5}\n",
            [
                "scoring.yaml:11:21: warning: cadence.attempts is 5 but sales-cadence has 7 steps "
                "(one attempt per step)"
            ],
        ),
        (
            MINIMAL + "fit:\n  grades: {A: 1, B: 0, C: -1}\n",
            ["scoring.yaml:11:1: error: duplicate key 'fit' (first defined at line 1; remove one)"],
        ),
        (
            MINIMAL.replace("half_life: 30d", "half_life: 30"),
            ["scoring.yaml:4:14: error: engagement.half_life: "],
        ),
        ("fit: [\n", ["scoring.yaml:2:1: error: YAML syntax error: "]),
    ],
)
def test_mistakes_are_reported_where_they_are(sequences: Path, text: str, expected: list[str]) -> None:
    path = sequences / "scoring.yaml"
    path.write_text(text, encoding="utf-8")
    found = messages(path)
    assert len(found) == len(expected), found
    for message, start in zip(found, expected, strict=True):
        assert message.startswith(start), message


def test_load_rules_refuses_a_broken_file_with_every_problem(sequences: Path) -> None:
    path = sequences / "scoring.yaml"
    path.write_text(MINIMAL.replace("{click: 5}", "{clik: 5}").replace("  D: {}\n", ""), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert "unknown event type 'clik'" in str(caught.value) and "missing D" in str(caught.value)


TEAM = """\
salespeople:
  - name: alice
    email: alice@spirale.example
    phone: "06 12 34 56 01"
    territories: {departements: ["75", "2A", "971"]}
  - name: bruno
    territories: {countries: [BE]}
"""


def test_a_team_file_normalizes_addresses(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(TEAM, encoding="utf-8")
    team = load_team(path)
    alice = team.get("alice")
    assert alice is not None and alice.phone == "+33612345601"
    assert alice.territories.departements == ("75", "2A", "971")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TEAM.replace('"2A"', '"2C"'),
            "team.yaml:5:40: error: salespeople[0].territories.departements[1]: expected a département",
        ),
        (
            TEAM.replace("bruno", "alice"),
            "team.yaml:1:1: error: salespeople: salesperson 'alice' is listed twice",
        ),
        (
            TEAM.replace('"06 12 34 56 01"', '"12"'),
            "team.yaml:4:12: error: salespeople[0].phone: invalid phone number",
        ),
        (
            TEAM.replace("  - name: bruno", "  - nme: bruno"),
            "team.yaml:6:5: error: unknown key 'nme' in salespeople[1]",
        ),
    ],
)
def test_team_mistakes_are_reported_where_they_are(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(text, encoding="utf-8")
    found = [str(d).replace(str(path), "team.yaml") for d in validate_team_file(path)]
    assert found and found[0].startswith(expected), found


@pytest.mark.parametrize(
    ("postcode", "country", "departement"),
    [
        ("69003", "FR", "69"),
        ("75 001", "FR", "75"),
        ("01000", "FR", "01"),
        ("20090", "FR", "2A"),  # Ajaccio
        ("20200", "FR", "2B"),  # Bastia
        ("97411", "FR", "974"),  # La Réunion
        (69003, "FR", "69"),
        ("1000", "BE", None),
        ("ABCDE", "FR", None),
        (None, "FR", None),
    ],
)
def test_departement_from_postcode(postcode: object, country: str, departement: str | None) -> None:
    assert departement_of(postcode, country) == departement


def test_candidates_prefer_the_departement_then_the_country_then_everyone() -> None:
    team = load_team(SEQUENCES_DIR / "team.yaml")
    assert [p.name for p in team.candidates("FR", "69")] == ["bruno"]
    assert [p.name for p in team.candidates("BE", None)] == ["chloe"]
    assert [p.name for p in team.candidates("FR", "29")] == ["alice", "bruno", "chloe"]
    assert isinstance(team, Team)
