"""The retention flow purges prospects past retention, keeps the rest, and says what it purged."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from flows.hygiene import SUMMARY_KEY, hygiene
from flows.params import HygieneParams
from models.tables import Lead
from spirale.settings import Settings
from tests.flows.conftest import SHIPPED_LIBRARY, MakeLeads
from tests.flows.prefect_api import artifacts, flow_run_id

pytestmark = pytest.mark.db
LEADS = Lead.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def test_the_retention_flow_purges_only_prospects_past_retention(
    spirale_env: Callable[..., Settings], engine: Engine, make_leads: MakeLeads
) -> None:
    spirale_env(SHIPPED_LIBRARY)
    stale = make_leads(3, now=NOW - timedelta(days=3 * 366), status="cold")
    make_leads(2, now=NOW - timedelta(days=3 * 366), status="customer")  # customers are kept
    make_leads(4, now=NOW - timedelta(days=100), status="warm")  # recent prospects are kept

    dry = hygiene(HygieneParams(now=NOW, dry_run=True))
    assert dry.leads == 3
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(LEADS)) == 9

    state = hygiene(HygieneParams(now=NOW), return_state=True)
    report = state.result()
    assert report.leads == 3 and dict(report.by_status) == {"cold": 3}
    with engine.connect() as conn:
        left = set(conn.execute(select(LEADS.c.id)).scalars())
    assert len(left) == 6 and not left & set(stale)
    [artifact] = artifacts(flow_run_id(state), SUMMARY_KEY)
    rows = json.loads(str(artifact.data))
    assert {"what": "leads", "key": "cold", "count": 3} in rows
