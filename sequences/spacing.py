"""How far apart a sequence's steps go out: golden-spiral, fibonacci or fixed gaps, the per-step
``wait`` override, and the deterministic per-lead jitter.

Gaps are exact elapsed durations (``timedelta``), counted in real time rather than wall-clock time,
so a 12h gap across a DST change is still 12 hours.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from sequences.schema import Sequence, SpacingSpec
from spirale.errors import SequenceError

ZERO = timedelta(0)
# The largest gap a datetime can carry; an uncapped spiral grows past it after a few hundred steps.
_MAX_SECONDS = timedelta.max.total_seconds()
_LOG_MAX = math.log(_MAX_SECONDS)


def spacing_gap(spacing: SpacingSpec, k: int) -> timedelta:
    """The spacing rule's k-th gap (k >= 1 is the gap between step k-1 and step k).

    golden: ``first x ratio^(k-1)``; fibonacci: ``unit x fib(k)`` (1, 1, 2, 3, 5 ...); fixed: the
    same gap every time. Golden and fibonacci gaps stop growing at ``max_gap``.
    """
    if k < 1:
        raise ValueError(f"spacing gaps are numbered from 1, got {k}")
    if spacing.fixed is not None:
        return spacing.fixed
    if spacing.golden is not None:
        rule = spacing.golden
        first = rule.first.total_seconds()
        # Compare logarithms first: ratio ** (k - 1) overflows a float for long uncapped spirals.
        if math.log(first) + math.log(rule.ratio) * (k - 1) > _LOG_MAX:
            return _capped(math.inf, rule.max_gap)
        return _capped(first * rule.ratio ** (k - 1), rule.max_gap)
    if spacing.fibonacci is not None:
        fib = spacing.fibonacci
        unit = fib.unit.total_seconds()
        return _capped(unit * _fibonacci(k, limit=_MAX_SECONDS / unit), fib.max_gap)
    raise SequenceError("spacing needs exactly one of golden, fibonacci or fixed")


def gap_before(sequence: Sequence, index: int) -> timedelta:
    """The gap between step ``index - 1`` and step ``index``: the step's ``wait`` if it has one,
    else the spacing rule's gap. The first step (index 0) waits ``wait`` or nothing."""
    wait = sequence.steps[index].wait
    if wait is not None:
        return wait
    return ZERO if index == 0 else spacing_gap(sequence.spacing, index)


def jitter_offset(sequence: Sequence, lead_key: str, index: int) -> timedelta:
    """A stable offset in ``[0, jitter)`` whole seconds for this lead, sequence and step, so sends
    spread out without moving between runs (no jitter configured: zero)."""
    jitter = sequence.jitter
    if jitter is None:
        return ZERO
    span = int(jitter.total_seconds())
    if span <= 0:
        return ZERO
    # A keyed digest rather than hash(): str hashes are salted per process.
    digest = hashlib.blake2b(f"{lead_key}\x1f{sequence.name}\x1f{index}".encode(), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % span)


def _capped(seconds: float, max_gap: timedelta | None) -> timedelta:
    if max_gap is not None and seconds >= max_gap.total_seconds():
        return max_gap
    if seconds > _MAX_SECONDS:
        raise SequenceError("the spacing gap outgrows any date: set spacing max_gap")
    return timedelta(seconds=seconds)


def _fibonacci(k: int, *, limit: float) -> float:
    """fib(k), or infinity once it passes ``limit`` (a huge int would overflow a float product)."""
    previous, current = 0, 1
    for _ in range(k - 1):
        previous, current = current, previous + current
        if current > limit:
            return math.inf
    return float(current)
