"""An in-process channel that records what it was asked to send, with scriptable faults.
Used where the provider's wire format is not the point (the engine's decisions, benchmarks)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from channels.base import ChannelKind, EmailMessage, SendOutcome, SendResult, SmsMessage
from spirale.errors import ChannelError

Message = EmailMessage | SmsMessage
Fault = Callable[[Message], ChannelError | None]


@dataclass
class RecordingChannel:
    """Accepts every message (or fails it as ``fault`` says) and keeps the accepted ones."""

    kind: ChannelKind
    name: str = "recording"
    fault: Fault | None = None
    sent: list[Message] = field(default_factory=list)
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: Message) -> SendResult:
        with self._lock:
            self.attempts += 1
        error = self.fault(message) if self.fault else None
        if error is not None:
            raise error
        with self._lock:
            self.sent.append(message)
        return SendResult(provider_message_id=f"rec-{message.outbox_id}", segments=None)

    def send_many(self, messages: Sequence[Message]) -> list[SendOutcome]:
        outcomes = []
        for message in messages:
            try:
                outcomes.append(SendOutcome(message.outbox_id, self.send(message), None))
            except ChannelError as exc:
                outcomes.append(SendOutcome(message.outbox_id, None, exc))
        return outcomes


def recording_channels(fault: Fault | None = None) -> dict[str, RecordingChannel]:
    return {
        "email": RecordingChannel(ChannelKind.EMAIL, name="recording-email", fault=fault),
        "sms": RecordingChannel(ChannelKind.SMS, name="recording-sms", fault=fault),
    }
