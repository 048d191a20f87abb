"""A real Prefect test server for the demo's runs (its settings as ``spirale demo`` sets them),
and the demo's folders under each test's temporary directory."""

from __future__ import annotations

import os

from spirale.demo.orchestration import quiet_prefect

# Read by Prefect's test server when it starts (a subprocess inheriting this environment).
os.environ.update(quiet_prefect())

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from spirale.demo.run import DemoOptions


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect API (temporary database) for every demo run of the session."""
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture
def options(tmp_path: Path) -> DemoOptions:
    """A small demo: 300 leads over three weeks, in this test's directory."""
    return DemoOptions(leads=300, days=21, folder=tmp_path / "demo", report=tmp_path / "report", seed=11)
