"""Legal send windows: whether an instant may carry a message, and the next instant that may.

Windows are read in the lead's local time (``zoneinfo``, so DST is handled): allowed weekdays,
hour ranges with an exclusive end (SMS at 19:59:59 goes, at 20:00:00 it waits) and, when the window
says so, the public holidays of the lead's country (``holidays`` package, French names when the
country offers them).

Around DST changes a range start may not exist (spring forward: it resolves to the first real
instant after the gap, if that is still inside the range) or may happen twice (fall back: the
earliest instant not before the due time wins). Both cases are decided on UTC instants, so the
answer never depends on how a datetime's ``fold`` was set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from sequences.schema import WindowSpec
from spirale.errors import ConfigError

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
#: How far ahead to look for an opening; a valid window always opens within days.
MAX_DAYS_AHEAD = 400
_ONE_DAY = timedelta(days=1)
_MIDNIGHT = time(0)

_holiday_names: dict[tuple[str, int], dict[date, str]] = {}


@dataclass(frozen=True, slots=True)
class WindowDecision:
    """When a message may go out (aware, in the lead's time zone) and, if it had to wait, why."""

    at: datetime
    moved: str | None


def is_allowed(at: datetime, window: WindowSpec, tz: ZoneInfo, country: str) -> bool:
    """Whether the aware instant ``at`` falls inside ``window`` for a lead in ``tz`` / ``country``."""
    return _refusal(at.astimezone(tz), window, country, "") is None


def next_allowed(
    at: datetime, window: WindowSpec, tz: ZoneInfo, country: str, channel_name: str
) -> WindowDecision:
    """``at`` itself when the window allows it, else the next allowed instant with the reason it moved
    (e.g. ``"Sunday: sms window"``, ``"public holiday: Noël"``, ``"after 20:00: sms window"``)."""
    local = at.astimezone(tz)
    reason = _refusal(local, window, country, channel_name)
    if reason is None:
        return WindowDecision(local, None)
    opening, skipped = _next_opening(local, window, tz, country)
    if skipped:
        reason += ", then " + ", ".join(f"public holiday: {name}" for name in skipped)
    return WindowDecision(opening, reason)


def holiday_name(country: str, day: date) -> str | None:
    """The public holiday on ``day`` in ``country`` (ISO 3166 alpha-2), or None on a working day."""
    names = _holiday_names.get((country, day.year))
    if names is None:
        names = _load_holidays(country, day.year)
    return names.get(day)


def _load_holidays(country: str, year: int) -> dict[date, str]:
    """One calendar per (country, year), built once: the ``holidays`` objects are slow to query."""
    try:
        calendar = holidays.country_holidays(country, years=year)
    except NotImplementedError as exc:
        raise ConfigError(f"no public-holiday calendar for country {country!r} (expected e.g. 'FR')") from exc
    # Without an explicit language the names follow the process locale; marketers read French.
    if "fr" in calendar.supported_languages:
        calendar = holidays.country_holidays(country, years=year, language="fr")
    names = {day: str(name) for day, name in calendar.items()}
    _holiday_names[(country, year)] = names
    return names


def _refusal(local: datetime, window: WindowSpec, country: str, channel_name: str) -> str | None:
    """Why the local wall time ``local`` is outside ``window``, or None when it is inside."""
    weekday = local.weekday()
    if weekday not in window.days:
        return f"{WEEKDAY_NAMES[weekday]}: {channel_name} window"
    if window.skip_holidays:
        name = holiday_name(country, local.date())
        if name is not None:
            return f"public holiday: {name}"
    clock = local.time()
    previous_end: time | None = None
    for start, end in window.hours:
        if clock < start:
            if previous_end is None:
                return f"before {start:%H:%M}: {channel_name} window"
            return f"between {previous_end:%H:%M} and {start:%H:%M}: {channel_name} window"
        if end is None or clock < end:
            return None
        previous_end = end
    return f"after {previous_end:%H:%M}: {channel_name} window"


def _next_opening(
    local: datetime, window: WindowSpec, tz: ZoneInfo, country: str
) -> tuple[datetime, list[str]]:
    """The first allowed instant after ``local`` and the holidays skipped on the way there."""
    not_before = local.astimezone(UTC)
    skipped: list[str] = []
    first_day = day = local.date()
    for _ in range(MAX_DAYS_AHEAD):
        if day.weekday() in window.days:
            holiday = holiday_name(country, day) if window.skip_holidays else None
            if holiday is None:
                for candidate in sorted(_openings(day, window, tz)):
                    if (
                        candidate >= not_before
                        and _refusal(candidate.astimezone(tz), window, country, "") is None
                    ):
                        return candidate.astimezone(tz), skipped
            elif day != first_day:
                skipped.append(holiday)
        day += _ONE_DAY
    raise ConfigError(f"send window {window!r} never opens within {MAX_DAYS_AHEAD} days")


def _openings(day: date, window: WindowSpec, tz: ZoneInfo) -> list[datetime]:
    """UTC instants where an allowed stretch of ``day`` may begin: each range start and, on a DST
    day, both readings of an ambiguous start plus the transition itself (the first instant after a
    spring-forward gap, or the start of the repeated hour)."""
    day_start = datetime.combine(day, _MIDNIGHT, tzinfo=tz)
    offset = day_start.utcoffset()
    next_offset = (day_start + _ONE_DAY).utcoffset()
    if offset == next_offset and offset is not None:
        return [datetime.combine(day, start, tzinfo=UTC) - offset for start, _ in window.hours]
    candidates = [_transition(day_start.astimezone(UTC), (day_start + _ONE_DAY).astimezone(UTC), tz)]
    for start, _ in window.hours:
        for fold in (0, 1):
            candidates.append(datetime.combine(day, start, tzinfo=tz).replace(fold=fold).astimezone(UTC))
    return candidates


def _transition(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The first UTC second in (low, high] whose offset is the one in force at ``high``."""
    target = high.astimezone(tz).utcoffset()
    low_s, high_s = int(low.timestamp()), int(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == target:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)
