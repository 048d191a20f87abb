"""The dispatch report's phase timings: where a tick's time went, summed over processes."""

from __future__ import annotations

import time

import pytest

from spirale.dispatch import Dispatcher
from spirale.dispatch.report import PHASES, DispatchReport
from tests.dispatch.conftest import MONDAY_9H, Enroll, MakeLeads


def test_timed_phases_add_up_and_merge() -> None:
    first, second = DispatchReport(claimed=4), DispatchReport(claimed=4)
    with first.timed("claim"):
        time.sleep(0.02)
    with first.timed("claim"):
        time.sleep(0.01)
    try:
        with second.timed("send"):
            raise RuntimeError("a failing phase is still timed")
    except RuntimeError:
        pass

    assert 0.03 <= first.seconds["claim"] < 0.5
    assert set(second.seconds) == {"send"}
    first.merge(second)
    assert first.claimed == 8 and set(first.seconds) == {"claim", "send"}
    per_step = first.per_step_us()
    assert list(per_step) == [p for p in PHASES if p in {"claim", "send"}]  # in the order a batch runs
    assert per_step["claim"] == first.seconds["claim"] / 8 * 1e6


@pytest.mark.db
def test_a_tick_times_every_phase_it_ran(
    dispatcher: Dispatcher, make_leads: MakeLeads, enroll: Enroll
) -> None:
    enroll(make_leads(12), "drip")

    report = dispatcher.dispatch_due(now=MONDAY_9H)

    assert report.sent["email"] == 12
    assert set(report.seconds) == set(PHASES)  # a tick that sent ran all of them
    assert all(seconds > 0 for seconds in report.seconds.values())
    assert sum(report.per_step_us().values()) > 0
