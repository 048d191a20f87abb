"""Cases found by randomized runs of the outbox state machine (``test_outbox_state_machine.py``),
replayed as explicit rule sequences so that they run on every pass, on SQLite and on PostgreSQL.

Each sequence is played on a fresh :class:`OutboxMachine`: every invariant is checked after every
rule, then the teardown lets the providers behave and the clock run until the outbox drains, and
checks again that nothing was sent twice, nothing after an opt-out, and nothing was lost.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, select

from tests.reliability.ledger import OUTBOX
from tests.reliability.test_outbox_state_machine import OutboxMachine

pytestmark = pytest.mark.db

Rule = tuple[str, dict[str, Any]]
UNPROCESSED = {"faults": ["unknown-unprocessed"]}


def replay(engine: Engine, rules: list[Rule]) -> OutboxMachine:
    """Play ``rules`` on a fresh machine as hypothesis would, invariants after each, then tear down."""
    OutboxMachine.engine = engine
    machine = OutboxMachine()
    for name, arguments in rules:
        getattr(machine, name)(**arguments)
        machine.never_twice()
        machine.never_after_an_opt_out()
        machine.never_decided_after_an_exit()
    machine.teardown()
    return machine


def email_attempts(engine: Engine, address: str) -> Counter[tuple[str, str]]:
    """(step, state) of every email outbox row to ``address``."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(OUTBOX.c.step_id, OUTBOX.c.state).where(
                OUTBOX.c.channel == "email", OUTBOX.c.to_address == address
            )
        ).all()
    return Counter((step, state) for step, state in rows)


# Steps fall due on the minute: lead 0, enrolled at 08:00:01, is due ``hello`` (email) at 08:01,
# ``ping`` (SMS) at the minute after the next one, then ``bye`` (email) likewise. Both emails end up
# waiting for recovery at the same time after the lead opted out of email: recovery must hold BOTH,
# not only the last one it looked at.
TWO_EMAIL_RETRIES: list[Rule] = [
    ("trigger", {"n": 1}),
    ("provider_faults", UNPROCESSED),
    ("tick_later", {"seconds": 61}),  # 08:01:02 hello: timeout, the provider never got it
    ("tick_later", {"seconds": 600}),  # 08:11:02 ping: received
    ("provider_faults", UNPROCESSED),
    ("tick_later", {"seconds": 600}),  # 08:21:02 bye: timeout, never got it; the enrollment completes
    ("suppression", {"pick": 0, "channel": "email"}),
    ("reconcile", {}),  # both unknown rows certainly never received: failed with a retry_at
    ("tick", {"seconds": 1}),  # recovery: two new attempts to the same address
]
# The same, with the opt-out as the last rule: the retries go out while the teardown drains.
OPT_OUT_LAST: list[Rule] = [
    *TWO_EMAIL_RETRIES[:6],
    ("reconcile", {}),
    ("suppression", {"pick": 0, "channel": "email"}),
]
ORPHAN_AND_RETRY: list[Rule] = [
    ("trigger", {"n": 1}),
    ("provider_faults", UNPROCESSED),
    ("tick_later", {"seconds": 61}),  # 08:01:02 hello: timeout, the provider never got it
    ("tick_later", {"seconds": 600}),  # 08:11:02 ping: received; bye is due at 08:13:00
    ("tick_later", {"seconds": 61}),  # 08:12:03, nothing due yet
    ("tick", {"seconds": 31}),
    *[("tick", {"seconds": 6})] * 4,
    ("crash_after_claim", {}),  # 08:12:59, nothing due yet
    ("crash_after_decisions", {}),  # 08:13:00 bye written pending, then the dispatcher dies
    ("webhook_event", {"pick": 0, "kind": "unsubscribe"}),
    ("reconcile", {}),  # hello certainly never received: failed with a retry_at
    ("tick", {"seconds": 6}),  # recovery: the orphaned bye and the retried hello, same address
]


@pytest.mark.parametrize(
    "rules",
    [TWO_EMAIL_RETRIES, OPT_OUT_LAST, ORPHAN_AND_RETRY],
    ids=["two-email-retries", "opt-out-last", "orphan-and-retry"],
)
def test_recovery_holds_every_waiting_message_to_an_address_suppressed_meanwhile(
    engine: Engine, rules: list[Rule]
) -> None:
    machine = replay(engine, rules)

    address = machine.leads[0]["email"]
    assert [r for r in machine.provider.receipts if r.to == address] == []
    attempts = email_attempts(engine, address)
    assert attempts[("hello", "suppressed")] == 1
    assert attempts[("bye", "suppressed")] == 1
    assert not any(state == "sent" for _, state in attempts)
