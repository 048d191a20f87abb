"""The ``audience:`` block of a sequence: who a reactivation campaign selects.

    audience:
      dormant_days: 120                    # prospects with no engagement for 120 days
      min_messages_without_click: 3        # non-clickers: 3 messages since their last click ...
      no_click_days: 14                    # ... each sent at least 14 days ago (time to click)
      former_customers_inactive_days: 365  # customers without a purchase for a year
      exclude_contacted_within_days: 14    # nobody contacted in the last 14 days
      exclude_statuses: [customer]         # hot and disqualified leads are always excluded
      max_leads: 5000                      # at most this many per run

At least one of the three selection rules is needed. Errors read ``audience.KEY: message`` so the
validator can point at the faulty key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spirale.errors import SequenceError

#: Lead statuses (the values of ``models.tables.LeadStatus``).
STATUSES = ("hot", "warm", "cold", "customer", "former_customer", "disqualified")
#: Never selected, whatever the block says: sales handles hot leads, disqualified ones are out.
ALWAYS_EXCLUDED = ("hot", "disqualified")
RULES = ("dormant_days", "min_messages_without_click", "former_customers_inactive_days", "customer_class")


class AudienceSpec(BaseModel):
    """Selection criteria of a reactivation sequence (days are whole days before ``now``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dormant_days: int | None = Field(default=None, ge=1, le=3650)
    min_messages_without_click: int | None = Field(default=None, ge=1, le=100)
    no_click_days: int = Field(default=14, ge=0, le=3650)
    former_customers_inactive_days: int | None = Field(default=None, ge=1, le=3650)
    exclude_contacted_within_days: int = Field(default=14, ge=0, le=3650)
    exclude_statuses: tuple[str, ...] = ()
    max_leads: int | None = Field(default=None, ge=1)
    customer_class: Literal["A", "B", "C"] | None = None  # current customers of this class

    @field_validator("exclude_statuses", mode="before")
    @classmethod
    def _statuses(cls, value: object) -> object:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"expected a list of statuses from {', '.join(STATUSES)}")
        for item in items:
            if item not in STATUSES:
                raise ValueError(f"unknown status {item!r}: expected one of {', '.join(STATUSES)}")
        return tuple(items)

    @model_validator(mode="after")
    def _one_rule(self) -> AudienceSpec:
        if all(getattr(self, rule) is None for rule in RULES):
            raise ValueError(f"select someone: set at least one of {', '.join(RULES)}")
        return self

    @property
    def excluded_statuses(self) -> frozenset[str]:
        """The statuses never selected: the configured ones plus hot and disqualified."""
        return frozenset((*ALWAYS_EXCLUDED, *self.exclude_statuses))


@dataclass(frozen=True)
class AudienceProblem:
    """One error in an ``audience:`` block: the path of the faulty key below it, and the message."""

    loc: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        path = ".".join(str(part) for part in ("audience", *self.loc))
        return f"{path}: {self.message}"


def audience_problems(data: object) -> list[AudienceProblem]:
    """Every problem of an ``audience:`` block, with the key it is about."""
    if not isinstance(data, Mapping):
        return [AudienceProblem((), "expected a mapping of selection criteria (e.g. dormant_days: 120)")]
    try:
        AudienceSpec.model_validate(dict(data))
    except ValidationError as exc:
        return [_problem(error) for error in exc.errors(include_url=False)]
    return []


def _problem(error: Mapping[str, Any]) -> AudienceProblem:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        hint = difflib.get_close_matches(key, list(AudienceSpec.model_fields), n=1)
        return AudienceProblem(loc, "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    message = str(error["msg"]).removeprefix("Value error, ")
    return AudienceProblem(loc, message)


def validate_audience(data: object) -> list[str]:
    """The errors of an ``audience:`` block as ``audience.KEY: message`` lines (empty when valid)."""
    return [str(problem) for problem in audience_problems(data)]


def parse_audience(data: object, *, sequence: str = "") -> AudienceSpec:
    """The ``audience:`` block as a model; raises ``SequenceError`` listing every problem."""
    if isinstance(data, AudienceSpec):
        return data
    problems = validate_audience(data)
    if problems or not isinstance(data, Mapping):
        where = f"sequence {sequence!r}: " if sequence else ""
        raise SequenceError(where + "; ".join(problems))
    return AudienceSpec.model_validate(dict(data))
