"""Promoting the winner of an experiment: future assignments go to one variant.

A promotion is a row of ``experiment_promotions`` (who, when, why); the latest one of an experiment
is in force, and the earlier ones are its history. It never moves a lead that already has an arm:
stored assignments are sticky, and the reminders of a lead keep the arm it drew at the offer.

``effective_step`` is how the dispatcher applies it: it draws new leads on a copy of the step where
the winner carries all the weight except the holdout's (kept unless the promotion drops it). The
losing variants stay in the copy with a weight of 0, so leads already assigned to them still find
their variant's content. Use the copy for the draw only (``assign_variant``), and key it on the
experiment step (``sequences.variants.experiment_step``) so an offer and its reminders follow the
same promotion.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, RowMapping, Table, select

from models.tables import Promotion
from scoring.ab_stats import ExperimentStats, probability
from sequences.schema import Step
from sequences.variants import HOLDOUT
from spirale.errors import SpiraleError

PROMOTIONS: Table = Promotion.__table__  # type: ignore[attr-defined]
AUTO_ACTOR = "auto-promotion"
DEFAULT_AUTO_THRESHOLD = 0.95


class PromotionError(SpiraleError):
    """A promotion was refused: unknown variant, the holdout itself, or no actor."""


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion decision."""

    id: uuid.UUID
    sequence: str
    step: str
    variant: str
    keep_holdout: bool
    actor: str
    reason: str
    created_at: datetime

    def as_row(self) -> dict[str, str | bool]:
        return {
            "at": self.created_at.isoformat(timespec="minutes"),
            "variant": self.variant,
            "holdout": "kept" if self.keep_holdout else "dropped",
            "actor": self.actor,
            "reason": self.reason,
        }


def promote(
    conn: Connection,
    *,
    sequence: str,
    step: str,
    variant: str,
    keep_holdout: bool = True,
    actor: str,
    reason: str,
    now: datetime,
    arms: Collection[str] | None = None,
) -> PromotionRecord:
    """Record that new assignments of ``sequence/step`` go to ``variant`` (caller commits).
    ``arms``, when given, are the variant ids the step defines; anything else is refused."""
    if variant == HOLDOUT:
        raise PromotionError(
            "the holdout cannot be promoted: it is the control group (stop the campaign instead)"
        )
    if arms is not None and variant not in arms:
        raise PromotionError(
            f"unknown variant {variant!r} for {sequence}/{step}: expected one of {', '.join(arms)}"
        )
    if not actor.strip():
        raise PromotionError("a promotion needs an actor (who decided)")
    record = PromotionRecord(
        uuid.uuid4(), sequence, step, variant, keep_holdout, actor.strip(), reason.strip(), now
    )
    conn.execute(
        PROMOTIONS.insert().values(
            id=record.id,
            sequence_name=sequence,
            step_id=step,
            variant=variant,
            keep_holdout=keep_holdout,
            actor=record.actor,
            reason=record.reason,
            created_at=now,
        )
    )
    return record


def promotion_history(conn: Connection, *, sequence: str, step: str) -> list[PromotionRecord]:
    """Every promotion of ``sequence/step``, oldest first (the last one is in force)."""
    query = (
        select(PROMOTIONS)
        .where(PROMOTIONS.c.sequence_name == sequence, PROMOTIONS.c.step_id == step)
        .order_by(PROMOTIONS.c.created_at, PROMOTIONS.c.id)
    )
    return [_record(row) for row in conn.execute(query).mappings()]


def current_promotion(conn: Connection, *, sequence: str, step: str) -> PromotionRecord | None:
    """The promotion in force for ``sequence/step``, or None."""
    history = promotion_history(conn, sequence=sequence, step=step)
    return history[-1] if history else None


def current_promotions(conn: Connection) -> dict[tuple[str, str], PromotionRecord]:
    """The promotion in force of every experiment, by (sequence, step): one query per batch."""
    query = select(PROMOTIONS).order_by(PROMOTIONS.c.created_at, PROMOTIONS.c.id)
    return {(row["sequence_name"], row["step_id"]): _record(row) for row in conn.execute(query).mappings()}


def _record(values: RowMapping) -> PromotionRecord:
    return PromotionRecord(
        id=values["id"],
        sequence=values["sequence_name"],
        step=values["step_id"],
        variant=values["variant"],
        keep_holdout=values["keep_holdout"],
        actor=values["actor"],
        reason=values["reason"],
        created_at=values["created_at"],
    )


def effective_step(step: Step, promotion: PromotionRecord | None) -> Step:
    """The step new leads are drawn on: ``step`` itself, or a copy where the promoted variant takes
    ``100 - holdout`` (or 100 when the holdout is dropped) and the other variants 0."""
    winner = step.arm(promotion.variant) if promotion is not None else None
    if promotion is None or winner is None:
        return step
    holdout = step.holdout if promotion.keep_holdout else 0.0
    losers = tuple(v.model_copy(update={"weight": 0.0}) for v in step.variants if v.id != winner.id)
    # The winner goes last: the draw's fallback for a point past every edge is the last variant.
    variants = (*losers, winner.model_copy(update={"weight": 100.0 - holdout}))
    return step.model_copy(update={"variants": variants, "holdout": holdout})


def auto_promote(
    conn: Connection,
    *,
    sequence: str,
    step: str,
    stats: ExperimentStats,
    now: datetime,
    threshold: float = DEFAULT_AUTO_THRESHOLD,
    keep_holdout: bool = True,
    actor: str = AUTO_ACTOR,
) -> PromotionRecord | None:
    """Promote the review's winner when the sample guard is met and its probability to beat the
    holdout reaches ``threshold``; None when not (or when it is already the promoted variant)."""
    winner = stats.winner
    if not stats.guard.enough_data or winner is None:
        return None
    chance = stats.arm(winner).prob_beat_holdout
    if chance is None or chance < threshold:
        return None
    current = current_promotion(conn, sequence=sequence, step=step)
    if current is not None and current.variant == winner and current.keep_holdout == keep_holdout:
        return None
    reason = (
        f"automatic: {probability(chance)} probability to beat the holdout (threshold {threshold:.0%}). "
        + stats.recommendation
    )
    return promote(
        conn,
        sequence=sequence,
        step=step,
        variant=winner,
        keep_holdout=keep_holdout,
        actor=actor,
        reason=reason,
        now=now,
    )
