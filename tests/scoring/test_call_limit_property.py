"""The legal call limit as a property: whatever calls were made, ``next_lawful_call`` allows a call
exactly when no 30-day window would then hold more than 4, and the instant it proposes instead
is lawful."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from scoring.call_limit import next_lawful_call
from scoring.rules import CadenceSpec

CADENCE = CadenceSpec()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
calls = st.lists(st.integers(min_value=0, max_value=90 * 24), max_size=10).map(
    lambda hours: sorted(T0 + timedelta(hours=h) for h in hours)
)


def lawful(times: list[datetime]) -> bool:
    """No window of 30 days holds more than 4 of ``times`` (brute force over window ends)."""
    period, limit = CADENCE.call_period, CADENCE.max_calls
    return all(sum(1 for t in times if end - period < t <= end) <= limit for end in times)


@given(made=calls, hours=st.integers(min_value=0, max_value=90 * 24))
def test_a_call_is_allowed_exactly_when_it_keeps_every_window_lawful(
    made: list[datetime], hours: int
) -> None:
    at = T0 + timedelta(hours=hours)
    assume(lawful(made))  # calls already made kept the limit when they were made
    allowed = next_lawful_call(made, at=at, cadence=CADENCE)
    assert (allowed is None) == lawful([*made, at])
    if allowed is not None:
        assert allowed > at
        later = allowed
        for _ in range(20):
            step = next_lawful_call(made, at=later, cadence=CADENCE)
            if step is None:
                break
            later = step
        assert lawful([*made, later])
