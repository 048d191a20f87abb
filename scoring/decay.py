"""Exponential decay of engagement: points lose half their weight every half-life.

Decay is linear in the points, so a lead's engagement can be stored as one value at one instant
(``engagement_score`` at ``engagement_at``) and brought to any later instant by one multiplication;
the same number is the sum of each ledger row decayed on its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: Engagement smaller than this is stored as 0 (nothing left to decay).
NEGLIGIBLE = 1e-3


def decay_factor(elapsed: timedelta, half_life: timedelta) -> float:
    """The weight left after ``elapsed`` (1.0 for no time or negative time)."""
    seconds = elapsed.total_seconds()
    if seconds <= 0:
        return 1.0
    return float(0.5 ** (seconds / half_life.total_seconds()))


def decayed(points: float, since: datetime | None, until: datetime, half_life: timedelta) -> float:
    """``points`` earned at ``since``, as they count at ``until``."""
    if since is None or not points:
        return points
    return points * decay_factor(until - since, half_life)
