"""Qualification and fit as tables: each row a lead, the verdict and its reason."""

from __future__ import annotations

from typing import Any

import pytest

from scoring.fit import compute_fit, fit_changes
from scoring.qualification import qualify
from scoring.rules import ScoringRules, load_rules, scoring_path
from tests.scoring.helpers import SEQUENCES_DIR


@pytest.fixture(scope="module")
def rules() -> ScoringRules:
    return load_rules(scoring_path(SEQUENCES_DIR))


def lead(email: str, job_title: str = "", country: str = "FR", **attributes: Any) -> dict[str, Any]:
    return {"email": email, "job_title": job_title, "country": country, "attributes": attributes}


@pytest.mark.parametrize(
    ("email", "job_title", "country", "rule", "reason"),
    [
        ("veille@hubspot.com", "Directeur marketing", "FR", "competitors", "competitor domain hubspot.com"),
        ("a.b@fr.salesforce.com", "", "FR", "competitors", "competitor domain fr.salesforce.com"),
        ("jdoe@mit.edu", "", "FR", "academic", "student/academic domain mit.edu (*.edu)"),
        ("l.petit@univ-lyon2.fr", "", "FR", "academic", "student/academic domain univ-lyon2.fr (univ-*.fr)"),
        (
            "m.roux@etudiant.ecole.fr",
            "",
            "FR",
            "academic",
            "student/academic domain etudiant.ecole.fr (etudiant.*)",
        ),
        ("x@yopmail.com", "Gérant", "FR", "disposable", "disposable address domain yopmail.com"),
        (
            "sophie@cabinet-conseil.fr",
            "Consultante indépendante",
            "FR",
            "job_titles",
            "job title 'Consultante indépendante' (consultante)",
        ),
        (
            "tom@pme.fr",
            "STAGIAIRE marketing",
            "FR",
            "job_titles",
            "job title 'STAGIAIRE marketing' (stagiaire)",
        ),
        (
            "lea@pme.fr",
            "Étudiante en alternance",
            "FR",
            "job_titles",
            "job title 'Étudiante en alternance' (étudiante)",
        ),
        ("bob@acme.com", "CEO", "US", "countries", "country US outside the target list (FR, BE, CH, LU, MC)"),
        ("not an address", "", "FR", "invalid_email", None),
    ],
)
def test_disqualified_with_its_reason(
    rules: ScoringRules, email: str, job_title: str, country: str, rule: str, reason: str | None
) -> None:
    verdict = qualify(lead(email, job_title, country), rules)
    assert verdict.disqualified and verdict.disqualifying is not None
    assert verdict.disqualifying.rule == rule
    if reason is not None:
        assert verdict.reason == reason
    else:
        assert verdict.reason is not None and "invalid email address" in verdict.reason
    line = verdict.disqualification_line()
    assert line is not None and line.rule == f"qualification.{rule}" and line.detail == verdict.reason


@pytest.mark.parametrize(
    ("email", "job_title", "country"),
    [
        ("camille@atelier-martin.fr", "Gérante", "FR"),
        ("paul@negoce.be", "Directeur international", "BE"),  # 'intern' is not a word of it
        ("anne@transport-sud.fr", "Responsable commerciale", "MC"),
        ("luc@pme.fr", "", "FR"),
    ],
)
def test_real_leads_pass(rules: ScoringRules, email: str, job_title: str, country: str) -> None:
    verdict = qualify(lead(email, job_title, country), rules)
    assert not verdict.disqualified and verdict.findings == ()


def test_a_free_mail_address_is_flagged_not_rejected_and_lowers_the_fit(rules: ScoringRules) -> None:
    verdict = qualify(lead("jean.dupont@gmail.com", "Gérant"), rules)
    assert not verdict.disqualified
    assert [(f.rule, f.reason, f.points) for f in verdict.flags] == [
        ("free_mail", "free-mail address (gmail.com)", -10)
    ]
    fit = compute_fit(lead("jean.dupont@gmail.com", "Gérant"), rules, verdict)
    assert fit.score == 30 + 10 - 10  # gérant + France - free mail
    assert [line.rule for line in fit.lines] == [
        "fit.job_title.decision-maker",
        "fit.country.france",
        "qualification.free_mail",
    ]


def test_the_first_disqualifying_check_gives_the_reason(rules: ScoringRules) -> None:
    # A disposable address of a student abroad: disposable is checked first.
    verdict = qualify(lead("x@yopmail.com", "Student", "US"), rules)
    assert [f.rule for f in verdict.findings] == ["disposable", "job_titles", "countries"]
    assert verdict.reason == "disposable address domain yopmail.com"


@pytest.mark.parametrize(
    ("job_title", "attributes", "country", "score", "grade", "rules_hit"),
    [
        (
            "Directrice Commerciale",
            {"company_size": 50, "industry": "Négoce"},
            "FR",
            25 + 20 + 10 + 10,
            "A",
            ["sales-marketing-head", "sme", "core-markets", "france"],
        ),
        ("Gérant", {}, "FR", 40, "B", ["decision-maker", "france"]),
        (
            "Responsable achats",
            {"company_size": "1 200"},
            "BE",
            10 + 10 + 5,
            "C",
            ["manager", "mid-size", "french-speaking"],
        ),
        ("", {"persona": "dirigeant-pme"}, "FR", 20, "C", ["france", "ideal-customer"]),
        ("Comptable", {"company_size": "n/a"}, "LU", 5, "D", ["french-speaking"]),
    ],
)
def test_fit_by_hand(
    rules: ScoringRules,
    job_title: str,
    attributes: dict[str, Any],
    country: str,
    score: float,
    grade: str,
    rules_hit: list[str],
) -> None:
    candidate = {"email": "x@pme.fr", "job_title": job_title, "country": country, "attributes": attributes}
    fit = compute_fit(candidate, rules, qualify(candidate, rules))
    assert fit.score == score and fit.grade.value == grade
    assert [line.rule.rsplit(".", 1)[1] for line in fit.lines] == rules_hit


def test_a_changed_fit_writes_a_reset_then_the_rules_of_now(rules: ScoringRules) -> None:
    candidate = {"email": "x@pme.fr", "job_title": "Gérant", "country": "FR", "attributes": {}}
    fit = compute_fit(candidate, rules, qualify(candidate, rules))
    assert [line.points for line in fit_changes(fit, current=0, first_time=True)] == [30, 10]
    assert fit_changes(fit, current=40, first_time=False) == []
    changed = fit_changes(fit, current=25, first_time=False)
    assert [(line.rule, line.points) for line in changed] == [
        ("fit.reset", -25),
        ("fit.job_title.decision-maker", 30),
        ("fit.country.france", 10),
    ]
    assert sum(line.points for line in changed) == 40 - 25
