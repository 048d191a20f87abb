"""The demo's synthetic people: deterministic, and off-target exactly as ``scoring.yaml`` says."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from scoring.qualification import qualify
from scoring.rules import ScoringRules, load_rules, scoring_path
from spirale.api.forms import validate_submission
from spirale.demo.population import REAL, build_population
from spirale.lead_input import parse_lead_input
from spirale.settings import Settings

START = datetime(2027, 1, 3, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> ScoringRules:
    return load_rules(scoring_path(Settings().sequences_dir))


def test_the_same_seed_gives_the_same_people(rules: ScoringRules) -> None:
    first = build_population(400, start=START, days=30, seed=3, rules=rules)
    again = build_population(400, start=START, days=30, seed=3, rules=rules)
    other = build_population(400, start=START, days=30, seed=4, rules=rules)
    emails = [d.fields["email"] for d in first.downloads]
    assert emails == [d.fields["email"] for d in again.downloads]
    assert emails != [d.fields["email"] for d in other.downloads]
    assert first.customers == again.customers


def test_about_nine_in_ten_downloaders_are_off_target(rules: ScoringRules) -> None:
    population = build_population(3000, start=START, days=90, seed=7, rules=rules)
    assert 2900 <= population.size <= 3000
    kinds = Counter(d.kind for d in population.downloads if d.form_id != "demande-rappel")
    assert 0.85 <= 1 - kinds[REAL] / sum(kinds.values()) <= 0.95
    assert {"competitor", "student", "consultant", "foreigner", "disposable address"} <= set(kinds)
    assert all(START <= d.at < START + timedelta(days=90) for d in population.downloads)
    classes = Counter(row["customer_class"] for row in population.customers)
    assert set(classes) == {"A", "B", "C"}
    assert any(row["status"] == "former_customer" for row in population.customers)


def test_the_intake_rules_disqualify_exactly_the_off_target_downloads(rules: ScoringRules) -> None:
    population = build_population(800, start=START, days=30, seed=5, rules=rules)
    for download in population.downloads:
        submission = validate_submission(download.fields)  # the API accepts every form
        lead = parse_lead_input({**submission.lead, "email": submission.email})
        verdict = qualify(lead.as_lead(), rules)
        assert verdict.disqualified == (download.kind != REAL), (download.kind, download.fields, verdict)
