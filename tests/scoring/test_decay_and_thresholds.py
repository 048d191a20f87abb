"""Decay and status thresholds against hand-computed values, plus properties of the decay."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.decay import decay_factor, decayed
from scoring.fit import grade_of
from scoring.rules import Grade, ScoringRules, load_rules, scoring_path
from scoring.status import next_status, status_of
from tests.scoring.helpers import SEQUENCES_DIR

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HALF_LIFE = timedelta(days=30)


@pytest.fixture(scope="module")
def rules() -> ScoringRules:
    return load_rules(scoring_path(SEQUENCES_DIR))


@pytest.mark.parametrize(
    ("points", "days", "expected"),
    [
        (40, 0, 40.0),  # no time, no decay
        (40, 30, 20.0),  # one half-life halves it
        (40, 60, 10.0),  # two half-lives: a quarter
        (40, 15, 40 / math.sqrt(2)),  # half a half-life: 28.284...
        (50, 90, 6.25),  # a meeting three months ago
        (-50, 30, -25.0),  # an unsubscribe fades the same way
        (10, -5, 10.0),  # an instant before the points were earned: untouched
    ],
)
def test_decay_by_hand(points: float, days: float, expected: float) -> None:
    assert decayed(points, T0, T0 + timedelta(days=days), HALF_LIFE) == pytest.approx(expected)


def test_two_events_add_up_each_faded_by_its_own_age() -> None:
    # A download (10) on day 0 and a pricing-page visit (20) on day 30, read on day 60:
    # 10 * 1/4 + 20 * 1/2 = 12.5
    total = decayed(10, T0, T0 + timedelta(days=60), HALF_LIFE) + decayed(
        20, T0 + timedelta(days=30), T0 + timedelta(days=60), HALF_LIFE
    )
    assert total == pytest.approx(12.5)


@given(
    points=st.floats(min_value=-1000, max_value=1000, allow_nan=False),
    first=st.floats(min_value=0, max_value=400),
    second=st.floats(min_value=0, max_value=400),
)
def test_decaying_in_two_steps_is_decaying_once(points: float, first: float, second: float) -> None:
    middle, end = T0 + timedelta(days=first), T0 + timedelta(days=first + second)
    in_two = decayed(decayed(points, T0, middle, HALF_LIFE), middle, end, HALF_LIFE)
    assert in_two == pytest.approx(decayed(points, T0, end, HALF_LIFE), rel=1e-9, abs=1e-9)


@given(days=st.floats(min_value=0, max_value=3650))
def test_the_decay_factor_never_grows_and_stays_positive(days: float) -> None:
    factor = decay_factor(timedelta(days=days), HALF_LIFE)
    assert 0 < factor <= 1
    assert decay_factor(timedelta(days=days + 1), HALF_LIFE) <= factor


@pytest.mark.parametrize(
    ("fit", "grade"),
    [(60, Grade.A), (50, Grade.A), (49.9, Grade.B), (30, Grade.B), (15, Grade.C), (14, Grade.D)],
)
def test_grades(rules: ScoringRules, fit: float, grade: Grade) -> None:
    assert grade_of(fit, rules) is grade


@pytest.mark.parametrize(
    ("fit", "engagement", "status"),
    [
        (60, 0, "warm"),  # A: warm from the first touch
        (60, -0.1, "cold"),  # ... unless its engagement went negative (unsubscribe)
        (60, 29.99, "warm"),
        (60, 30, "hot"),  # A: hot at 30
        (40, 9.99, "cold"),
        (40, 10, "warm"),  # B: warm at 10 (a download)
        (40, 44.9, "warm"),
        (40, 45, "hot"),  # B: hot at 45
        (20, 19.9, "cold"),
        (20, 20, "warm"),  # C: warm at 20
        (20, 70, "hot"),  # C: hot at 70
        (10, 29.9, "cold"),
        (10, 30, "warm"),  # D: warm at 30 ...
        (10, 10_000, "warm"),  # ... and never hot: sales does not call a lead it knows nothing about
    ],
)
def test_thresholds(rules: ScoringRules, fit: float, engagement: float, status: str) -> None:
    assert status_of(fit, engagement, rules).value == status


def test_a_hot_lead_moves_down_as_its_engagement_fades(rules: ScoringRules) -> None:
    # Fit A with 40 points of engagement is hot; 15 days later 40/sqrt(2) = 28.3 < 30: warm;
    # 60 days later 10: still warm (A); with a negative balance: cold.
    assert status_of(60, 40, rules).value == "hot"
    later = decayed(40, T0, T0 + timedelta(days=15), rules.engagement.half_life)
    assert next_status("hot", 60, later, rules) is not None
    assert next_status("hot", 60, later, rules).value == "warm"  # type: ignore[union-attr]
    assert next_status("hot", 60, later, rules, held_by_sales=True) is None  # sales first
    assert next_status("warm", 60, 10, rules) is None  # no move
    assert next_status("customer", 60, 100, rules) is None  # customers are not scored into a status
