"""The delivery contract: messages, results, the :class:`Channel` protocol and :class:`BaseChannel`.

The dispatch engine commits an outbox row in state ``sending`` *before* calling a channel, then
records what the channel reports. A channel therefore sends once and classifies every failure
precisely (see :mod:`spirale.errors`): ``RetryableSendError`` only when the provider did not
process the request, ``PermanentSendError`` for refusals, ``UnknownOutcomeError`` whenever the
request may have reached the provider.

As in django-anymail, :meth:`BaseChannel.send` is fixed (``build_payload -> post -> parse_result``)
and each provider adapter fills in those three steps; ``post`` is the one place where the adapter
translates its SDK's exceptions.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, NamedTuple, Protocol, TypeAlias, TypeVar

from channels.retry import RetryPolicy
from spirale.errors import ChannelError, UnknownOutcomeError

logger = logging.getLogger(__name__)


class ChannelKind(StrEnum):
    """What a channel delivers."""

    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """One rendered email, ready to send. ``headers`` carries List-Unsubscribe and friends (built
    with :mod:`channels.unsubscribe`); every channel adds ``outbox_id`` to ``custom_args``."""

    outbox_id: str
    to: str
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str
    headers: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One rendered SMS. ``to`` is E.164; ``status_callback`` is a URL carrying the outbox id."""

    outbox_id: str
    to: str
    body: str
    status_callback: str | None = None


Message: TypeAlias = EmailMessage | SmsMessage


class SendResult(NamedTuple):
    """What the provider said when it accepted a message (built once per message sent)."""

    provider_message_id: str | None
    segments: int | None = None


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The fate of one message of a batch: exactly one of ``result`` and ``error`` is set."""

    outbox_id: str
    result: SendResult | None
    error: ChannelError | None

    def __post_init__(self) -> None:
        if (self.result is None) == (self.error is None):
            raise ValueError("a SendOutcome carries exactly one of result and error")

    @property
    def ok(self) -> bool:
        """True when the provider accepted the message."""
        return self.result is not None


MessageT = TypeVar("MessageT", EmailMessage, SmsMessage)
MessageT_contra = TypeVar("MessageT_contra", contravariant=True)
PayloadT = TypeVar("PayloadT")
ResponseT = TypeVar("ResponseT")


class Channel(Protocol[MessageT_contra]):
    """A delivery channel, as the dispatch engine sees it."""

    @property
    def name(self) -> str:
        """``"sendgrid"``, ``"twilio"``, ``"local-outbox"``..."""
        ...

    @property
    def kind(self) -> ChannelKind:
        """Whether this channel sends email or SMS."""
        ...

    def send(self, message: MessageT_contra) -> SendResult:
        """Send one message once; raise a :class:`~spirale.errors.ChannelError` subclass on failure."""
        ...

    def send_many(self, messages: Sequence[MessageT_contra]) -> list[SendOutcome]:
        """Send a batch; one message's failure is reported in its outcome, never raised."""
        ...


AnyChannel: TypeAlias = Channel[Any]


class BaseChannel(ABC, Generic[MessageT, PayloadT, ResponseT]):
    """Runs sends for provider adapters, which implement the three steps below.

    ``send_many`` sends with at most ``concurrency`` requests in flight (a thread pool) and retries
    only :class:`~spirale.errors.RetryableSendError`, following ``retry``.
    """

    name: str
    kind: ChannelKind

    def __init__(self, *, concurrency: int = 1, retry: RetryPolicy | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.retry = retry if retry is not None else RetryPolicy()

    @abstractmethod
    def build_payload(self, message: MessageT) -> PayloadT:
        """Turn a message into the provider's request. Runs before anything leaves the process."""

    @abstractmethod
    def post(self, payload: PayloadT) -> ResponseT:
        """Make the provider call, translating every SDK exception into a ``ChannelError``."""

    @abstractmethod
    def parse_result(self, message: MessageT, response: ResponseT) -> SendResult:
        """Read the provider's acceptance (message id, segments) from its response."""

    def send(self, message: MessageT) -> SendResult:
        """Send one message once (no retry)."""
        return self.parse_result(message, self.post(self.build_payload(message)))

    def send_many(self, messages: Sequence[MessageT]) -> list[SendOutcome]:
        """Send a batch with bounded concurrency; outcomes come back in the order of ``messages``."""
        if self.concurrency == 1 or len(messages) <= 1:
            return [self._send_with_retry(message) for message in messages]
        workers = min(self.concurrency, len(messages))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{self.name}-send") as pool:
            return list(pool.map(self._send_with_retry, messages))

    def _send_with_retry(self, message: MessageT) -> SendOutcome:
        try:
            result = self.retry.call(lambda: self.send(message))
        except ChannelError as exc:
            return SendOutcome(message.outbox_id, None, exc)
        except Exception as exc:
            # A bug after the request left would otherwise abort the batch and lose every other
            # outcome; "unknown" keeps this one out of blind resends and sends it to reconciliation.
            logger.exception("unexpected error sending outbox %s via %s", message.outbox_id, self.name)
            error = UnknownOutcomeError(f"unexpected {type(exc).__name__}: {exc}", channel=self.name)
            error.__cause__ = exc
            return SendOutcome(message.outbox_id, None, error)
        return SendOutcome(message.outbox_id, result, None)
