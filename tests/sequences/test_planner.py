"""The timeline planner: gaps from actual send times, windows, skipped steps, repeats and jitter."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequences.planner import DuePlanner, PlannedStep, lead_key, lead_zone, next_due, plan
from sequences.schema import Channel, Sequence

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LEAD: dict[str, Any] = {
    "id": "lead-1",
    "email": "camille@example.fr",
    "country": "FR",
    "timezone": "Europe/Paris",
}
FR_HOLIDAYS = holidays.country_holidays("FR", years=range(2024, 2034))


def email(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "channel": "email", "template": "t.j2", **extra}


def sms(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "channel": "sms", "text": "Bonjour. STOP au 36180", **extra}


def sequence(steps: list[dict[str, Any]], **fields: Any) -> Sequence:
    return Sequence.model_validate({"name": "nurture", "steps": steps, **fields})


def always(expression: str, lead: Mapping[str, Any]) -> bool:
    return True


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def test_saturday_evening_enrollment_sends_the_next_day_sms_on_monday_morning() -> None:
    seq = sequence([email("welcome"), sms("reminder", wait="1d")])
    timeline = plan(seq, LEAD, paris(2026, 12, 19, 19, 30), condition=always)
    assert [(p.step_id, p.at, p.moved) for p in timeline] == [
        ("welcome", paris(2026, 12, 19, 19, 30), None),
        ("reminder", paris(2026, 12, 21, 8, 0), "Sunday: sms window"),
    ]
    assert timeline[0].gap is None
    assert timeline[1].gap == timedelta(hours=36, minutes=30)


def test_the_gap_counts_from_the_actual_send_time_after_a_move() -> None:
    seq = sequence([sms("first"), sms("second", wait="2h")])
    timeline = plan(seq, LEAD, paris(2026, 12, 24, 21, 0), condition=always)
    assert timeline[0].at == paris(2026, 12, 26, 8, 0)
    assert timeline[0].moved == "after 20:00: sms window, then public holiday: Noël"
    assert timeline[1].at == paris(2026, 12, 26, 10, 0)


def test_times_round_up_to_whole_minutes() -> None:
    seq = sequence([email("welcome"), email("next", wait="90s")])
    timeline = plan(seq, LEAD, paris(2026, 6, 2, 10, 0, 1), condition=always)
    assert [p.at for p in timeline] == [paris(2026, 6, 2, 10, 1), paris(2026, 6, 2, 10, 3)]


def test_golden_gaps_round_up_per_step() -> None:
    seq = sequence([email(f"e{i}") for i in range(4)], spacing={"golden": {"first": "1d", "ratio": 1.618}})
    timeline = plan(seq, LEAD, paris(2026, 6, 1, 9, 0), condition=always)
    assert [p.gap for p in timeline[1:]] == [
        timedelta(days=1),
        timedelta(days=1, hours=14, minutes=50),  # 1.618 d = 1 d 14:49:55.2
        timedelta(days=2, hours=14, minutes=50),  # 2.617924 d = 2 d 14:49:48.6
    ]


def test_a_false_condition_skips_the_step_and_the_next_gap_counts_from_its_due_time() -> None:
    seq = sequence(
        [email("welcome"), sms("nudge", wait="1d", **{"if": "lead.phone"}), email("follow-up", wait="1d")]
    )
    seen: list[str] = []

    def no_phone(expression: str, lead: Mapping[str, Any]) -> bool:
        seen.append(expression)
        return False

    timeline = plan(seq, LEAD, paris(2026, 12, 19, 19, 30), condition=no_phone)
    assert seen == ["lead.phone"]
    skipped = timeline[1]
    assert (skipped.skipped, skipped.moved, skipped.at) == (True, None, paris(2026, 12, 20, 19, 30))
    assert timeline[2].at == paris(2026, 12, 21, 19, 30)
    assert not timeline[2].skipped


def test_transactional_steps_ignore_the_marketing_window() -> None:
    seq = sequence([sms("receipt", transactional=True), sms("promo", wait="0")])
    sunday = paris(2026, 12, 20, 11, 0)
    receipt, promo = plan(seq, LEAD, sunday, condition=always)
    assert (receipt.at, receipt.moved) == (sunday, None)
    assert promo.moved == "Sunday: sms window"


def test_planned_steps_carry_channel_cycle_and_variants() -> None:
    variants = [{"id": "a", "weight": 50, "template": "a.j2"}, {"id": "b", "weight": 50, "template": "b.j2"}]
    seq = sequence([{"id": "offer", "channel": "email", "variants": variants}])
    (planned,) = plan(seq, LEAD, paris(2026, 6, 1, 9, 0), condition=always)
    assert planned == PlannedStep(
        step_id="offer",
        channel=Channel.EMAIL,
        at=paris(2026, 6, 1, 9, 0),
        gap=None,
        moved=None,
        skipped=False,
        cycle=1,
        variant_ids=("a", "b"),
    )


def test_repeat_restarts_every_month_after_enrollment_in_local_time() -> None:
    seq = sequence([email("check-in"), email("offer", wait="2d")], repeat={"every": "P1M", "times": 3})
    timeline = plan(seq, LEAD, paris(2026, 2, 27, 10, 0), cycles=5, condition=always)
    firsts = [p.at for p in timeline if p.step_id == "check-in"]
    assert firsts == [paris(2026, 2, 27, 10, 0), paris(2026, 3, 27, 10, 0), paris(2026, 4, 27, 10, 0)]
    assert [p.cycle for p in timeline] == [1, 1, 2, 2, 3, 3]
    assert timeline[2].gap == paris(2026, 3, 27, 10, 0) - paris(2026, 3, 1, 10, 0)


def test_repeat_is_anchored_on_enrollment_and_windowed_again() -> None:
    seq = sequence([sms("call-me")], repeat={"every": "7d"})
    timeline = plan(seq, LEAD, paris(2026, 12, 13, 12, 0), cycles=3, condition=always)  # a Sunday
    assert [p.at for p in timeline] == [
        paris(2026, 12, 14, 8, 0),
        paris(2026, 12, 21, 8, 0),
        paris(2026, 12, 28, 8, 0),
    ]


def test_without_repeat_a_sequence_runs_once() -> None:
    seq = sequence([email("only")])
    assert len(plan(seq, LEAD, paris(2026, 6, 1, 9, 0), cycles=4, condition=always)) == 1
    with pytest.raises(ValueError, match="cycles"):
        plan(seq, LEAD, paris(2026, 6, 1, 9, 0), cycles=0, condition=always)


def test_plan_needs_an_aware_start() -> None:
    with pytest.raises(ValueError, match="aware"):
        plan(sequence([email("only")]), LEAD, datetime(2026, 6, 1, 9, 0), condition=always)


def test_exact_gaps_are_elapsed_time_across_dst() -> None:
    seq = sequence([email("first"), email("second", wait="12h")])
    decision = next_due(seq, 1, paris(2026, 3, 28, 20, 0), tz=PARIS, country="FR", lead_key="x")
    assert decision.at == paris(2026, 3, 29, 9, 0)  # 12 real hours: the clocks skipped 02:00-03:00
    assert decision.at.astimezone(UTC) - paris(2026, 3, 28, 20, 0).astimezone(UTC) == timedelta(hours=12)


def test_next_due_applies_gap_jitter_rounding_and_window() -> None:
    seq = sequence([email("welcome"), sms("nudge")], spacing={"fixed": "1d"}, jitter="30m")
    due = [
        next_due(seq, 1, paris(2026, 6, 1, 10, 0), tz=PARIS, country="FR", lead_key=f"l{n}")
        for n in range(200)
    ]
    offset_seconds = [d.at.timestamp() - paris(2026, 6, 2, 10, 0).timestamp() for d in due]
    assert all(0 <= s <= 30 * 60 and s % 60 == 0 for s in offset_seconds)
    assert len(set(offset_seconds)) > 20
    late = next_due(seq, 1, paris(2026, 6, 1, 19, 59), tz=PARIS, country="FR", lead_key="l1")
    assert late.at == paris(2026, 6, 3, 8, 0)
    assert late.moved == "after 20:00: sms window"


def test_lead_zone_prefers_the_lead_then_its_phone_then_the_sequence() -> None:
    seq = sequence([email("only")])
    assert lead_zone(seq, {"timezone": "America/New_York", "country": "us"}) == (NEW_YORK, "US")
    assert lead_zone(seq, {"phone": "+1 212 555 0100"}) == (NEW_YORK, "US")
    assert lead_zone(seq, {"phone": "06 12 34 56 78"}) == (PARIS, "FR")
    assert lead_zone(seq, {"timezone": "Mars/Olympus", "country": "XX", "phone": "not a phone"}) == (
        PARIS,
        "FR",
    )
    assert lead_zone(sequence([email("only")], timezone="Asia/Tokyo", country="JP"), {}) == (
        ZoneInfo("Asia/Tokyo"),
        "JP",
    )


def test_lead_key_is_the_id_then_email_then_phone() -> None:
    assert lead_key({"id": 7, "email": "a@b.c"}) == "7"
    assert lead_key({"email": "a@b.c", "phone": "+33612345678"}) == "a@b.c"
    assert lead_key({"phone": "+33612345678"}) == "+33612345678"


# -- Properties

golden = st.fixed_dictionaries(
    {
        "first": st.integers(10, 3 * 24 * 60).map(lambda m: timedelta(minutes=m)),
        "ratio": st.floats(1.05, 2.5),
        "max_gap": st.integers(3, 40).map(lambda d: timedelta(days=d)),
    }
).filter(lambda g: g["max_gap"] >= g["first"])
starts = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)
)
leads = st.sampled_from(
    [
        LEAD,
        {"id": "ny", "timezone": "America/New_York", "country": "FR"},
        {"id": "p", "phone": "+33612345678"},
    ]
)


@settings(deadline=None, max_examples=150)
@given(
    spacing=golden,
    start=starts,
    lead=leads,
    channels=st.lists(st.sampled_from(["email", "sms"]), min_size=1, max_size=8),
)
def test_planned_sms_always_land_inside_the_window(
    spacing: dict[str, Any], start: datetime, lead: dict[str, Any], channels: list[str]
) -> None:
    steps = [email(f"s{i}") if c == "email" else sms(f"s{i}") for i, c in enumerate(channels)]
    seq = sequence(steps, spacing={"golden": spacing}, jitter="45m")
    timeline = plan(seq, lead, start, condition=always)
    tz, _ = lead_zone(seq, lead)
    previous = start
    for planned in timeline:
        assert planned.at.tzinfo is tz
        assert planned.at.astimezone(UTC) >= previous.astimezone(UTC)
        assert planned.at.second == planned.at.microsecond == 0
        if planned.channel is Channel.SMS:
            local = planned.at
            assert local.weekday() != 6
            assert local.date() not in FR_HOLIDAYS
            assert time(8, 0) <= local.time() < time(20, 0)
        previous = planned.at
    assert plan(seq, lead, start, condition=always) == timeline


@settings(deadline=None, max_examples=100)
@given(spacing=golden, start=starts, count=st.integers(2, 12))
def test_email_gaps_grow_by_the_ratio_until_the_cap(
    spacing: dict[str, Any], start: datetime, count: int
) -> None:
    seq = sequence([email(f"s{i}") for i in range(count)], spacing={"golden": spacing})
    timeline = plan(seq, LEAD, start.replace(second=0, microsecond=0), condition=always)
    first, ratio, cap = spacing["first"].total_seconds(), spacing["ratio"], spacing["max_gap"].total_seconds()
    for k, planned in enumerate(timeline[1:], start=1):
        expected = min(first * ratio ** (k - 1), cap)
        assert planned.gap is not None
        assert planned.gap.total_seconds() == 60 * math.ceil(round(expected, 6) / 60)


@settings(deadline=None, max_examples=50)
@given(start=starts, count=st.integers(2, 10))
def test_fibonacci_timeline(start: datetime, count: int) -> None:
    seq = sequence([email(f"s{i}") for i in range(count)], spacing={"fibonacci": {"unit": "1h"}})
    timeline = plan(seq, LEAD, start.replace(second=0, microsecond=0), condition=always)
    fib = [1, 1, 2, 3, 5, 8, 13, 21, 34]
    assert [p.gap for p in timeline[1:]] == [timedelta(hours=h) for h in fib[: count - 1]]


def test_by_default_conditions_use_the_sequence_language_evaluator() -> None:
    seq = sequence([email("welcome"), sms("nudge", wait="1d", **{"if": "lead.phone"})])
    start = paris(2026, 6, 1, 9, 0)
    without_phone = plan(seq, {**LEAD, "phone": ""}, start)
    with_phone = plan(seq, {**LEAD, "phone": "+33612345678"}, start)
    assert [p.skipped for p in without_phone] == [False, True]
    assert [p.skipped for p in with_phone] == [False, False]


@settings(max_examples=60, deadline=None)
@given(
    starts=st.lists(
        st.datetimes(
            min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
        ),
        min_size=1,
        max_size=4,
    ),
    zones=st.lists(
        st.tuples(st.sampled_from(["Europe/Paris", "America/New_York"]), st.sampled_from(["FR", "DE", "US"]))
    ),
    jitter=st.sampled_from([None, "20m", "3h"]),
)
def test_the_batch_planner_agrees_with_next_due_for_every_lead(
    starts: list[datetime], zones: list[tuple[str, str]], jitter: str | None
) -> None:
    """One ``DuePlanner`` reused over many leads, instants, zones and two sequences gives exactly
    what ``next_due`` gives each of them alone."""
    fields: dict[str, Any] = {"spacing": {"golden": {"first": "1d", "ratio": 1.618}}}
    if jitter:
        fields["jitter"] = jitter
    sequences = [
        sequence([email("welcome"), sms("nudge"), email("last")], **fields),
        sequence([sms("hello"), email("follow-up", transactional=True), sms("bye")], **fields),
    ]
    starts = [datetime(2026, 7, 13, 8, 0, tzinfo=UTC), *starts]  # step 1 due on 14 July: a holiday in FR only
    planner = DuePlanner()
    for n in range(120):
        seq = sequences[n % 2]
        tz_name, country = zones[n % len(zones)] if zones else ("Europe/Paris", "FR")
        tz = ZoneInfo(tz_name)
        previous, index, key = starts[n % len(starts)], 1 + n % 2, f"lead-{n % 7}"
        expected = next_due(seq, index, previous, tz=tz, country=country, lead_key=key)
        assert planner.next_due(seq, index, previous, tz=tz, country=country, lead_key=key) == expected
