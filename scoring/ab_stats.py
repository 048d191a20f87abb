"""The statistics of an A/B test against a holdout, in plain Python (no scipy at runtime).

Per arm, from ``n`` recipients and ``conversions`` (any count of successes: clicks, replies ...):

- the rate with a **Wilson score 95% interval** (good coverage even for small counts or rates near 0);
- the **absolute lift** over the holdout with **Newcombe's hybrid score interval** for a difference of
  two independent proportions (Newcombe 1998, method 10: it combines the two Wilson intervals, with no
  continuity correction);
- the **relative lift** (rate / holdout rate - 1) with the **Katz log interval** of the risk ratio
  (undefined when either arm has no conversion);
- a two-sided **two-proportion z-test** p-value with the pooled standard error;
- the **probability to beat the holdout**: P(p_variant > p_holdout) under independent
  Beta(1 + conversions, 1 + n - conversions) posteriors (uniform priors), by the exact finite sum
  of Evan Miller's formula computed with ``math.lgamma`` (deterministic, no sampling);
- a **minimum-sample guard** from a power calculation (alpha 0.05 two-sided, power 0.8, Cohen's h
  arcsine effect size, the same as statsmodels' ``NormalIndPower``) for the observed lift or a
  configured minimum detectable effect, and a plain-language recommendation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from spirale.errors import SpiraleError

HOLDOUT = "holdout"
ALPHA = 0.05
POWER = 0.8
#: Below this many recipients per arm the normal approximations behind the tests are not trusted,
#: whatever the power calculation says (a huge early lift would otherwise "need" a dozen leads).
MIN_PER_ARM = 100
#: The smallest lift worth detecting when none is configured: half a percentage point. A smaller
#: observed lift is sized as this one, so a test with no real difference ends instead of asking for
#: millions of recipients.
MIN_EFFECT = 0.005

Interval = tuple[float, float]


class CountsError(SpiraleError):
    """The counts given for an experiment are malformed (missing ``n``, negative, conversions > n)."""


def z_quantile(confidence: float) -> float:
    """The two-sided standard-normal quantile: 1.959964 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


Z95 = z_quantile(0.95)


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> Interval:
    """The Wilson score interval of ``successes / n``; (0, 1) when there is no trial yet."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes the exact bound is 0 or 1; keep rounding residue out of it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def newcombe_interval(c1: int, n1: int, c0: int, n0: int, *, z: float = Z95) -> Interval:
    """Newcombe's hybrid score interval for ``c1/n1 - c0/n0`` (both ``n`` > 0)."""
    p1, p0 = c1 / n1, c0 / n0
    l1, u1 = wilson_interval(c1, n1, z=z)
    l0, u0 = wilson_interval(c0, n0, z=z)
    diff = p1 - p0
    return (diff - math.hypot(p1 - l1, u0 - p0), diff + math.hypot(u1 - p1, p0 - l0))


def relative_lift_interval(c1: int, n1: int, c0: int, n0: int, *, z: float = Z95) -> Interval | None:
    """The Katz log interval of the risk ratio, minus one; None when either arm has no conversion."""
    if c1 == 0 or c0 == 0:
        return None
    ratio = (c1 / n1) / (c0 / n0)
    se = math.sqrt(1 / c1 - 1 / n1 + 1 / c0 - 1 / n0)
    return (ratio * math.exp(-z * se) - 1, ratio * math.exp(z * se) - 1)


def z_test_p_value(c1: int, n1: int, c0: int, n0: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test; 1.0 when the pooled rate is 0 or 1."""
    pooled = (c1 + c0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return 1.0
    z = (c1 / n1 - c0 / n0) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _prob_b_beats_a(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    # Evan Miller's closed form: a sum of a_b terms.
    base = _log_beta(a_a, b_a)
    terms = [
        math.exp(_log_beta(a_a + i, b_a + b_b) - math.log(b_b + i) - _log_beta(1 + i, b_b) - base)
        for i in range(a_b)
    ]
    return math.fsum(terms)


def prob_to_beat(c1: int, n1: int, c0: int, n0: int) -> float:
    """P(p1 > p0) under Beta(1 + c, 1 + n - c) posteriors, exact (the sum runs over the smaller
    arm's conversions, using P(p1 > p0) = 1 - P(p0 > p1))."""
    a1, b1, a0, b0 = 1 + c1, 1 + n1 - c1, 1 + c0, 1 + n0 - c0
    value = _prob_b_beats_a(a0, b0, a1, b1) if a1 <= a0 else 1.0 - _prob_b_beats_a(a1, b1, a0, b0)
    return min(1.0, max(0.0, value))


def required_per_arm(baseline: float, effect: float, *, alpha: float = ALPHA, power: float = POWER) -> int:
    """Recipients per arm to detect ``baseline`` -> ``baseline + effect`` with a two-sided test
    (Cohen's h, where the arcsine transform has variance 1/n per arm: n = 2 ((z_alpha/2 + z_power) / h)^2).
    ``effect`` is absolute (0.01 = one point)."""
    if effect == 0:
        raise ValueError("the effect to detect must not be 0")
    target = baseline + abs(effect)
    if target > 1:
        target = baseline - abs(effect)
    target = min(1.0, max(0.0, target))
    h = abs(2 * math.asin(math.sqrt(target)) - 2 * math.asin(math.sqrt(baseline)))
    z_sum = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    ratio = z_sum / h
    return math.ceil(2 * ratio * ratio)


def about(count: int) -> int:
    """``count`` rounded up to two significant digits (1234 -> 1300): an honest "about"."""
    if count < 100:
        return count
    scale = int(10 ** (len(str(count)) - 2))
    return -(-count // scale) * scale


@dataclass(frozen=True)
class ArmCounts:
    """What one arm saw: recipients and successes of the chosen metric."""

    id: str
    n: int
    conversions: int


@dataclass(frozen=True)
class ArmStats:
    """One arm's rate and, for a variant, its comparison with the holdout (None for the holdout)."""

    id: str
    n: int
    conversions: int
    rate: float
    ci: Interval
    lift_abs: float | None = None
    lift_abs_ci: Interval | None = None
    lift_rel: float | None = None
    lift_rel_ci: Interval | None = None
    p_value: float | None = None
    prob_beat_holdout: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of an arm (``spirale ab stats``)."""
        return {
            "id": self.id,
            "n": self.n,
            "conversions": self.conversions,
            "rate": self.rate,
            "ci": [self.ci[0], self.ci[1]],
            "lift_abs": self.lift_abs,
            "lift_rel": self.lift_rel,
            "p_value": self.p_value,
            "prob_beat_holdout": self.prob_beat_holdout,
        }


@dataclass(frozen=True)
class Guard:
    """The minimum-sample guard: is there enough data to decide?"""

    enough_data: bool
    required_per_arm: int | None
    more_per_arm: int
    effect: float | None

    @property
    def message(self) -> str:
        if self.enough_data:
            return f"enough data: every arm has at least {self.required_per_arm} recipients"
        return f"not enough data yet: need about {about(self.more_per_arm)} more per arm"


@dataclass(frozen=True)
class ExperimentStats:
    """The statistics of every arm, the guard, the winner (if any) and the recommendation."""

    holdout: str
    arms: tuple[ArmStats, ...]
    guard: Guard
    winner: str | None
    recommendation: str
    alpha: float = ALPHA

    @property
    def control(self) -> ArmStats:
        return next(arm for arm in self.arms if arm.id == self.holdout)

    @property
    def variants(self) -> tuple[ArmStats, ...]:
        return tuple(arm for arm in self.arms if arm.id != self.holdout)

    def arm(self, arm_id: str) -> ArmStats:
        return next(arm for arm in self.arms if arm.id == arm_id)

    def to_json(self) -> dict[str, Any]:
        """``{"holdout", "enough_data", "recommendation", "variants": [...]}``, holdout listed first."""
        return {
            "holdout": self.holdout,
            "enough_data": self.guard.enough_data,
            "recommendation": self.recommendation,
            "variants": [arm.to_json() for arm in self.arms],
        }


def parse_counts(data: object) -> list[ArmCounts]:
    """``{"holdout": {"n": 1000, "conversions": 30}, "discount": {...}}`` -> arms, checked."""
    if not isinstance(data, Mapping) or not data:
        raise CountsError('expected an object of arms, e.g. {"holdout": {"n": 1000, "conversions": 30}}')
    arms = [_parse_arm(str(arm_id), value) for arm_id, value in data.items()]
    if HOLDOUT not in data:
        raise CountsError(f'no "{HOLDOUT}" arm: the holdout is the control every variant is compared with')
    if len(arms) < 2:
        raise CountsError("need at least one variant beside the holdout")
    return arms


def _parse_arm(arm_id: str, value: object) -> ArmCounts:
    if not isinstance(value, Mapping):
        raise CountsError(f'{arm_id}: expected {{"n": ..., "conversions": ...}}')
    counts: dict[str, int] = {}
    for key in ("n", "conversions"):
        raw = value.get(key)
        if raw is None:
            raise CountsError(f"{arm_id}: missing {key!r}")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
            raise CountsError(f"{arm_id}.{key}: expected a whole number, got {raw!r}")
        if raw < 0:
            raise CountsError(f"{arm_id}.{key}: must not be negative, got {int(raw)}")
        counts[key] = int(raw)
    unknown = sorted(set(value) - {"n", "conversions"})
    if unknown:
        raise CountsError(f"{arm_id}: unknown key(s) {', '.join(map(repr, unknown))}")
    if counts["conversions"] > counts["n"]:
        raise CountsError(f"{arm_id}: conversions ({counts['conversions']}) exceed n ({counts['n']})")
    return ArmCounts(arm_id, counts["n"], counts["conversions"])


def compare(arm: ArmCounts, control: ArmCounts) -> ArmStats:
    """A variant's rate and its comparison with the control (None where undefined: empty arms)."""
    plain = describe_arm(arm)
    if arm.n == 0 or control.n == 0:
        return plain
    c1, n1, c0, n0 = arm.conversions, arm.n, control.conversions, control.n
    base_rate = c0 / n0
    return ArmStats(
        id=arm.id,
        n=n1,
        conversions=c1,
        rate=plain.rate,
        ci=plain.ci,
        lift_abs=plain.rate - base_rate,
        lift_abs_ci=newcombe_interval(c1, n1, c0, n0),
        lift_rel=plain.rate / base_rate - 1 if base_rate else None,
        lift_rel_ci=relative_lift_interval(c1, n1, c0, n0),
        p_value=z_test_p_value(c1, n1, c0, n0),
        prob_beat_holdout=prob_to_beat(c1, n1, c0, n0),
    )


def describe_arm(arm: ArmCounts) -> ArmStats:
    """An arm's rate and Wilson interval, without comparison."""
    rate = arm.conversions / arm.n if arm.n else 0.0
    return ArmStats(
        id=arm.id, n=arm.n, conversions=arm.conversions, rate=rate, ci=wilson_interval(arm.conversions, arm.n)
    )


def guard(
    arms: Sequence[ArmStats],
    control: ArmStats,
    *,
    mde: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
    min_per_arm: int = MIN_PER_ARM,
) -> Guard:
    """Enough data when every arm has the recipients a test needs to detect ``mde`` (absolute), or
    when none is configured the largest observed lift (at least ``MIN_EFFECT``)."""
    lifts = [abs(arm.lift_abs) for arm in arms if arm.lift_abs is not None]
    effect = mde if mde else max([MIN_EFFECT, *lifts])
    required = max(min_per_arm, required_per_arm(control.rate, effect, alpha=alpha, power=power))
    smallest = min(arm.n for arm in (*arms, control))
    more = max(0, required - smallest)
    return Guard(enough_data=more == 0, required_per_arm=required, more_per_arm=more, effect=effect)


def analyze(
    counts: Sequence[ArmCounts],
    *,
    holdout: str = HOLDOUT,
    mde: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
    min_per_arm: int = MIN_PER_ARM,
    metric: str = "conversion",
) -> ExperimentStats:
    """Every statistic of an experiment whose control arm is ``holdout``."""
    by_id = {arm.id: arm for arm in counts}
    if holdout not in by_id:
        raise CountsError(f"no {holdout!r} arm to compare with")
    control = describe_arm(by_id[holdout])
    variants = [compare(arm, by_id[holdout]) for arm in counts if arm.id != holdout]
    checked = guard(variants, control, mde=mde, alpha=alpha, power=power, min_per_arm=min_per_arm)
    winner = pick_winner(variants, alpha=alpha) if checked.enough_data else None
    text = recommend(control, variants, checked, winner, alpha=alpha, metric=metric)
    return ExperimentStats(
        holdout=holdout,
        arms=(control, *variants),
        guard=checked,
        winner=winner,
        recommendation=text,
        alpha=alpha,
    )


def pick_winner(variants: Sequence[ArmStats], *, alpha: float = ALPHA) -> str | None:
    """The best variant among those significantly better than the holdout, or None."""
    better = [
        arm
        for arm in variants
        if arm.p_value is not None and arm.p_value < alpha and arm.lift_abs is not None and arm.lift_abs > 0
    ]
    return max(better, key=lambda arm: (arm.rate, arm.id)).id if better else None


def percent(rate: float) -> str:
    """A rate as a percentage, with more digits for small rates (0.25%, 4.5%)."""
    return f"{rate:.2%}" if rate < 0.01 else f"{rate:.1%}"


def points(diff: float, *, unit: bool = True) -> str:
    """An absolute difference of rates in percentage points, signed."""
    text = f"{diff * 100:+.2f}" if abs(diff) < 0.01 else f"{diff * 100:+.1f}"
    return f"{text} points" if unit else text


def probability(value: float) -> str:
    """A probability as a percentage that never claims certainty (>99.9%, <0.1%)."""
    if value > 0.999:
        return ">99.9%"
    if value < 0.001:
        return "<0.1%"
    return f"{value:.1%}" if value > 0.99 or value < 0.01 else f"{value:.0%}"


def recommend(
    control: ArmStats,
    variants: Sequence[ArmStats],
    checked: Guard,
    winner: str | None,
    *,
    alpha: float = ALPHA,
    metric: str = "conversion",
) -> str:
    """What a marketing lead should do, in one or two sentences."""
    measured = [arm for arm in variants if arm.n > 0]
    if control.n == 0 or not measured:
        return "Keep the test running: no recipients yet in " + (
            "the holdout, so nothing measures what doing nothing gives." if control.n == 0 else "any variant."
        )
    best = max(measured, key=lambda arm: (arm.rate, arm.id))
    if not checked.enough_data:
        return (
            f"Keep the test running: {checked.message} (so far '{best.id}' is at {percent(best.rate)} "
            f"against {percent(control.rate)} for the holdout, {_chance(best)} to beat it)."
        )
    if winner is not None:
        return _promote_text(next(arm for arm in measured if arm.id == winner), control, measured, metric)
    if all(arm.p_value is not None and arm.p_value < alpha and (arm.lift_abs or 0) < 0 for arm in measured):
        return (
            f"No offer beats the holdout: every offer does measurably worse than sending nothing (the best, "
            f"'{best.id}', is at {points(best.lift_abs or 0)}). Stop the campaign and rethink the offers."
        )
    return (
        f"No offer beats the holdout: the best, '{best.id}', is at {points(best.lift_abs or 0)} "
        f"({p_text(best.p_value)}), not a measurable difference. Try a stronger offer or stop the campaign."
    )


def p_text(p_value: float | None) -> str:
    """A p-value as people quote it: ``p = 0.013``, ``p < 0.001``."""
    if p_value is None:
        return "p undefined"
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def _chance(arm: ArmStats) -> str:
    return (
        f"{probability(arm.prob_beat_holdout)} probability"
        if arm.prob_beat_holdout is not None
        else "no estimate"
    )


def _promote_text(win: ArmStats, control: ArmStats, measured: Sequence[ArmStats], metric: str) -> str:
    low, high = win.lift_abs_ci or (0.0, 0.0)
    relative = f", {win.lift_rel:+.0%} relative" if win.lift_rel is not None else ""
    text = (
        f"Promote '{win.id}': its {metric} rate is {percent(win.rate)} against {percent(control.rate)} for "
        f"the holdout, {points(win.lift_abs or 0)} "
        f"(95% CI {points(low, unit=False)} to {points(high)}){relative}; "
        f"{p_text(win.p_value)}; {_chance(win)} to beat the holdout."
    )
    others = [arm for arm in measured if arm.id != win.id]
    if others:
        runner = max(others, key=lambda arm: (arm.rate, arm.id))
        chance = prob_to_beat(win.conversions, win.n, runner.conversions, runner.n)
        text += f" It beats '{runner.id}' with {probability(chance)} probability."
    return text
