"""How the simulated market answers: the true rates the demo draws from, and the pending reactions.

Every message sent may bounce, be opened, clicked, replied to or end in an unsubscribe (an SMS:
a reply or a STOP), each with its rate for the sequence and the A/B arm. The reactions happen
later (minutes to days), so they wait on an :class:`Agenda` until the simulated clock reaches
them, then arrive as provider events would. Deliveries are reported for the first message of
each A/B test only, where the review's funnel starts; the others would only lengthen the run. The A/B arms of
an offer convert at their own true rate (the holdout too: some dormant customers come back
without being asked), and salespeople's attempts end with the outcomes a sales team reports.
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from channels.webhooks import NormalizedEvent, dedup_key
from models.tables import EventType
from scoring.cadence import Outcome


@dataclass(frozen=True, slots=True)
class Rates:
    """What one kind of message gets: shares of the messages sent (click: of the opened ones)."""

    open: float = 0.3
    click: float = 0.12
    reply: float = 0.01
    unsubscribe: float = 0.005
    bounce: float = 0.012
    spam: float = 0.0005
    sms_reply: float = 0.03
    sms_stop: float = 0.02


#: Rates per sequence: warm leads read their nurture, the dormant hardly anything.
SEQUENCE_RATES = {
    "whitepaper-nurture": Rates(open=0.48, click=0.22, reply=0.03, unsubscribe=0.008),
    "sales-cadence": Rates(open=0.55, click=0.2, reply=0.08, unsubscribe=0.004, sms_reply=0.08),
    "incubator": Rates(open=0.3, click=0.1, reply=0.005, unsubscribe=0.01),
    "reactivation-offer": Rates(open=0.22, click=0.15, reply=0.004, unsubscribe=0.015, bounce=0.03),
    "customer-care-b": Rates(open=0.6, click=0.2, reply=0.05),
    "customer-care-c": Rates(open=0.55, click=0.15, reply=0.03),
}
#: Share of the opened offers clicked, per A/B arm (the variant's true click rate).
CLICK_BY_ARM = {"discount": 0.2, "audit": 0.34, "remise": 0.3, "audit-offert": 0.16}
#: True conversion rate of each arm within the attribution window (holdout: without any message).
CONVERSION_BY_ARM = {
    ("whitepaper-nurture", "discount"): 0.05,
    ("whitepaper-nurture", "audit"): 0.09,
    ("whitepaper-nurture", "holdout"): 0.02,
    ("reactivation-offer", "remise"): 0.1,
    ("reactivation-offer", "audit-offert"): 0.04,
    ("reactivation-offer", "holdout"): 0.01,
}
#: What a salesperson reports after a call, and after a LinkedIn InMail.
CALL_OUTCOMES = {
    Outcome.NO_ANSWER: 38,
    Outcome.VOICEMAIL: 30,
    Outcome.REACHED: 10,
    Outcome.MEETING: 12,
    Outcome.NOT_INTERESTED: 7,
    Outcome.WRONG_NUMBER: 3,
}
INMAIL_OUTCOMES = {Outcome.NO_ANSWER: 88, Outcome.REACHED: 8, Outcome.MEETING: 4}
#: Share of the meetings that end in a sale.
MEETING_WINS = 0.4
ORDER_VALUES = (900.0, 1500.0, 2400.0, 4800.0)
INBOUND_SMS = frozenset({EventType.SMS_STOP, EventType.SMS_REPLY})


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message just sent (an outbox row)."""

    outbox_id: uuid.UUID
    lead_id: uuid.UUID
    sequence: str
    step: str
    channel: str
    variant: str | None
    address: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class Conversion:
    """A sale to record when the clock reaches it."""

    lead_id: uuid.UUID
    at: datetime
    value: float
    order: str


Pending = NormalizedEvent | Conversion


@dataclass
class Agenda:
    """Reactions waiting for the simulated clock, earliest first."""

    _heap: list[tuple[datetime, int, Pending]] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)

    def add(self, items: Sequence[Pending]) -> None:
        for item in items:
            at = item.at if isinstance(item, Conversion) else item.occurred_at
            heapq.heappush(self._heap, (at, next(self._order), item))

    def due(self, now: datetime) -> list[Pending]:
        """Everything that has happened by ``now``, in order."""
        found = []
        while self._heap and self._heap[0][0] <= now:
            found.append(heapq.heappop(self._heap)[2])
        return found

    def __len__(self) -> int:
        return len(self._heap)


class Market:
    """Draws the market's answers from one seeded generator. Deliveries are reported for the
    messages of ``measured`` steps (sequence, step): the first step of each A/B test."""

    def __init__(self, rng: random.Random, measured: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.rng = rng
        self.measured = measured
        self._orders = itertools.count(1)

    def reactions(self, messages: Sequence[SentMessage]) -> list[Pending]:
        """The provider events each message will cause."""
        events: list[Pending] = []
        for message in messages:
            rates = SEQUENCE_RATES.get(message.sequence, Rates())
            if message.channel == "email":
                events.extend(self._email(message, rates))
            elif message.channel == "sms":
                events.extend(self._sms(message, rates))
        return events

    def _email(self, message: SentMessage, rates: Rates) -> list[NormalizedEvent]:
        if self.rng.random() < rates.bounce:
            return [self._event(message, EventType.BOUNCE, minutes=2, extra={"type": "bounce"})]
        measured = (message.sequence, message.step) in self.measured
        events = [self._event(message, EventType.DELIVERED, minutes=1)] if measured else []
        if self.rng.random() >= rates.open:
            return events
        opened = self._later(message.sent_at, hours=self.rng.lognormvariate(1.0, 1.2))
        events.append(self._event(message, EventType.OPEN, at=opened))
        click = CLICK_BY_ARM.get(message.variant or "", rates.click)
        if self.rng.random() < click:
            events.append(self._event(message, EventType.CLICK, at=self._later(opened, hours=0.05)))
        if self.rng.random() < rates.reply:
            events.append(self._event(message, EventType.REPLY, at=self._later(opened, hours=2)))
        elif self.rng.random() < rates.unsubscribe:
            events.append(self._event(message, EventType.UNSUBSCRIBE, at=self._later(opened, hours=0.1)))
        elif self.rng.random() < rates.spam:
            events.append(self._event(message, EventType.SPAM_REPORT, at=self._later(opened, hours=0.2)))
        return events

    def _sms(self, message: SentMessage, rates: Rates) -> list[NormalizedEvent]:
        status = {"MessageStatus": "delivered", "To": message.address}
        events = []
        if (message.sequence, message.step) in self.measured:
            events.append(
                self._event(message, EventType.SMS_STATUS, minutes=1, extra=status, provider="twilio")
            )
        inbound = {"From": message.address}
        if self.rng.random() < rates.sms_stop:
            at = self._later(message.sent_at, hours=0.5)
            stop = {**inbound, "Body": "STOP"}
            events.append(self._event(message, EventType.SMS_STOP, at=at, extra=stop, provider="twilio"))
        elif self.rng.random() < rates.sms_reply:
            at = self._later(message.sent_at, hours=1.5)
            body = {**inbound, "Body": "Oui, rappelez-moi"}
            events.append(self._event(message, EventType.SMS_REPLY, at=at, extra=body, provider="twilio"))
        return events

    def _later(self, at: datetime, *, hours: float) -> datetime:
        return at + timedelta(hours=self.rng.expovariate(1.0 / hours) if hours > 0 else 0)

    def _event(
        self,
        message: SentMessage,
        kind: EventType,
        *,
        at: datetime | None = None,
        minutes: float = 0,
        extra: dict[str, Any] | None = None,
        provider: str | None = None,
    ) -> NormalizedEvent:
        provider = provider or ("twilio" if kind.value.startswith("sms") else "sendgrid")
        occurred = at or message.sent_at + timedelta(minutes=minutes)
        payload: dict[str, Any] = {"event": kind.value, "simulated": True, **(extra or {})}
        if message.channel == "email":
            payload["email"] = message.address
        # An inbound SMS names only the number it comes from, as Twilio's webhook does.
        inbound = kind in INBOUND_SMS
        return NormalizedEvent(
            type=kind,
            dedup_key=dedup_key(provider, message.outbox_id, kind.value, occurred.isoformat()),
            occurred_at=occurred,
            provider=provider,
            address=message.address,
            outbox_id=None if inbound else str(message.outbox_id),
            lead_hint=None if inbound else str(message.lead_id),
            payload=payload,
        )

    # -- sales --------------------------------------------------------------------------------------
    def conversion(self, lead_id: uuid.UUID, *, sequence: str, arm: str, at: datetime) -> Conversion | None:
        """Whether a lead drawn into ``arm`` buys within the window, and when."""
        rate = CONVERSION_BY_ARM.get((sequence, arm), 0.0)
        if self.rng.random() >= rate:
            return None
        return self._sale(lead_id, at + timedelta(days=self.rng.uniform(1, 20)))

    def outcome(self, kind: str) -> Outcome:
        """What a salesperson reports after an attempt of ``kind`` (``call``, ``linkedin``)."""
        table = CALL_OUTCOMES if kind == "call" else INMAIL_OUTCOMES
        return self.rng.choices(list(table), weights=list(table.values()))[0]

    def after_meeting(self, lead_id: uuid.UUID, at: datetime) -> Conversion | None:
        """Some meetings end in a sale a week or three later."""
        if self.rng.random() >= MEETING_WINS:
            return None
        return self._sale(lead_id, at + timedelta(days=self.rng.uniform(5, 21)))

    def _sale(self, lead_id: uuid.UUID, at: datetime) -> Conversion:
        return Conversion(lead_id, at, self.rng.choice(ORDER_VALUES), f"DEMO-{next(self._orders):05d}")
