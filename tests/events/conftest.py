"""Event processing and reconciliation over a real database and the shipped sequence library."""

from __future__ import annotations

from pathlib import Path

import pytest

from spirale.settings import Settings
from tests.events.factories import sequences_copy


@pytest.fixture(scope="session")
def sequences_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sequences_copy(tmp_path_factory.mktemp("events"))


@pytest.fixture
def settings(database_url: str, sequences_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        sequences_dir=sequences_dir,
        outbox_dir=tmp_path / "outbox",
        email_channel="local-outbox",
        sms_channel="local-outbox",
    )
