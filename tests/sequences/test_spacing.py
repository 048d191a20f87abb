"""Spacing rules: golden spiral, fibonacci, fixed gaps, per-step waits and per-lead jitter."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequences.schema import Sequence, SpacingSpec
from sequences.spacing import gap_before, jitter_offset, spacing_gap
from spirale.errors import SequenceError

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def sequence(**fields: Any) -> Sequence:
    steps = fields.pop("steps", None) or [
        {"id": f"s{i}", "channel": "email", "template": "t.j2"} for i in range(4)
    ]
    return Sequence.model_validate({"name": "nurture", "steps": steps, **fields})


def test_golden_gaps_grow_by_phi_from_the_first_gap() -> None:
    spacing = SpacingSpec.model_validate({"golden": {"first": "1d", "ratio": 1.618}})
    assert spacing_gap(spacing, 1) == DAY
    assert spacing_gap(spacing, 2) == timedelta(seconds=86400 * 1.618)
    assert spacing_gap(spacing, 3) == timedelta(seconds=86400 * 1.618**2)


def test_golden_gaps_stop_at_the_cap() -> None:
    spacing = SpacingSpec.model_validate({"golden": {"first": "1d", "ratio": 2, "max_gap": "5d"}})
    assert [spacing_gap(spacing, k) for k in range(1, 6)] == [DAY, 2 * DAY, 4 * DAY, 5 * DAY, 5 * DAY]


@given(
    first_minutes=st.integers(min_value=1, max_value=60 * 24 * 7),
    ratio=st.floats(min_value=1.01, max_value=3.0),
    cap_factor=st.floats(min_value=1.0, max_value=50.0),
    k=st.integers(min_value=1, max_value=60),
)
def test_golden_gap_is_first_times_ratio_power_until_the_cap(
    first_minutes: int, ratio: float, cap_factor: float, k: int
) -> None:
    first = timedelta(minutes=first_minutes)
    cap = timedelta(seconds=round(first.total_seconds() * cap_factor))
    spacing = SpacingSpec.model_validate({"golden": {"first": first, "ratio": ratio, "max_gap": cap}})
    gap, following = spacing_gap(spacing, k), spacing_gap(spacing, k + 1)
    uncapped = first.total_seconds() * ratio ** (k - 1)
    assert gap == (cap if uncapped >= cap.total_seconds() else timedelta(seconds=uncapped))
    assert gap <= following <= cap
    if following < cap:
        assert following.total_seconds() == pytest.approx(gap.total_seconds() * ratio, abs=2e-6 * ratio)


def test_fibonacci_gaps_follow_the_sequence_until_the_cap() -> None:
    spacing = SpacingSpec.model_validate({"fibonacci": {"unit": "1h", "max_gap": "10h"}})
    assert [spacing_gap(spacing, k) / HOUR for k in range(1, 9)] == [1, 1, 2, 3, 5, 8, 10, 10]


@given(k=st.integers(min_value=3, max_value=50))
def test_fibonacci_gap_is_the_sum_of_the_two_before(k: int) -> None:
    spacing = SpacingSpec.model_validate({"fibonacci": {"unit": "1m"}})
    assert spacing_gap(spacing, k) == spacing_gap(spacing, k - 1) + spacing_gap(spacing, k - 2)


def test_fixed_gap_never_changes() -> None:
    spacing = SpacingSpec.model_validate({"fixed": "3d"})
    assert {spacing_gap(spacing, k) for k in range(1, 20)} == {3 * DAY}


def test_an_uncapped_spiral_that_outgrows_dates_is_a_sequence_error() -> None:
    spacing = SpacingSpec.model_validate({"golden": {"first": "1d", "ratio": 10}})
    with pytest.raises(SequenceError, match="max_gap"):
        spacing_gap(spacing, 400)
    fibonacci = SpacingSpec.model_validate({"fibonacci": {"unit": "1d"}})
    with pytest.raises(SequenceError, match="max_gap"):
        spacing_gap(fibonacci, 2000)


def test_a_capped_spiral_stays_at_the_cap_forever() -> None:
    spacing = SpacingSpec.model_validate({"golden": {"first": "1d", "ratio": 10, "max_gap": "90d"}})
    assert spacing_gap(spacing, 10_000) == 90 * DAY


def test_gaps_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        spacing_gap(SpacingSpec.model_validate({"fixed": "1d"}), 0)


def test_gap_before_uses_wait_first_then_the_spacing_rule() -> None:
    seq = sequence(
        spacing={"golden": {"first": "1d", "ratio": 2}},
        steps=[
            {"id": "welcome", "channel": "email", "template": "t.j2"},
            {"id": "second", "channel": "email", "template": "t.j2"},
            {"id": "third", "channel": "email", "template": "t.j2", "wait": "6h"},
            {"id": "fourth", "channel": "email", "template": "t.j2"},
        ],
    )
    assert [gap_before(seq, i) for i in range(4)] == [timedelta(0), DAY, 6 * HOUR, 4 * DAY]


def test_first_step_waits_only_when_it_says_so() -> None:
    seq = sequence(steps=[{"id": "later", "channel": "email", "template": "t.j2", "wait": "2h"}])
    assert gap_before(seq, 0) == 2 * HOUR


def test_no_jitter_means_no_offset() -> None:
    assert jitter_offset(sequence(), "lead@example.com", 2) == timedelta(0)


@given(lead=st.text(max_size=40), index=st.integers(min_value=0, max_value=50), minutes=st.integers(1, 600))
def test_jitter_is_stable_and_inside_its_span(lead: str, index: int, minutes: int) -> None:
    seq = sequence(jitter=timedelta(minutes=minutes))
    offset = jitter_offset(seq, lead, index)
    assert timedelta(0) <= offset < timedelta(minutes=minutes)
    assert offset == jitter_offset(seq, lead, index)


def test_jitter_spreads_leads_over_the_span() -> None:
    seq = sequence(jitter="2h")
    offsets = [jitter_offset(seq, f"lead-{n}@example.com", 1).total_seconds() for n in range(2000)]
    assert len(set(offsets)) > 1500
    assert math.isclose(sum(offsets) / len(offsets), 3600, rel_tol=0.1)
    assert jitter_offset(seq, "a@example.com", 1) != jitter_offset(seq, "a@example.com", 2)
