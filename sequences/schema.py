"""The sequence language as data: what a nurture-sequence YAML file may contain.

The loader (``sequences/loader.py``) turns YAML into these models and maps every validation error
back to the file, line and column of the faulty key. Semantics that need files (templates) or a
lead (``if`` expressions) are checked in ``sequences/validate.py``.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from sequences.audience import AudienceSpec
from sequences.durations import parse_duration, parse_exact_duration

ExactDuration = Annotated[timedelta, BeforeValidator(parse_exact_duration)]
CalendarDuration = Annotated[Any, BeforeValidator(parse_duration)]  # timedelta | relativedelta

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Channel(StrEnum):
    """Where a step goes. ``call``, ``linkedin`` and ``task`` are manual tasks for sales."""

    EMAIL = "email"
    SMS = "sms"
    CALL = "call"
    LINKEDIN = "linkedin"
    TASK = "task"

    @property
    def is_manual(self) -> bool:
        return self in (Channel.CALL, Channel.LINKEDIN, Channel.TASK)


class ExitCondition(StrEnum):
    """Lead events or states that end an enrollment early."""

    REPLIED = "replied"
    MEETING_BOOKED = "meeting_booked"
    CONVERTED = "converted"
    UNSUBSCRIBED = "unsubscribed"
    CLICKED = "clicked"
    BOUNCED = "bounced"
    HOT = "hot"
    WARM = "warm"
    COLD = "cold"
    CUSTOMER = "customer"
    DISQUALIFIED = "disqualified"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GoldenSpacing(_Strict):
    """gap_k = first x ratio^(k-1), capped at max_gap."""

    first: ExactDuration
    ratio: float = Field(default=1.618, gt=1.0, le=10.0)
    max_gap: ExactDuration | None = None


class FibonacciSpacing(_Strict):
    """gap_k = unit x fib(k) (1, 1, 2, 3, 5, 8 ...), capped at max_gap."""

    unit: ExactDuration
    max_gap: ExactDuration | None = None


class SpacingSpec(_Strict):
    """Exactly one of ``golden``, ``fibonacci`` or ``fixed``."""

    golden: GoldenSpacing | None = None
    fibonacci: FibonacciSpacing | None = None
    fixed: ExactDuration | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SpacingSpec:
        chosen = [k for k in ("golden", "fibonacci", "fixed") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "spacing needs exactly one of golden, fibonacci or fixed"
                + (f" (found {', '.join(chosen)})" if chosen else "")
            )
        for name in ("golden", "fibonacci"):
            rule = getattr(self, name)
            if rule is not None:
                first = rule.first if name == "golden" else rule.unit
                if first <= timedelta(0):
                    raise ValueError(f"spacing.{name}: the first gap must be longer than 0")
                if rule.max_gap is not None and rule.max_gap < first:
                    raise ValueError(f"spacing.{name}: max_gap must be at least the first gap")
        if self.fixed is not None and self.fixed <= timedelta(0):
            raise ValueError("spacing.fixed must be longer than 0")
        return self


def parse_days(value: object) -> frozenset[int]:
    """``mon-fri``, ``mon-sat``, ``mon,wed,fri``, ``every day``/``all`` -> ISO weekday numbers 0..6."""
    if isinstance(value, frozenset):
        return value
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected days like 'mon-fri', 'mon-sat' or 'mon,wed,fri'")
    text = value.strip().lower()
    if text in ("all", "every day", "everyday", "mon-sun"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        if len(ends) > 2 or any(e not in DAY_NAMES for e in ends):
            raise ValueError(f"unknown day {part.strip()!r}: expected names from {', '.join(DAY_NAMES)}")
        lo, hi = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        if hi < lo:
            raise ValueError(f"day range {part.strip()!r} runs backwards")
        days.update(range(lo, hi + 1))
    return frozenset(days)


_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_hours(value: object) -> tuple[tuple[time, time | None], ...]:
    """``"08:30-18:30"`` or ``"10:00-13:00, 14:00-20:00"``; an end of ``24:00`` means midnight."""
    if isinstance(value, tuple):
        return value
    if not isinstance(value, str):
        raise ValueError('expected hours like "08:30-18:30" (quote them in YAML)')
    ranges: list[tuple[time, time | None]] = []
    for part in value.split(","):
        match = _HOURS.match(part)
        if not match:
            raise ValueError(f'expected hours like "08:30-18:30", got {part.strip()!r}')
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"invalid time of day in {part.strip()!r}")
        start, end = time(h1, m1), (None if h2 == 24 else time(h2, m2))
        if end is not None and end <= start:
            raise ValueError(f"window {part.strip()!r} ends before it starts")
        if ranges and (ranges[-1][1] is None or start < ranges[-1][1]):
            raise ValueError("hour ranges must be in order and must not overlap")
        ranges.append((start, end))
    return tuple(ranges)


class WindowSpec(_Strict):
    """When a channel may send, in the lead's local time. ``end`` of a range is exclusive."""

    days: Annotated[frozenset[int], BeforeValidator(parse_days)] = frozenset(range(7))
    hours: Annotated[tuple[tuple[time, time | None], ...], BeforeValidator(parse_hours)] = ((time(0), None),)
    skip_holidays: bool = False
    profile: str | None = None


#: Built-in window profiles, referenced by name in ``windows:``.
WINDOW_PROFILES: dict[str, WindowSpec] = {
    # Operators' rule for commercial SMS in France (strictest reading): 08:00-20:00 Mon-Sat,
    # never on Sundays or public holidays.
    "fr-marketing": WindowSpec(
        days=parse_days("mon-sat"),
        hours=parse_hours("08:00-20:00"),
        skip_holidays=True,
        profile="fr-marketing",
    ),
    # Code de la consommation D223-9: phone prospecting weekdays 10:00-13:00 and 14:00-20:00.
    "fr-phone-prospecting": WindowSpec(
        days=parse_days("mon-fri"),
        hours=parse_hours("10:00-13:00,14:00-20:00"),
        skip_holidays=True,
        profile="fr-phone-prospecting",
    ),
    "office-hours": WindowSpec(
        days=parse_days("mon-fri"),
        hours=parse_hours("09:00-18:00"),
        skip_holidays=True,
        profile="office-hours",
    ),
    "anytime": WindowSpec(profile="anytime"),
}

#: The window used for a channel that the sequence does not list.
DEFAULT_WINDOWS: dict[Channel, str] = {
    Channel.EMAIL: "anytime",
    Channel.SMS: "fr-marketing",
    Channel.CALL: "fr-phone-prospecting",
    Channel.LINKEDIN: "office-hours",
    Channel.TASK: "office-hours",
}


def _window(value: object) -> object:
    if isinstance(value, str):
        if value not in WINDOW_PROFILES:
            raise ValueError(
                f"unknown window profile {value!r}: expected one of {', '.join(sorted(WINDOW_PROFILES))}"
                " or a mapping {days: ..., hours: ...}"
            )
        return WINDOW_PROFILES[value]
    return value


Window = Annotated[WindowSpec, BeforeValidator(_window)]


class Variant(_Strict):
    """One arm of an A/B test on a step; ``weight`` in percent."""

    id: str
    weight: float = Field(gt=0, le=100)
    template: str | None = None
    subject: str | None = None
    text: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError("expected lowercase letters, digits, '-' or '_'")
        return value


class Step(_Strict):
    """One touch of a sequence."""

    id: str
    channel: Channel
    template: str | None = None
    subject: str | None = None
    text: str | None = None
    note: str | None = None  # instructions shown on a sales task
    wait: ExactDuration | None = None
    if_: str | None = Field(default=None, alias="if")
    variants: tuple[Variant, ...] = ()
    holdout: float = Field(default=0, ge=0, lt=100)
    transactional: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError("expected lowercase letters, digits, '-' or '_' (e.g. 'welcome-email')")
        return value

    @model_validator(mode="after")
    def _content(self) -> Step:
        if self.variants:
            total = sum(v.weight for v in self.variants) + self.holdout
            if abs(total - 100) > 1e-9:
                raise ValueError(f"variant weights plus holdout must sum to 100, got {total:g}")
            ids = [v.id for v in self.variants]
            if len(set(ids)) != len(ids):
                raise ValueError("variant ids must be unique within a step")
            if "holdout" in ids:
                raise ValueError("'holdout' is reserved for the control group")
        elif self.holdout:
            raise ValueError("holdout needs variants")
        if self.channel is Channel.EMAIL and not self.variants and not self.template:
            raise ValueError("an email step needs a template (or variants with templates)")
        if self.channel is Channel.SMS and not self.variants and not (self.text or self.template):
            raise ValueError("an sms step needs text or a template")
        return self

    def arm(self, variant_id: str | None) -> Variant | None:
        """The variant with this id, or None for the base step / holdout."""
        return next((v for v in self.variants if v.id == variant_id), None)


class Repeat(_Strict):
    """Recurring contact policy: after the last step, start again ``every`` (e.g. P1M, P3M)."""

    every: CalendarDuration
    times: int | None = Field(default=None, ge=1)


class Sequence(_Strict):
    """A nurture sequence, as loaded from ``sequences/library/NAME.yaml``."""

    name: str
    description: str = ""
    version: int = Field(default=1, ge=1)
    timezone: str = "Europe/Paris"
    country: str = "FR"
    spacing: SpacingSpec = SpacingSpec(fixed=timedelta(days=3))
    jitter: ExactDuration | None = None
    windows: dict[Channel, Window] = {}
    exit_when: tuple[ExitCondition, ...] = ()
    repeat: Repeat | None = None
    audience: AudienceSpec | None = None
    steps: tuple[Step, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError("expected lowercase letters, digits, '-' or '_' (e.g. 'whitepaper-nurture')")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            hint = next((z for z in sorted(available_timezones()) if z.lower() == value.lower()), None)
            raise ValueError(
                f"unknown time zone {value!r}"
                + (f" (did you mean {hint!r}?)" if hint else " (e.g. Europe/Paris)")
            ) from exc
        return value

    @model_validator(mode="after")
    def _unique_steps(self) -> Sequence:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r}")
            seen.add(step.id)
        return self

    def window_for(self, channel: Channel) -> WindowSpec:
        """The send window of a channel: the sequence's own, else the built-in default."""
        return self.windows.get(channel) or WINDOW_PROFILES[DEFAULT_WINDOWS[channel]]

    def step_index(self, step_id: str) -> int:
        return next(i for i, s in enumerate(self.steps) if s.id == step_id)


__all__ = [
    "WINDOW_PROFILES",
    "Channel",
    "ExitCondition",
    "FibonacciSpacing",
    "GoldenSpacing",
    "Repeat",
    "Sequence",
    "SpacingSpec",
    "Step",
    "Variant",
    "WindowSpec",
]
