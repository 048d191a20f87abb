"""A circuit breaker around any delivery channel: stop hammering a provider that is down.

The breaker counts consecutive sends that failed in a way that says "the provider is unwell":
:class:`~spirale.errors.UnknownOutcomeError` (timeouts, 5xx, resets) and
:class:`~spirale.errors.RetryableSendError` (connection refused, rate limited). After
``failure_threshold`` of them in a row, or at once on a rate limit that names its reset, it
**opens**: the channel is paused and every message fails fast with a ``RetryableSendError``
carrying ``retry_after`` = the time left before the next probe. Such a message never left the
process, so the outbox records it ``failed`` with a ``retry_at`` and sends it again later as a new
attempt: kept, never lost, never duplicated.

Once the cool-down has elapsed the breaker is **half-open**: the next message goes through as a
probe. Success closes the circuit; failure re-opens it with a doubled cool-down (up to
``max_cooldown``), so a long outage costs one probe per cool-down instead of one request per
message. Time comes from an injectable ``clock`` (seconds), so tests simulate a ten-minute outage
without waiting for it.

A permanent refusal (a 4xx for one recipient) proves the provider is up: it counts as a success.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from channels.base import AnyChannel, ChannelKind, SendOutcome, SendResult
from spirale.errors import ChannelError, RetryableSendError, UnknownOutcomeError

logger = logging.getLogger(__name__)

CIRCUIT_OPEN_CODE = "circuit-open"


class CircuitState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"  # sending normally
    OPEN = "open"  # paused: messages fail fast until the cool-down ends
    HALF_OPEN = "half-open"  # the next message is a probe


class CircuitOpenError(RetryableSendError):
    """The channel is paused by its circuit breaker: the message was not sent; retry later."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When the breaker opens and how long it stays open.

    ``chunk`` is how many messages of a batch go to the provider between two looks at the
    breaker: small enough that an outage wastes few requests, large enough to keep the wrapped
    channel's own concurrency busy.
    """

    failure_threshold: int = 5
    cooldown: float = 60.0
    max_cooldown: float = 300.0
    chunk: int = 16

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.chunk < 1:
            raise ValueError("failure_threshold and chunk must be at least 1")
        if not 0 < self.cooldown <= self.max_cooldown:
            raise ValueError(f"need 0 < cooldown <= max_cooldown, got {self.cooldown}, {self.max_cooldown}")


class CircuitBreaker:
    """Wraps a channel (it is a channel itself): same ``name`` and ``kind``, paused when unwell."""

    def __init__(
        self,
        channel: AnyChannel,
        *,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.policy = policy if policy is not None else BreakerPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._cooldown = self.policy.cooldown
        self._open_until = 0.0
        self._probing = False
        self.opened = 0  # how many times the circuit opened (for reports and tests)

    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def kind(self) -> ChannelKind:
        return self.channel.kind

    def __getattr__(self, name: str) -> Any:
        # Anything else (a provider's message lookup, its settings) is the wrapped channel's.
        if name == "channel":
            raise AttributeError(name)
        return getattr(self.channel, name)

    @property
    def state(self) -> CircuitState:
        """The current state; an open circuit whose cool-down has ended reads as half-open."""
        with self._lock:
            return self._current_state()

    def send(self, message: Any) -> SendResult:
        """Send one message through the breaker (raises ``CircuitOpenError`` when paused)."""
        if self._admit() == 0:
            raise self._open_error()
        try:
            result = self.channel.send(message)
        except ChannelError as exc:
            self._observe(exc)
            raise
        except BaseException:
            self._release_probe()
            raise
        self._observe(None)
        return result

    def send_many(self, messages: Sequence[Any]) -> list[SendOutcome]:
        """Send a batch a chunk at a time; once the circuit opens, the rest fail fast."""
        outcomes: list[SendOutcome] = []
        position = 0
        while position < len(messages):
            size = self._admit()
            if size == 0:
                error = self._open_error()
                outcomes.extend(SendOutcome(m.outbox_id, None, error) for m in messages[position:])
                break
            chunk = messages[position : position + size]
            try:
                sent = self.channel.send_many(chunk)
            except BaseException:
                self._release_probe()
                raise
            for outcome in sent:
                self._observe(outcome.error)
            outcomes.extend(self._defer_to_probe(outcome) for outcome in sent)
            position += len(chunk)
        return outcomes

    # -- state machine -------------------------------------------------------------------------
    def _current_state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() >= self._open_until:
            self._state = CircuitState.HALF_OPEN
        return self._state

    def _admit(self) -> int:
        """How many messages may go now: a chunk when closed, one probe when half-open, else 0."""
        with self._lock:
            state = self._current_state()
            if state is CircuitState.CLOSED:
                return self.policy.chunk
            if state is CircuitState.HALF_OPEN and not self._probing:
                # Exactly one probe at a time, even with several threads sending.
                self._probing = True
                return 1
            return 0

    def _release_probe(self) -> None:
        with self._lock:
            self._probing = False

    def _defer_to_probe(self, outcome: SendOutcome) -> SendOutcome:
        """A message the provider did not process while the circuit opened waits for the next
        probe like the others, instead of coming back sooner and being refused again."""
        error = outcome.error
        if not isinstance(error, RetryableSendError) or self.state is not CircuitState.OPEN:
            return outcome
        remaining = self._remaining()
        if error.retry_after is not None and error.retry_after >= remaining:
            return outcome
        deferred = RetryableSendError(
            str(error),
            channel=error.channel,
            provider_code=error.provider_code,
            status_code=error.status_code,
            retry_after=remaining,
        )
        deferred.__cause__ = error
        return SendOutcome(outcome.outbox_id, None, deferred)

    def _observe(self, error: ChannelError | None) -> None:
        if isinstance(error, CircuitOpenError):
            return
        unwell = isinstance(error, UnknownOutcomeError | RetryableSendError)
        with self._lock:
            self._probing = False
            state = self._current_state()
            if state is CircuitState.OPEN:
                return  # a straggler of a chunk sent before the circuit opened changes nothing
            if not unwell:
                self._close()
                return
            self._failures += 1
            reset = error.retry_after if isinstance(error, RetryableSendError) else None
            if state is CircuitState.HALF_OPEN:
                self._open(max(self._cooldown * 2, reset or 0.0), str(error))
            elif reset or self._failures >= self.policy.failure_threshold:
                self._open(max(self._cooldown, reset or 0.0), str(error))

    def _open(self, cooldown: float, reason: str) -> None:
        self._cooldown = min(cooldown, self.policy.max_cooldown)
        self._open_until = self._clock() + self._cooldown
        self._state = CircuitState.OPEN
        self.opened += 1
        logger.warning(
            "%s paused for %.0f s after %d failed sends (%s)",
            self.name,
            self._cooldown,
            self._failures,
            reason[:200],
        )

    def _close(self) -> None:
        if self._state is not CircuitState.CLOSED:
            logger.warning("%s resumed: the provider answers again", self.name)
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._cooldown = self.policy.cooldown

    def _remaining(self) -> float:
        """Whole seconds until the next probe, rounded up: a message retried then finds the
        circuit half-open, not open by a fraction of a second."""
        with self._lock:
            return float(math.ceil(max(self._open_until - self._clock(), 0.0)))

    def _open_error(self) -> CircuitOpenError:
        remaining = self._remaining()
        return CircuitOpenError(
            f"{self.name} is paused by its circuit breaker for {remaining:.0f} s more: not sent",
            channel=self.name,
            provider_code=CIRCUIT_OPEN_CODE,
            retry_after=remaining,
        )
