"""The A/B statistics, checked against scipy and statsmodels on a table of cases (both are
development dependencies: the runtime module is plain Python)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from scoring.ab_stats import (
    ArmCounts,
    CountsError,
    about,
    analyze,
    newcombe_interval,
    parse_counts,
    prob_to_beat,
    relative_lift_interval,
    required_per_arm,
    wilson_interval,
    z_test_p_value,
)

# (variant conversions, variant n, holdout conversions, holdout n)
CASES = [
    (45, 1000, 30, 1000),
    (30, 1000, 45, 1000),
    (1, 20, 0, 20),
    (0, 50, 3, 50),
    (12, 150, 4, 140),
    (250, 5000, 200, 5000),
    (7, 7, 2, 9),
    (980, 1000, 950, 1000),
    (33, 2700, 9, 300),
    (5, 40000, 3, 40000),
]


@pytest.mark.parametrize(("c1", "n1", "c0", "n0"), CASES)
def test_wilson_interval_matches_statsmodels(c1: int, n1: int, c0: int, n0: int) -> None:
    for successes, n in ((c1, n1), (c0, n0)):
        low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
        assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize(("c1", "n1", "c0", "n0"), CASES)
def test_newcombe_difference_interval_matches_statsmodels(c1: int, n1: int, c0: int, n0: int) -> None:
    low, high = confint_proportions_2indep(c1, n1, c0, n0, method="newcomb", compare="diff", alpha=0.05)
    assert newcombe_interval(c1, n1, c0, n0) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize(("c1", "n1", "c0", "n0"), CASES)
def test_relative_lift_interval_matches_statsmodels_log_ratio(c1: int, n1: int, c0: int, n0: int) -> None:
    ours = relative_lift_interval(c1, n1, c0, n0)
    if c1 == 0 or c0 == 0:
        assert ours is None
        return
    low, high = confint_proportions_2indep(c1, n1, c0, n0, method="log", compare="ratio", alpha=0.05)
    assert ours == pytest.approx((low - 1, high - 1), rel=1e-9)


@pytest.mark.parametrize(("c1", "n1", "c0", "n0"), CASES)
def test_z_test_p_value_matches_statsmodels_pooled(c1: int, n1: int, c0: int, n0: int) -> None:
    _, p_value = proportions_ztest([c1, c0], [n1, n0], alternative="two-sided", prop_var=False)
    assert z_test_p_value(c1, n1, c0, n0) == pytest.approx(float(p_value), rel=1e-9, abs=1e-15)


def _integrated_prob(c1: int, n1: int, c0: int, n0: int) -> float:
    variant, holdout = stats.beta(1 + c1, 1 + n1 - c1), stats.beta(1 + c0, 1 + n0 - c0)
    # P(p1 > p0) = integral of pdf_1(x) * cdf_0(x). The posteriors are narrow: integrate only where
    # the variant has mass, split at the means, or quad misses the peak.
    low, high = variant.ppf(1e-13), variant.ppf(1 - 1e-13)
    breaks = sorted(m for m in {variant.mean(), holdout.mean()} if low < m < high)
    value, _ = integrate.quad(lambda x: variant.pdf(x) * holdout.cdf(x), low, high, points=breaks, limit=500)
    return float(value)


@pytest.mark.parametrize(("c1", "n1", "c0", "n0"), CASES)
def test_probability_to_beat_matches_numerical_integration(c1: int, n1: int, c0: int, n0: int) -> None:
    assert prob_to_beat(c1, n1, c0, n0) == pytest.approx(_integrated_prob(c1, n1, c0, n0), abs=1e-6)


@given(n1=st.integers(1, 400), n0=st.integers(1, 400), f1=st.floats(0, 1), f0=st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_probabilities_to_beat_are_complementary_and_bounded(n1: int, n0: int, f1: float, f0: float) -> None:
    c1, c0 = round(n1 * f1), round(n0 * f0)
    forward, backward = prob_to_beat(c1, n1, c0, n0), prob_to_beat(c0, n0, c1, n1)
    assert 0.0 <= forward <= 1.0
    assert forward + backward == pytest.approx(1.0, abs=1e-9)
    if c1 / n1 == c0 / n0 and n1 == n0:
        assert forward == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize(
    ("baseline", "effect"),
    [(0.03, 0.015), (0.03, 0.005), (0.10, 0.02), (0.5, 0.05), (0.01, 0.01), (0.95, 0.04)],
)
def test_required_sample_matches_statsmodels_power(baseline: float, effect: float) -> None:
    h = proportion_effectsize(baseline + effect, baseline)
    expected = NormalIndPower().solve_power(
        effect_size=h, alpha=0.05, power=0.8, ratio=1.0, alternative="two-sided"
    )
    ours = required_per_arm(baseline, effect)
    assert ours == math.ceil(expected) or abs(ours - expected) <= max(1.0, 1e-3 * expected)


def test_guard_asks_for_more_data_with_the_power_figure() -> None:
    result = analyze(
        parse_counts({"holdout": {"n": 1000, "conversions": 30}, "discount": {"n": 1000, "conversions": 45}})
    )
    needed = required_per_arm(0.03, 0.015)
    assert result.guard.enough_data is False
    assert result.guard.required_per_arm == needed
    assert result.guard.more_per_arm == needed - 1000
    assert f"not enough data yet: need about {about(needed - 1000)} more per arm" in result.recommendation
    assert result.winner is None


def test_guard_is_met_once_every_arm_has_the_required_sample() -> None:
    needed = required_per_arm(0.03, 0.015)
    holdout = ArmCounts("holdout", 3000, 90)
    result = analyze([holdout, ArmCounts("discount", needed, 120)], mde=0.015)
    assert result.guard.enough_data is True and result.guard.more_per_arm == 0
    # The smallest arm decides: one recipient short is not enough.
    short = analyze([holdout, ArmCounts("discount", needed - 1, 120)], mde=0.015)
    assert short.guard.enough_data is False and short.guard.more_per_arm == 1


def test_guard_never_trusts_a_tiny_sample_whatever_the_lift() -> None:
    result = analyze([ArmCounts("holdout", 20, 0), ArmCounts("discount", 20, 15)])
    assert result.guard.required_per_arm == 100 and not result.guard.enough_data


def test_about_rounds_up_to_two_significant_digits() -> None:
    assert [about(n) for n in (7, 99, 100, 1234, 1494, 98001)] == [7, 99, 100, 1300, 1500, 99000]


def test_a_clear_winner_is_recommended_with_its_lift_and_certainty() -> None:
    result = analyze(
        parse_counts(
            {
                "holdout": {"n": 3000, "conversions": 90},
                "remise": {"n": 3000, "conversions": 150},
                "audit": {"n": 3000, "conversions": 100},
            }
        )
    )
    assert result.winner == "remise"
    assert result.recommendation.startswith("Promote 'remise': its conversion rate is 5.0% against 3.0%")
    assert "+2.0 points" in result.recommendation and "+67% relative" in result.recommendation
    assert "It beats 'audit' with" in result.recommendation


def test_no_winner_when_nothing_beats_the_holdout() -> None:
    result = analyze(
        parse_counts(
            {"holdout": {"n": 30000, "conversions": 900}, "remise": {"n": 30000, "conversions": 910}}
        )
    )
    assert result.guard.enough_data and result.winner is None
    assert result.recommendation.startswith(
        "No offer beats the holdout: the best, 'remise', is at +0.03 points"
    )


def test_json_shape_is_exactly_the_documented_one() -> None:
    result = analyze(
        parse_counts({"holdout": {"n": 1000, "conversions": 30}, "discount": {"n": 1000, "conversions": 45}})
    )
    data = result.to_json()
    assert list(data) == ["holdout", "enough_data", "recommendation", "variants"]
    holdout, discount = data["variants"]
    keys = ["id", "n", "conversions", "rate", "ci", "lift_abs", "lift_rel", "p_value", "prob_beat_holdout"]
    assert list(holdout) == keys and list(discount) == keys
    assert holdout["id"] == "holdout" and holdout["lift_abs"] is None and holdout["prob_beat_holdout"] is None
    assert discount["lift_abs"] == pytest.approx(0.015) and discount["lift_rel"] == pytest.approx(0.5)
    assert discount["p_value"] == pytest.approx(0.0775, abs=1e-4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"holdout": {"conversions": 3}, "a": {"n": 10, "conversions": 1}}, "holdout: missing 'n'"),
        (
            {"holdout": {"n": 10, "conversions": 11}, "a": {"n": 10, "conversions": 1}},
            "conversions (11) exceed n (10)",
        ),
        (
            {"holdout": {"n": -1, "conversions": 0}, "a": {"n": 10, "conversions": 1}},
            "holdout.n: must not be negative",
        ),
        ({"a": {"n": 10, "conversions": 1}, "b": {"n": 10, "conversions": 1}}, 'no "holdout" arm'),
        ({"holdout": {"n": 10, "conversions": 1}}, "at least one variant"),
        (
            {"holdout": {"n": 1.5, "conversions": 1}, "a": {"n": 10, "conversions": 1}},
            "expected a whole number",
        ),
        ([1, 2], "expected an object of arms"),
    ],
)
def test_bad_counts_are_refused_with_a_clear_message(data: object, message: str) -> None:
    with pytest.raises(CountsError, match=None) as caught:
        parse_counts(data)
    assert message in str(caught.value)


def test_empty_arms_give_undefined_comparisons_not_errors() -> None:
    result = analyze([ArmCounts("holdout", 0, 0), ArmCounts("remise", 10, 1)])
    remise = result.arm("remise")
    assert remise.lift_abs is None and remise.p_value is None and remise.prob_beat_holdout is None
    assert result.control.ci == (0.0, 1.0)
    assert "no recipients yet in the holdout" in result.recommendation
