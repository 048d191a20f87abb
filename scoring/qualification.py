"""Qualification at intake: is this a real lead, by sales' definition?

Most people who download free content are not: competitors, students, consultants, foreigners,
throw-away addresses. Each check of ``scoring.yaml``'s ``qualification`` either disqualifies (the
first one that does gives the reason kept on the lead) or flags (a ledger row, with optional fit
points). Every decision carries its reason in words a salesperson understands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.leads import normalize_email
from scoring.ledger import EntryKind, ScoreLine
from scoring.matching import domain_pattern, email_domain, first_phrase
from scoring.rules import Action, CountryCheck, DomainCheck, ScoringRules, WordCheck


@dataclass(frozen=True, slots=True)
class Finding:
    """One check that fired: its rule name, what it does and why."""

    rule: str
    action: Action
    reason: str
    points: float = 0.0

    def line(self) -> ScoreLine:
        """The ledger row recording this decision."""
        return ScoreLine(EntryKind.QUALIFICATION, f"qualification.{self.rule}", self.points, self.reason)


@dataclass(frozen=True, slots=True)
class Qualification:
    """The verdict on a lead: disqualified (with the first disqualifying finding) or not, plus flags."""

    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def disqualifying(self) -> Finding | None:
        return next((f for f in self.findings if f.action is Action.DISQUALIFY), None)

    @property
    def disqualified(self) -> bool:
        return self.disqualifying is not None

    @property
    def reason(self) -> str | None:
        """The reason kept on a disqualified lead."""
        finding = self.disqualifying
        return finding.reason if finding else None

    @property
    def flags(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.action is Action.FLAG)

    def disqualification_line(self) -> ScoreLine | None:
        """The ledger row recording why the lead was disqualified (flags go with the fit)."""
        finding = self.disqualifying
        return finding.line() if finding else None


def qualify(lead: Mapping[str, Any], rules: ScoringRules) -> Qualification:
    """Run every check on a lead (``email``, ``job_title``, ``country``)."""
    spec = rules.qualification
    email = str(lead.get("email") or "")
    findings: list[Finding] = []
    invalid = _invalid_email(email)
    if invalid:
        findings.append(Finding("invalid_email", Action.DISQUALIFY, invalid))
    domain = email_domain(email)
    domain_checks = (
        ("disposable", spec.disposable, "disposable address domain {domain}"),
        ("competitors", spec.competitors, "competitor domain {domain}"),
        ("academic", spec.academic, "student/academic domain {domain} ({pattern})"),
    )
    for rule, check, wording in domain_checks:
        found = _domain(rule, check, domain, wording) if domain else None
        if found:
            findings.append(found)
    title = _job_title(spec.job_titles, str(lead.get("job_title") or ""))
    if title:
        findings.append(title)
    country = _country(spec.countries, str(lead.get("country") or ""), rules.target_countries)
    if country:
        findings.append(country)
    free = _domain("free_mail", spec.free_mail, domain, "free-mail address ({domain})") if domain else None
    if free:
        findings.append(free)
    return Qualification(tuple(findings))


def _invalid_email(email: str) -> str | None:
    if not email:
        return None
    try:
        normalize_email(email)
    except ValueError as exc:
        return str(exc)
    return None


def _domain(rule: str, check: DomainCheck | None, domain: str, wording: str) -> Finding | None:
    if check is None:
        return None
    pattern = domain_pattern(domain, check.domains)
    if pattern is None:
        return None
    return Finding(rule, check.action, wording.format(domain=domain, pattern=pattern), check.points)


def _job_title(check: WordCheck | None, title: str) -> Finding | None:
    if check is None or not title:
        return None
    word = first_phrase(title, check.words)
    if word is None:
        return None
    return Finding("job_titles", check.action, f"job title {title!r} ({word})", check.points)


def _country(check: CountryCheck | None, country: str, targets: tuple[str, ...]) -> Finding | None:
    if check is None or not country or country.upper() in targets:
        return None
    reason = f"country {country.upper()} outside the target list ({', '.join(targets)})"
    return Finding("countries", check.action, reason, check.points)
