"""Promotions: recorded with who/when/why, applied to new assignments only, optionally automatic."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from scoring.ab_stats import ArmCounts, analyze
from scoring.promotion import (
    PromotionError,
    PromotionRecord,
    auto_promote,
    current_promotion,
    current_promotions,
    effective_step,
    promote,
    promotion_history,
)
from sequences.catalog import SequenceCatalog
from sequences.schema import Step
from sequences.variants import assign_variant
from tests.experiments.conftest import T0

ARMS = ("remise", "audit-offert")


def offer(catalog: SequenceCatalog) -> Step:
    return catalog.get("reactivation-offer").steps[0]


def draws(step: Step, keys: list[str]) -> dict[str, str | None]:
    return {key: assign_variant(step, lead_key=key, sequence_name="reactivation-offer") for key in keys}


KEYS = [str(uuid.UUID(int=i * 7919 + 12345)) for i in range(4000)]


def test_effective_step_sends_new_draws_to_the_winner_and_keeps_the_holdout(catalog: SequenceCatalog) -> None:
    step = offer(catalog)
    before = draws(step, KEYS)
    record = _record(variant="remise")
    after = draws(effective_step(step, record), KEYS)

    assert set(after.values()) == {"remise", "holdout"}
    # The holdout keeps its share, and the very same leads: nobody held out before is now treated.
    assert {k for k, v in before.items() if v == "holdout"} == {k for k, v in after.items() if v == "holdout"}
    assert 0.08 < Counter(after.values())["holdout"] / len(KEYS) < 0.12
    # Losing variants stay (weight 0), so leads already on them still find their content.
    promoted = effective_step(step, record)
    loser = promoted.arm("audit-offert")
    assert loser is not None and loser.weight == 0 and loser.template == "reactivation-audit"
    assert step.arm("audit-offert").weight == 45  # type: ignore[union-attr]


def test_dropping_the_holdout_sends_everyone_the_winner(catalog: SequenceCatalog) -> None:
    after = draws(effective_step(offer(catalog), _record(variant="audit-offert", keep_holdout=False)), KEYS)
    assert set(after.values()) == {"audit-offert"}


def test_no_promotion_or_an_unknown_variant_leaves_the_step_as_is(catalog: SequenceCatalog) -> None:
    step = offer(catalog)
    assert effective_step(step, None) is step
    assert effective_step(step, _record(variant="gone")) is step


def _record(*, variant: str, keep_holdout: bool = True) -> PromotionRecord:
    return PromotionRecord(
        uuid.uuid4(), "reactivation-offer", "offer", variant, keep_holdout, "lea", "test", T0
    )


@pytest.mark.db
def test_promotions_keep_their_history(engine: Engine) -> None:
    with engine.begin() as conn:
        promote(
            conn,
            sequence="reactivation-offer",
            step="offer",
            variant="audit-offert",
            actor="lea",
            reason="early signal",
            now=T0,
            arms=ARMS,
        )
        promote(
            conn,
            sequence="reactivation-offer",
            step="offer",
            variant="remise",
            keep_holdout=False,
            actor=" marc ",
            reason="clear winner",
            now=T0 + timedelta(days=30),
            arms=ARMS,
        )
    with engine.connect() as conn:
        history = promotion_history(conn, sequence="reactivation-offer", step="offer")
        current = current_promotion(conn, sequence="reactivation-offer", step="offer")
        every = current_promotions(conn)
        none = current_promotion(conn, sequence="incubator", step="offer")
    assert [(p.variant, p.actor, p.reason, p.keep_holdout) for p in history] == [
        ("audit-offert", "lea", "early signal", True),
        ("remise", "marc", "clear winner", False),
    ]
    assert history[1].created_at == T0 + timedelta(days=30)
    assert current == history[1] and every == {("reactivation-offer", "offer"): history[1]} and none is None
    assert history[1].as_row()["holdout"] == "dropped"


@pytest.mark.db
@pytest.mark.parametrize(
    ("variant", "actor", "message"),
    [
        ("holdout", "lea", "the holdout cannot be promoted"),
        (
            "remisse",
            "lea",
            "unknown variant 'remisse' for reactivation-offer/offer: expected one of remise, audit-offert",
        ),
        ("remise", "  ", "needs an actor"),
    ],
)
def test_bad_promotions_are_refused(engine: Engine, variant: str, actor: str, message: str) -> None:
    with engine.begin() as conn, pytest.raises(PromotionError) as caught:
        promote(
            conn,
            sequence="reactivation-offer",
            step="offer",
            variant=variant,
            actor=actor,
            reason="",
            now=T0,
            arms=ARMS,
        )
    assert message in str(caught.value)
    with engine.connect() as conn:
        assert promotion_history(conn, sequence="reactivation-offer", step="offer") == []


@pytest.mark.db
def test_auto_promotion_needs_the_guard_and_the_threshold(engine: Engine) -> None:
    early = analyze(
        [ArmCounts("holdout", 100, 3), ArmCounts("remise", 100, 9), ArmCounts("audit-offert", 100, 4)]
    )
    clear = analyze(
        [ArmCounts("holdout", 3000, 90), ArmCounts("remise", 3000, 150), ArmCounts("audit-offert", 3000, 95)]
    )
    with engine.begin() as conn:
        assert auto_promote(conn, sequence="reactivation-offer", step="offer", stats=early, now=T0) is None
        assert (
            auto_promote(
                conn, sequence="reactivation-offer", step="offer", stats=clear, now=T0, threshold=0.99999999
            )
            is None
        )
        record = auto_promote(conn, sequence="reactivation-offer", step="offer", stats=clear, now=T0)
        repeat = auto_promote(
            conn, sequence="reactivation-offer", step="offer", stats=clear, now=T0 + timedelta(days=7)
        )
    assert record is not None and record.variant == "remise" and record.actor == "auto-promotion"
    assert record.reason.startswith(
        "automatic: >99.9% probability to beat the holdout (threshold 95%). Promote 'remise'"
    )
    assert repeat is None
