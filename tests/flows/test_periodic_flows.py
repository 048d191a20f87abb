"""The nightly, weekly, daily and quarter-hourly flows on the shipped library: each calls its engine
function and publishes its artifacts (reactivation -> dispatch -> reconcile -> A/B review ->
rescoring, one run each)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update

from flows.ab_review import ab_review
from flows.dispatch import dispatch
from flows.params import ABReviewParams, DispatchParams, ReactivationParams, ReconcileParams, ScoringParams
from flows.reactivation import reactivation
from flows.reconcile import reconcile
from flows.scoring import scoring
from models.tables import OutboxMessage
from spirale.settings import Settings
from tests.flows.conftest import SHIPPED_LIBRARY, MakeLeads
from tests.flows.prefect_api import artifacts, flow_run_id

pytestmark = pytest.mark.db
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
TUESDAY_10H = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)  # 10:00 in Paris


def table(run_state: object, key: str) -> list[dict[str, object]]:
    [artifact] = artifacts(flow_run_id(run_state), key)  # type: ignore[arg-type]
    rows = json.loads(str(artifact.data))
    assert isinstance(rows, list)
    return rows


def test_reactivation_dispatch_reconcile_review_and_rescoring(
    spirale_env: Callable[..., Settings], engine: Engine, make_leads: MakeLeads
) -> None:
    spirale_env(SHIPPED_LIBRARY)
    long_ago = TUESDAY_10H - timedelta(days=200)
    dormant = make_leads(20, now=long_ago, status="cold")
    make_leads(2, now=long_ago, status="hot")  # never reactivated: sales has them
    make_leads(2, now=long_ago, status="cold", consent_email=False)  # dormant but unreachable

    state = reactivation(ReactivationParams(now=TUESDAY_10H), return_state=True)
    [report] = state.result()
    assert report.enrolled == 20 and report.excluded == {"no email consent": 2}
    selected = table(state, "reactivation-reactivation-offer")
    assert {row["lead_id"] for row in selected} == {str(lead) for lead in dormant}
    assert all(str(row["reason"]).startswith("dormant") for row in selected)
    excluded = table(state, "reactivation-reactivation-offer-excluded")
    assert excluded == [{"excluded because": "no email consent", "leads": 2}]

    sent = dispatch(DispatchParams(now=TUESDAY_10H)).sent["email"]
    assert 0 < sent <= 20  # the holdout receives nothing

    # A message whose outcome became unknown is found in the local outbox and confirmed as sent.
    with engine.begin() as conn:
        [outbox_id] = conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.state == "sent").limit(1)).scalars()
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == outbox_id).values(state="unknown"))
    state = reconcile(ReconcileParams(now=TUESDAY_10H + timedelta(minutes=15)), return_state=True)
    assert state.result().examined == 1
    assert {"outcome": "examined", "key": "", "count": 1} in table(state, "reconcile-summary")
    with engine.connect() as conn:
        assert conn.execute(select(OUTBOX.c.state).where(OUTBOX.c.id == outbox_id)).scalar_one() == "sent"

    state = ab_review(ABReviewParams(now=TUESDAY_10H + timedelta(days=1)), return_state=True)
    reviews = {review.experiment.name: review for review in state.result()}
    assert "reactivation-offer/offer" in reviews
    recipients = sum(o.recipients for o in reviews["reactivation-offer/offer"].outcomes)
    assert recipients == 20
    arms = table(state, "ab-reactivation-offer-offer-arms")
    assert len(arms) == 3  # two offers and the holdout
    [markdown] = artifacts(flow_run_id(state), "ab-reactivation-offer-offer")
    assert "A/B review: reactivation-offer/offer" in str(markdown.data)

    state = scoring(ScoringParams(now=TUESDAY_10H + timedelta(days=1)), return_state=True)
    assert state.result().rescored.scanned == 24
    assert len(artifacts(flow_run_id(state), "rescoring-moves")) == 1
