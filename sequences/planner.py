"""The timeline of a sequence for one lead: when each step falls due and when it may go out.

Step k falls due its gap (``wait``, else the spacing rule) after the previous step's actual send
time, plus the lead's jitter, rounded up to a whole minute; the channel's send window then moves
it to the next allowed instant in the lead's time zone. A step whose ``if`` is false is skipped and
the next gap counts from the skipped step's due time. With ``repeat``, each cycle's first step goes
out ``every`` after the previous cycle's first step (months are counted on the lead's calendar).

Arithmetic on exact gaps is done on UTC instants, so gaps are real elapsed time across DST changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import phonenumbers
from dateutil.relativedelta import relativedelta

from sequences.schema import Channel, Sequence
from sequences.spacing import gap_before, jitter_offset
from sequences.windows import WindowDecision, is_allowed, next_allowed

Condition = Callable[[str, Mapping[str, Any]], bool]

_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One step of a lead's timeline. ``at`` is aware, in the lead's time zone: the send time, or
    the due time of a skipped step. ``gap`` is the time since the previous planned step (None for
    the first); ``cycle`` counts repeat cycles from 1."""

    step_id: str
    channel: Channel
    at: datetime
    gap: timedelta | None
    moved: str | None
    skipped: bool
    cycle: int
    variant_ids: tuple[str, ...]


def next_due(
    sequence: Sequence, index: int, previous_at: datetime, *, tz: ZoneInfo, country: str, lead_key: str
) -> WindowDecision:
    """When step ``index`` goes out, given the previous step's send time (or the enrollment time
    for step 0): gap + jitter, rounded up to the minute, then moved into the channel's window."""
    return _place(sequence, index, _due(sequence, index, previous_at, lead_key), tz, country)


class DuePlanner:
    """:func:`next_due` for many leads at once, as a dispatch batch or a bulk enrollment needs it.

    Leads stepped at the same instant mostly share a due minute, time zone and country; where they
    do, the send-window placement (holidays, quiet hours) is computed once, and so is whether a
    window is open at an instant. Keep one per batch."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        # Keyed by ``id(sequence)``, each value keeps its sequence so that a reused id cannot match.
        self._cache: dict[tuple[Any, ...], tuple[Sequence, Any]] = {}

    def _cached(self, sequence: Sequence, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        full_key = (id(sequence), *key)
        cached = self._cache.get(full_key)
        if cached is None or cached[0] is not sequence:
            cached = self._cache[full_key] = (sequence, compute())
        return cached[1]

    def next_due(
        self,
        sequence: Sequence,
        index: int,
        previous_at: datetime,
        *,
        tz: ZoneInfo,
        country: str,
        lead_key: str,
    ) -> WindowDecision:
        due = _due(sequence, index, previous_at, lead_key)
        placed: WindowDecision = self._cached(
            sequence, ("due", index, due, tz, country), lambda: _place(sequence, index, due, tz, country)
        )
        return placed

    def window_open(
        self, sequence: Sequence, channel: Channel, at: datetime, tz: ZoneInfo, country: str
    ) -> bool:
        """``is_allowed(at, sequence.window_for(channel), tz, country)``, computed once per key."""
        window = sequence.window_for(channel)
        is_open: bool = self._cached(
            sequence, ("open", channel, at, tz, country), lambda: is_allowed(at, window, tz, country)
        )
        return is_open


def plan(
    sequence: Sequence,
    lead: Mapping[str, Any],
    start: datetime,
    *,
    cycles: int = 1,
    condition: Condition | None = None,
) -> list[PlannedStep]:
    """The timeline of ``sequence`` for ``lead`` enrolled at the aware instant ``start``, over at most
    ``cycles`` repeat cycles (a sequence without ``repeat`` runs once). ``condition`` evaluates a
    step's ``if`` for the lead; by default the sequence language's own evaluator does."""
    if start.tzinfo is None:
        raise ValueError("plan needs an aware start instant")
    tz, country = lead_zone(sequence, lead)
    context = _PlanContext(sequence, lead, tz, country, lead_key(lead), condition)
    timeline: list[PlannedStep] = []
    previous_at = start
    pinned: datetime | None = None
    count = _cycle_count(sequence, cycles)
    for cycle in range(1, count + 1):
        steps = context.cycle(cycle, previous_at, pinned, timeline[-1].at if timeline else None)
        timeline.extend(steps)
        previous_at = steps[-1].at
        if sequence.repeat is not None and cycle < count:
            pinned = cycle_due(sequence, start, cycle, tz)
    return timeline


def cycle_due(sequence: Sequence, enrolled_at: datetime, completed: int, tz: ZoneInfo) -> datetime:
    """When the first step of the next cycle of a recurring sequence falls due, after ``completed``
    cycles: ``every`` x ``completed`` after enrollment. Anchored on the enrollment, not on the
    previous cycle's send, so window deferrals never accumulate into drift."""
    if sequence.repeat is None:
        raise ValueError(f"sequence {sequence.name!r} does not repeat")
    return _round_up_to_minute(_add_period(enrolled_at, sequence.repeat.every * completed, tz))


def lead_zone(sequence: Sequence, lead: Mapping[str, Any]) -> tuple[ZoneInfo, str]:
    """The lead's time zone and holiday country: the lead's own ``timezone`` / ``country`` when valid,
    else what its phone number tells, else the sequence's defaults."""
    phone = _parse_phone(lead.get("phone"), _country(lead.get("country")) or sequence.country)
    zone = _zone(lead.get("timezone")) or _phone_zone(phone) or ZoneInfo(sequence.timezone)
    country = _country(lead.get("country")) or _country(_phone_region(phone)) or sequence.country
    return zone, country


def lead_key(lead: Mapping[str, Any]) -> str:
    """The stable identity that seeds a lead's jitter: its id, else its email, else its phone."""
    return str(lead.get("id") or lead.get("email") or lead.get("phone") or "")


class _PlanContext:
    """What stays fixed while planning one lead's timeline."""

    def __init__(
        self,
        sequence: Sequence,
        lead: Mapping[str, Any],
        tz: ZoneInfo,
        country: str,
        key: str,
        condition: Condition | None,
    ) -> None:
        self.sequence, self.lead, self.tz, self.country = sequence, lead, tz, country
        self.key, self._condition = key, condition

    def holds(self, expression: str) -> bool:
        """Whether a step's ``if`` holds for the lead (the default evaluator loads on first use)."""
        if self._condition is None:
            self._condition = _default_condition()
        return self._condition(expression, self.lead)

    def cycle(
        self, cycle: int, previous_at: datetime, first_due: datetime | None, previous: datetime | None
    ) -> list[PlannedStep]:
        """The steps of one cycle. ``first_due`` pins the first step of a repeat cycle; ``previous``
        is the send time of the step before this cycle, if any."""
        steps: list[PlannedStep] = []
        for index, step in enumerate(self.sequence.steps):
            skipped = step.if_ is not None and not self.holds(step.if_)
            decision = self._decide(index, previous_at, first_due if index == 0 else None, skipped)
            steps.append(
                PlannedStep(
                    step_id=step.id,
                    channel=step.channel,
                    at=decision.at,
                    gap=None if previous is None else _elapsed(previous, decision.at),
                    moved=decision.moved,
                    skipped=skipped,
                    cycle=cycle,
                    variant_ids=tuple(v.id for v in step.variants),
                )
            )
            previous = previous_at = decision.at
        return steps

    def _decide(
        self, index: int, previous_at: datetime, pinned: datetime | None, skipped: bool
    ) -> WindowDecision:
        if skipped:
            # Nothing is sent, so no window applies: the next gap counts from the due time itself.
            due = pinned or _due(self.sequence, index, previous_at, self.key)
            return WindowDecision(due.astimezone(self.tz), None)
        if pinned is not None:
            return _place(self.sequence, index, pinned, self.tz, self.country)
        return next_due(
            self.sequence, index, previous_at, tz=self.tz, country=self.country, lead_key=self.key
        )


def _due(sequence: Sequence, index: int, previous_at: datetime, lead_key: str) -> datetime:
    """The UTC instant step ``index`` falls due, before any send window applies."""
    due = previous_at.astimezone(UTC) + gap_before(sequence, index) + jitter_offset(sequence, lead_key, index)
    return _round_up_to_minute(due)


def _place(sequence: Sequence, index: int, due: datetime, tz: ZoneInfo, country: str) -> WindowDecision:
    """Move a due instant into its step's send window; transactional messages are exempt."""
    step = sequence.steps[index]
    if step.transactional:
        return WindowDecision(due.astimezone(tz), None)
    channel = step.channel
    return next_allowed(due, sequence.window_for(channel), tz, country, channel.value)


def _elapsed(earlier: datetime, later: datetime) -> timedelta:
    # In UTC: subtracting two datetimes of the same zone would ignore a DST change between them.
    return later.astimezone(UTC) - earlier.astimezone(UTC)


def _round_up_to_minute(instant: datetime) -> datetime:
    if instant.second or instant.microsecond:
        return instant.replace(second=0, microsecond=0) + _MINUTE
    return instant


def _cycle_count(sequence: Sequence, cycles: int) -> int:
    if cycles < 1:
        raise ValueError(f"cycles must be at least 1, got {cycles}")
    repeat = sequence.repeat
    if repeat is None:
        return 1
    return cycles if repeat.times is None else min(cycles, repeat.times)


def _add_period(at: datetime, every: timedelta | relativedelta, tz: ZoneInfo) -> datetime:
    """``at`` + ``every``: exact periods in elapsed time, calendar periods (P1M) on the lead's
    calendar, so a monthly touch keeps its local time of day across DST."""
    if isinstance(every, timedelta):
        return at.astimezone(UTC) + every
    local = at.astimezone(tz).replace(tzinfo=None) + every
    return local.replace(tzinfo=tz).astimezone(UTC)


def _default_condition() -> Condition:
    # Imported here: the expression evaluator pulls in Jinja, which planning callers may not need.
    from sequences.rendering import evaluate_condition

    return evaluate_condition


def _zone(name: object) -> ZoneInfo | None:
    return _zone_named(name.strip()) if isinstance(name, str) and name.strip() else None


@cache
def _zone_named(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # An unknown zone on a lead record is bad data, not a failure: the next fallback applies.
        return None


@cache
def _supported_countries() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries())


def _country(code: object) -> str | None:
    if not isinstance(code, str):
        return None
    code = code.strip().upper()
    return code if code in _supported_countries() else None


def _parse_phone(value: object, region: str) -> phonenumbers.PhoneNumber | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        # A phone that does not parse gives no hint about where the lead lives; the next fallback applies.
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _phone_zone(number: phonenumbers.PhoneNumber | None) -> ZoneInfo | None:
    if number is None:
        return None
    from phonenumbers import timezone as phone_timezones  # large tables: load only when needed

    zones = phone_timezones.time_zones_for_number(number)
    return _zone(zones[0]) if len(zones) == 1 else None


def _phone_region(number: phonenumbers.PhoneNumber | None) -> str | None:
    return None if number is None else phonenumbers.region_code_for_number(number)
