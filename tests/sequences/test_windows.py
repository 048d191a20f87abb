"""Send windows: exclusive ends, Sundays, French public holidays and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequences.schema import WINDOW_PROFILES, WindowSpec, parse_days, parse_hours
from sequences.windows import WindowDecision, holiday_name, is_allowed, next_allowed
from spirale.errors import ConfigError

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
SMS = WINDOW_PROFILES["fr-marketing"]
PHONE = WINDOW_PROFILES["fr-phone-prospecting"]
FR_HOLIDAYS = holidays.country_holidays("FR", years=range(2024, 2032))

instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
zones = st.sampled_from([PARIS, NEW_YORK, ZoneInfo("Asia/Tokyo"), ZoneInfo("Australia/Sydney")])


def paris(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=PARIS, fold=fold)  # type: ignore[misc]


def window(hours: str, days: str = "all") -> WindowSpec:
    return WindowSpec(days=parse_days(days), hours=parse_hours(hours))


def test_sms_at_19_59_59_goes_and_at_20_00_00_waits_for_the_next_morning() -> None:
    assert is_allowed(paris(2026, 12, 18, 19, 59, 59), SMS, PARIS, "FR")
    assert not is_allowed(paris(2026, 12, 18, 20, 0, 0), SMS, PARIS, "FR")
    assert next_allowed(paris(2026, 12, 18, 19, 59, 59), SMS, PARIS, "FR", "sms") == WindowDecision(
        paris(2026, 12, 18, 19, 59, 59), None
    )
    assert next_allowed(paris(2026, 12, 18, 20, 0, 0), SMS, PARIS, "FR", "sms") == WindowDecision(
        paris(2026, 12, 19, 8, 0), "after 20:00: sms window"
    )


def test_sms_before_8_waits_until_8_the_same_day() -> None:
    decision = next_allowed(paris(2026, 12, 21, 7, 59, 59), SMS, PARIS, "FR", "sms")
    assert decision == WindowDecision(paris(2026, 12, 21, 8, 0), "before 08:00: sms window")
    assert is_allowed(paris(2026, 12, 21, 8, 0), SMS, PARIS, "FR")


def test_sunday_sms_waits_for_monday_morning() -> None:
    decision = next_allowed(paris(2026, 12, 20, 19, 30), SMS, PARIS, "FR", "sms")
    assert decision == WindowDecision(paris(2026, 12, 21, 8, 0), "Sunday: sms window")


def test_christmas_2026_is_a_friday_and_sms_waits_for_saturday() -> None:
    assert holiday_name("FR", datetime(2026, 12, 25).date()) == "Noël"
    decision = next_allowed(paris(2026, 12, 25, 10, 0), SMS, PARIS, "FR", "sms")
    assert decision == WindowDecision(paris(2026, 12, 26, 8, 0), "public holiday: Noël")


def test_an_evening_before_a_holiday_names_the_holiday_it_skips() -> None:
    decision = next_allowed(paris(2026, 12, 24, 21, 0), SMS, PARIS, "FR", "sms")
    assert decision.at == paris(2026, 12, 26, 8, 0)
    assert decision.moved == "after 20:00: sms window, then public holiday: Noël"


def test_phone_window_names_the_lunch_break() -> None:
    decision = next_allowed(paris(2026, 12, 21, 13, 0), PHONE, PARIS, "FR", "call")
    assert decision == WindowDecision(paris(2026, 12, 21, 14, 0), "between 13:00 and 14:00: call window")


def test_holidays_are_ignored_when_the_window_does_not_skip_them() -> None:
    relaxed = WindowSpec(days=SMS.days, hours=SMS.hours, skip_holidays=False)
    assert is_allowed(paris(2026, 12, 25, 10, 0), relaxed, PARIS, "FR")


def test_holidays_follow_the_lead_country() -> None:
    independence_day = datetime(2026, 7, 3, 15, 0, tzinfo=NEW_YORK)  # observed on Friday July 3rd
    assert is_allowed(independence_day, SMS, NEW_YORK, "FR")
    assert not is_allowed(independence_day, SMS, NEW_YORK, "US")


def test_an_unknown_country_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'XX'"):
        is_allowed(paris(2026, 12, 21, 10, 0), SMS, PARIS, "XX")


def test_decisions_are_in_the_lead_time_zone() -> None:
    decision = next_allowed(datetime(2026, 12, 21, 15, 0, tzinfo=UTC), SMS, NEW_YORK, "US", "sms")
    assert decision.at.tzinfo is NEW_YORK
    assert decision.at == datetime(2026, 12, 21, 15, 0, tzinfo=UTC)
    assert decision.moved is None


# -- DST: Europe/Paris springs forward on 2026-03-29 (02:00 -> 03:00) and falls back on 2026-10-25
# (03:00 -> 02:00); America/New_York on 2026-03-08 and 2026-11-01.


def test_a_start_in_the_spring_forward_gap_resolves_to_the_first_real_instant() -> None:
    decision = next_allowed(paris(2026, 3, 29, 1, 0), window("02:30-03:15"), PARIS, "FR", "sms")
    assert decision.at.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert (decision.at.hour, decision.at.minute) == (3, 0)


def test_a_range_lost_in_the_spring_forward_gap_is_skipped() -> None:
    decision = next_allowed(paris(2026, 3, 29, 1, 0), window("02:00-02:45, 05:00-06:00"), PARIS, "FR", "sms")
    assert decision.at == paris(2026, 3, 29, 5, 0)


def test_a_start_in_the_repeated_hour_takes_its_first_occurrence() -> None:
    decision = next_allowed(paris(2026, 10, 25, 1, 30), window("02:15-04:00"), PARIS, "FR", "sms")
    assert decision.at.astimezone(UTC) == datetime(2026, 10, 25, 0, 15, tzinfo=UTC)  # 02:15 CEST


def test_a_due_time_in_the_second_repeated_hour_is_not_moved_back() -> None:
    at = paris(2026, 10, 25, 2, 0, fold=1)  # 02:00 CET, after the clocks went back
    decision = next_allowed(at, window("02:15-04:00"), PARIS, "FR", "sms")
    assert decision.at.astimezone(UTC) == datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET


def test_the_repeated_hour_reopens_a_window_that_ended_inside_it() -> None:
    at = paris(2026, 10, 25, 2, 45)  # 02:45 CEST: after 02:30, but 02:00-02:30 CET is still to come
    decision = next_allowed(at, window("01:00-02:30"), PARIS, "FR", "sms")
    assert decision.at.astimezone(UTC) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    assert decision.moved == "after 02:30: sms window"


def test_new_york_spring_forward_and_fall_back() -> None:
    spring = next_allowed(
        datetime(2026, 3, 8, 1, 0, tzinfo=NEW_YORK), window("02:30-09:00"), NEW_YORK, "US", "sms"
    )
    assert spring.at.astimezone(UTC) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT
    fall = next_allowed(
        datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK), window("01:30-09:00"), NEW_YORK, "US", "sms"
    )
    assert fall.at.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, first pass


def test_sms_window_after_dst_keeps_local_hours() -> None:
    friday_evening = paris(2026, 3, 27, 21, 0)
    assert next_allowed(friday_evening, SMS, PARIS, "FR", "sms").at == paris(2026, 3, 28, 8, 0)
    saturday_evening = paris(2026, 3, 28, 21, 0)
    monday = next_allowed(saturday_evening, SMS, PARIS, "FR", "sms").at
    assert monday == paris(2026, 3, 30, 8, 0)
    assert monday.utcoffset() == timedelta(hours=2)


# -- Properties


def assert_inside_sms_hours(local: datetime) -> None:
    assert local.weekday() != 6
    assert local.date() not in FR_HOLIDAYS
    assert time(8, 0) <= local.time() < time(20, 0)


@settings(deadline=None, max_examples=300)
@given(at=instants, tz=zones)
def test_sms_never_goes_out_on_sundays_holidays_or_outside_8_to_20(at: datetime, tz: ZoneInfo) -> None:
    decision = next_allowed(at, SMS, tz, "FR", "sms")
    assert decision.at >= at
    assert decision.at.tzinfo is tz
    assert_inside_sms_hours(decision.at)
    assert (decision.moved is None) == (decision.at == at)


@settings(deadline=None, max_examples=200)
@given(at=instants, tz=zones, profile=st.sampled_from(sorted(WINDOW_PROFILES)), fraction=st.floats(0, 1))
def test_the_decision_is_the_earliest_allowed_instant(
    at: datetime, tz: ZoneInfo, profile: str, fraction: float
) -> None:
    spec = WINDOW_PROFILES[profile]
    decision = next_allowed(at, spec, tz, "FR", "sms")
    assert is_allowed(decision.at, spec, tz, "FR")
    between = at + (decision.at - at) * fraction
    if between < decision.at:
        assert not is_allowed(between, spec, tz, "FR")


# The weeks around the DST changes of Europe/Paris (March/October) and America/New_York (March/November).
DST_WEEKS = [(2026, 3, 26), (2026, 10, 22), (2026, 3, 5), (2026, 10, 29), (2027, 3, 25), (2027, 10, 28)]
dst_weeks = st.sampled_from([datetime(*day, tzinfo=UTC) for day in DST_WEEKS])


@settings(deadline=None, max_examples=300)
@given(
    week=dst_weeks,
    minutes=st.integers(0, 7 * 24 * 60),
    tz=st.sampled_from([PARIS, NEW_YORK]),
    start=st.integers(0, 23 * 4),
    length=st.integers(1, 8),
    fraction=st.floats(0, 1),
)
def test_windows_across_dst_changes_hold_and_are_earliest(
    week: datetime, minutes: int, tz: ZoneInfo, start: int, length: int, fraction: float
) -> None:
    begin = time(start // 4, start % 4 * 15)
    end_minutes = min(start * 15 + length * 15, 24 * 60)
    hours = f"{begin:%H:%M}-{end_minutes // 60:02d}:{end_minutes % 60:02d}"
    spec = window(hours)
    at = week + timedelta(minutes=minutes)
    decision = next_allowed(at, spec, tz, "US", "sms")
    assert decision.at >= at
    assert is_allowed(decision.at, spec, tz, "US")
    local = decision.at.astimezone(tz)
    assert local.time() >= begin
    between = at + (decision.at - at) * fraction
    if between < decision.at:
        assert not is_allowed(between, spec, tz, "US")


@given(at=instants, tz=zones)
def test_decisions_are_deterministic(at: datetime, tz: ZoneInfo) -> None:
    first = next_allowed(at, PHONE, tz, "FR", "call")
    again = next_allowed(at.astimezone(tz), PHONE, tz, "FR", "call")
    assert first == again
    assert first.at.fold == again.at.fold
