"""Fixtures for the scoring tests: the shipped rules and team, a catalog, settings with a local
outbox, and a way to create leads directly."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from scoring.rules import ScoringRules, load_rules, scoring_path
from scoring.team import Team, load_team, team_path
from sequences.catalog import SequenceCatalog
from spirale.settings import Settings
from tests.scoring.helpers import LEADS, MONDAY_10H, SEQUENCES_DIR, make_settings

MakeLead = Callable[..., uuid.UUID]


@pytest.fixture(scope="session")
def rules() -> ScoringRules:
    return load_rules(scoring_path(SEQUENCES_DIR))


@pytest.fixture(scope="session")
def team() -> Team:
    return load_team(team_path(SEQUENCES_DIR))


@pytest.fixture
def catalog() -> SequenceCatalog:
    return SequenceCatalog.open(SEQUENCES_DIR)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def make_lead(engine: Engine) -> MakeLead:
    """Insert one lead (a prospect in France by default) and return its id."""
    counter = iter(range(10**6))

    def make(*, now: datetime = MONDAY_10H, **values: Any) -> uuid.UUID:
        index = next(counter)
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "email": f"lead{index}@pme{index}.fr",
            "phone": f"+3361234{index:04d}",
            "first_name": "Camille",
            "last_name": "Martin",
            "company": "Atelier",
            "job_title": "Gérante",
            "country": "FR",
            "status": "cold",
            "consent_email": True,
            "consent_sms": True,
            "attributes": {},
            "created_at": now,
            "updated_at": now,
            "fit_score": 0.0,
            "engagement_score": 0.0,
        }
        row.update(values)
        with engine.begin() as conn:
            conn.execute(LEADS.insert(), row)
        lead_id: uuid.UUID = row["id"]
        return lead_id

    return make
