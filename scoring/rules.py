"""The scoring rules as data: what ``sequences/scoring.yaml`` may contain.

Marketers write sales' definition of a "real lead" here: who is disqualified or flagged at intake
(``qualification``), what makes a good fit (``fit``), what each action of a lead is worth and how
fast it fades (``engagement``), how fit grade x engagement map to hot / warm / cold
(``thresholds``), which sequence each status goes to (``routing``), when a customer becomes a former
customer (``customers``) and the rules of the sales cadence (``cadence``).

``load_rules`` returns the validated model or raises ``ConfigError`` with every problem;
``validate_scoring_file`` returns the problems as ``FILE:LINE:COL`` diagnostics (``spirale validate``).
"""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from models.tables import EventType
from scoring.source import LoadedFile, load_model
from sequences.diagnostics import Diagnostic, count_errors, warning
from sequences.durations import parse_exact_duration
from sequences.loader import library_files, load_sequence_file
from sequences.schema import STEP_ID
from spirale.errors import ConfigError

Duration = Annotated[timedelta, BeforeValidator(parse_exact_duration)]
COUNTRY = re.compile(r"^[A-Z]{2}$")
#: Lead actions that may carry engagement points: the normalized event types, plus the two
#: signals the web site reports (a webinar attended, a visit to the pricing page).
ENGAGEMENT_SIGNALS = frozenset({str(t) for t in EventType} | {"webinar_attended", "pricing_page"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action(StrEnum):
    """What a qualification check does: reject the lead, or only flag it (with optional points)."""

    DISQUALIFY = "disqualify"
    FLAG = "flag"


class Grade(StrEnum):
    """The fit grade, from the fit score."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"


class DomainCheck(_Strict):
    """Email domains (patterns like ``*.edu``, ``univ-*.fr``; a domain also matches its subdomains)."""

    action: Action = Action.DISQUALIFY
    domains: tuple[str, ...] = Field(min_length=1)
    points: float = 0.0  # added to the fit score when the check only flags

    @field_validator("domains")
    @classmethod
    def _lowercase(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if not domain.strip() or "@" in domain or " " in domain.strip():
                raise ValueError(f"expected a domain like 'example.fr' or '*.edu', got {domain!r}")
        return tuple(d.strip().lower() for d in value)


class WordCheck(_Strict):
    """Words or phrases of a job title, compared without case or accents, as whole words."""

    action: Action = Action.DISQUALIFY
    words: tuple[str, ...] = Field(min_length=1)
    points: float = 0.0


class CountryCheck(_Strict):
    """Leads outside ``target_countries``."""

    action: Action = Action.DISQUALIFY
    points: float = 0.0


class QualificationSpec(_Strict):
    """The checks run at intake, in this order: the first that disqualifies gives the reason;
    flags add up. An invalid address is always disqualifying."""

    disposable: DomainCheck | None = None
    competitors: DomainCheck | None = None
    academic: DomainCheck | None = None
    job_titles: WordCheck | None = None
    countries: CountryCheck | None = None
    free_mail: DomainCheck | None = None


class FitRule(_Strict):
    """One fit rule: ``contains`` (words in a text), ``one_of`` (exact values) or ``min``/``max``."""

    contains: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    points: float

    @model_validator(mode="after")
    def _one_matcher(self) -> FitRule:
        kinds = [bool(self.contains), bool(self.one_of), self.min is not None or self.max is not None]
        if sum(kinds) != 1:
            raise ValueError("a fit rule needs exactly one of contains, one_of, or min/max")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError("max must be at least min")
        return self


FitRules = dict[Annotated[str, Field(pattern=STEP_ID.pattern)], FitRule]


class GradeSpec(_Strict):
    """The lowest fit score of each grade (below C is D)."""

    A: float
    B: float
    C: float

    @model_validator(mode="after")
    def _ordered(self) -> GradeSpec:
        if not self.A > self.B > self.C:
            raise ValueError("grades must decrease: A > B > C")
        return self


class FitSpec(_Strict):
    """Who the lead is. In each criterion the first matching rule counts (rules are named)."""

    grades: GradeSpec
    job_title: FitRules = {}
    company_size: FitRules = {}
    industry: FitRules = {}
    country: FitRules = {}
    persona: FitRules = {}


def _signal(value: str) -> str:
    if value not in ENGAGEMENT_SIGNALS:
        close = difflib.get_close_matches(value, sorted(ENGAGEMENT_SIGNALS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown event type {value!r}{hint}: expected one of {', '.join(sorted(ENGAGEMENT_SIGNALS))}"
        )
    return value


Signal = Annotated[str, AfterValidator(_signal)]


class EngagementSpec(_Strict):
    """What the lead does: points per event type, fading by half every ``half_life``. ``forms``
    overrides the points of a download for one form (a callback request is worth more)."""

    half_life: Duration
    points: dict[Signal, float]
    forms: dict[str, float] = {}

    @field_validator("half_life")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("half_life must be longer than 0")
        return value


class Threshold(_Strict):
    """The least engagement a grade needs to be hot / warm (absent: never)."""

    hot: float | None = None
    warm: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.hot is not None and self.warm is not None and self.hot < self.warm:
            raise ValueError("the hot threshold must be at least the warm one")
        return self


class RoutingSpec(_Strict):
    """Which sequence each status goes to. A lead is live in at most one of ``exclusive``."""

    hot: str = "sales-cadence"
    warm: str = "whitepaper-nurture"
    cold: str = "incubator"
    customers: dict[str, str] = {}
    exclusive: tuple[str, ...] = ()
    notify: tuple[str, ...] = ("email",)

    @field_validator("notify")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if channel not in ("email", "sms"):
                raise ValueError(f"unknown notification channel {channel!r}: expected email or sms")
        return value

    def track_sequences(self) -> tuple[str, ...]:
        """Every sequence routing may enroll a lead into."""
        return tuple(dict.fromkeys((self.hot, self.warm, self.cold, *self.customers.values())))

    def exclusive_sequences(self, extra: tuple[str, ...] = ()) -> frozenset[str]:
        """The sequences that conflict with each other (``exclusive``, else every track)."""
        return frozenset(self.exclusive or (*self.track_sequences(), *extra))


class CustomerSpec(_Strict):
    """A customer without a purchase for ``inactive_after`` becomes a former customer."""

    inactive_after: Duration = timedelta(days=365)


class CadenceSpec(_Strict):
    """Sales' attempts before handing a lead back, and the legal limit on prospecting calls."""

    attempts: int = Field(default=7, ge=1, le=20)
    max_calls: int = Field(default=4, ge=1)
    call_period: Duration = timedelta(days=30)
    task_grace: Duration = timedelta(days=2)


class ScoringRules(_Strict):
    """The whole of ``scoring.yaml``."""

    target_countries: tuple[str, ...] = ("FR", "BE", "CH", "LU", "MC")
    qualification: QualificationSpec = QualificationSpec()
    fit: FitSpec
    engagement: EngagementSpec
    thresholds: dict[Grade, Threshold]
    routing: RoutingSpec = RoutingSpec()
    customers: CustomerSpec = CustomerSpec()
    cadence: CadenceSpec = CadenceSpec()

    @field_validator("target_countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not COUNTRY.match(code):
                raise ValueError(f"expected ISO country codes like 'FR', got {code!r}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _every_grade(cls, value: dict[Grade, Threshold]) -> dict[Grade, Threshold]:
        missing = [g.value for g in Grade if g not in value]
        if missing:
            raise ValueError(f"thresholds needs every grade; missing {', '.join(missing)}")
        return value

    def form_points(self, form_id: str | None) -> float:
        """What a download of ``form_id`` is worth."""
        if form_id is not None and form_id in self.engagement.forms:
            return self.engagement.forms[form_id]
        return self.engagement.points.get(str(EventType.FORM_SUBMITTED), 0.0)


def parse_scoring_file(path: Path) -> LoadedFile[ScoringRules]:
    """Read and validate ``path``, with schema and cross-file diagnostics."""
    loaded = load_model(path, ScoringRules, what="the scoring rules")
    if loaded.model is not None:
        loaded.diagnostics.extend(_library_checks(loaded, loaded.model))
    return loaded


def _library_checks(loaded: LoadedFile[ScoringRules], rules: ScoringRules) -> list[Diagnostic]:
    """Routing must name sequences of the library next to the file; the cadence's attempts should
    match the steps of the hot sequence."""
    available = {p.stem: p for p in library_files(loaded.path.parent)}
    problems: list[Diagnostic] = []
    named: list[tuple[tuple[str | int, ...], str]] = [
        (("routing", k), getattr(rules.routing, k)) for k in ("hot", "warm", "cold")
    ]
    named += [(("routing", "customers", c), s) for c, s in rules.routing.customers.items()]
    named += [(("routing", "exclusive", i), s) for i, s in enumerate(rules.routing.exclusive)]
    for loc, name in named:
        if name not in available:
            problems.append(
                loaded.at(loc, f"unknown sequence {name!r}: expected one of {', '.join(available)}")
            )
    hot = available.get(rules.routing.hot)
    if hot is not None:
        problems.extend(_attempts_check(loaded, rules, hot))
    return problems


def _attempts_check(loaded: LoadedFile[ScoringRules], rules: ScoringRules, hot: Path) -> list[Diagnostic]:
    sequence, _ = load_sequence_file(hot)
    if sequence is None or len(sequence.steps) == rules.cadence.attempts:
        return []
    line, col = loaded.positions.of(("cadence", "attempts"))
    return [
        warning(
            str(loaded.path),
            line,
            col,
            f"cadence.attempts is {rules.cadence.attempts} but {sequence.name} has "
            f"{len(sequence.steps)} steps (one attempt per step)",
        )
    ]


def validate_scoring_file(path: Path) -> list[Diagnostic]:
    """Every problem of a scoring file, as ``FILE:LINE:COL`` diagnostics (empty when valid)."""
    return parse_scoring_file(path).diagnostics


def load_rules(path: Path) -> ScoringRules:
    """The scoring rules in ``path``; raises ``ConfigError`` listing every problem."""
    loaded = parse_scoring_file(path)
    if loaded.model is None or count_errors(loaded.diagnostics):
        lines = "\n".join(str(d) for d in loaded.diagnostics if d.is_error)
        raise ConfigError(f"{path} is not valid scoring rules:\n{lines}")
    return loaded.model


def scoring_path(sequences_dir: Path) -> Path:
    """Where the scoring rules of a sequences directory live."""
    return sequences_dir / "scoring.yaml"
