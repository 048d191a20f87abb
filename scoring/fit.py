"""Fit: who the lead is (job title, company size, industry, country, persona), as points and a
grade A-D. In each criterion of ``scoring.yaml`` the first matching rule counts; qualification
flags (a free-mail address ...) add their points too. The grade x the engagement gives the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scoring.ledger import EntryKind, ScoreLine
from scoring.matching import first_phrase, fold
from scoring.qualification import Qualification
from scoring.rules import FitRule, Grade, ScoringRules

#: Where each criterion reads its value: a lead column, or an attribute of the lead.
CRITERIA: tuple[tuple[str, str], ...] = (
    ("job_title", "job_title"),
    ("company_size", "attributes.company_size"),
    ("industry", "attributes.industry"),
    ("country", "country"),
    ("persona", "attributes.persona"),
)
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class FitResult:
    """A lead's fit: its score, grade, and the ledger lines that explain the score."""

    score: float
    grade: Grade
    lines: tuple[ScoreLine, ...]


def lead_value(lead: Mapping[str, Any], source: str) -> Any:
    """The value a criterion reads (``attributes.x`` looks into the lead's attributes)."""
    if source.startswith("attributes."):
        return (lead.get("attributes") or {}).get(source.removeprefix("attributes."))
    return lead.get(source)


def compute_fit(lead: Mapping[str, Any], rules: ScoringRules, qualification: Qualification) -> FitResult:
    """The fit of ``lead`` (a mapping of lead columns with ``attributes``)."""
    lines: list[ScoreLine] = []
    for criterion, source in CRITERIA:
        value = lead_value(lead, source)
        named: dict[str, FitRule] = getattr(rules.fit, criterion)
        for name, rule in named.items():
            if _matches(rule, value):
                detail = f"{criterion.replace('_', ' ')} {value!r}"
                lines.append(ScoreLine(EntryKind.FIT, f"fit.{criterion}.{name}", rule.points, detail))
                break
    lines.extend(f.line() for f in qualification.flags)
    score = sum(line.points for line in lines)
    return FitResult(score, grade_of(score, rules), tuple(lines))


def _matches(rule: FitRule, value: Any) -> bool:
    if value is None or value == "":
        return False
    if rule.contains:
        return first_phrase(str(value), rule.contains) is not None
    if rule.one_of:
        folded = fold(str(value).strip())
        return any(fold(option) == folded for option in rule.one_of)
    number = _number(value)
    if number is None:
        return False
    return (rule.min is None or number >= rule.min) and (rule.max is None or number <= rule.max)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(" ", "").replace(",", "."))
    except ValueError:
        return None


def grade_of(fit: float, rules: ScoringRules) -> Grade:
    """The grade of a fit score."""
    grades = rules.fit.grades
    if fit >= grades.A:
        return Grade.A
    if fit >= grades.B:
        return Grade.B
    if fit >= grades.C:
        return Grade.C
    return Grade.D


def fit_changes(result: FitResult, *, current: float, first_time: bool) -> list[ScoreLine]:
    """The ledger lines to write when a lead's fit is (re)computed: every line the first time; on a
    change, a ``fit.reset`` cancelling the old total, then the lines of now; else nothing."""
    if first_time:
        return list(result.lines)
    if abs(result.score - current) < _EPSILON:
        return []
    reset = ScoreLine(
        EntryKind.FIT, "fit.reset", -current, f"fit recomputed: {current:g} -> {result.score:g}"
    )
    return [reset, *result.lines]
