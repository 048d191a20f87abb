"""Fixtures of the reliability suite: the fake providers, and the fork server that starts dispatcher
processes for crash and concurrency tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.providers import FakeProviders, running_fake_providers
from tests.reliability.dispatcher_process import DispatcherServer, running_dispatcher_server


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    """A fake SendGrid + Twilio server on a free loopback port, fresh for each test."""
    with running_fake_providers() as fake:
        yield fake


@pytest.fixture(scope="session")
def dispatcher_server() -> Iterator[DispatcherServer]:
    """One fork server for the session: each job runs in a fresh dispatcher process."""
    with running_dispatcher_server() as server:
        yield server
