"""Exponential decay of engagement: points lose half their weight every half-life.

Decay is linear in the points, so a lead's engagement can be stored as one value at one instant
(``engagement_score`` at ``engagement_at``) and brought to any later instant by one multiplication;
the same number is the sum of each ledger row decayed on its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, extract, func, literal

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


def decayed_sql(
    score: ColumnElement[float],
    since: ColumnElement[datetime],
    now: datetime,
    half_life: timedelta,
    dialect: str,
) -> ColumnElement[float]:
    """:func:`decayed` as a SQL expression over columns, so that a whole batch decays in one
    statement (SQLite needs its math functions, present in the builds Python ships)."""
    at = literal(now, type_=since.type)
    age: ColumnElement[Any]
    factor: ColumnElement[Any]
    if dialect == "sqlite":
        elapsed: ColumnElement[Any] = (func.julianday(at) - func.julianday(since)) * 86400.0
        age = func.max(elapsed, 0.0)
        factor = func.pow(0.5, age / half_life.total_seconds())
    else:
        age = func.greatest(cast(extract("epoch", at - since), Float), 0.0)
        factor = func.power(0.5, age / half_life.total_seconds())
    # Scores already negligible are set to 0 so that they stop being rewritten night after night.
    return case((func.abs(score) < NEGLIGIBLE, 0.0), else_=func.coalesce(score * factor, score))
