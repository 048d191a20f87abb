"""Backoff for sends the provider says it did not process.

Only :class:`~spirale.errors.RetryableSendError` is ever retried here: a 429 or a connection that
failed before the request left. Anything that may have reached the provider is the outbox's business
(``unknown``, then reconciliation), never a blind resend.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from spirale.errors import RetryableSendError

T = TypeVar("T")

# 2**62 seconds is already far beyond any cap; bounding the exponent keeps the arithmetic cheap.
_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter and a bounded number of attempts.

    The wait before attempt ``n + 1`` is uniform in ``[0, min(cap, base * 2**(n-1)))`` ("full
    jitter"), added on top of the provider's ``retry_after`` when it gives one, so a crowd of
    workers released by the same rate-limit reset does not stampede. A ``retry_after`` longer than
    ``cap`` is not waited out in-process: the error is surfaced so the caller reschedules the send.
    ``sleep`` and ``rand`` are injectable so tests never sleep for real.
    """

    max_attempts: int = 4
    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base < 0 or self.cap < self.base:
            raise ValueError(f"need 0 <= base <= cap, got base={self.base} cap={self.cap}")

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        return self.rand() * min(self.cap, self.base * 2.0**exponent)

    def delay_before_retry(self, attempt: int, error: RetryableSendError) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt``, or ``None`` to give up."""
        if attempt >= self.max_attempts:
            return None
        if error.retry_after is None:
            return self.backoff(attempt)
        if error.retry_after > self.cap:
            return None
        return max(error.retry_after, 0.0) + self.backoff(attempt)

    def call(self, attempt_once: Callable[[], T]) -> T:
        """Run ``attempt_once`` until it succeeds, retrying only :class:`RetryableSendError`."""
        attempt = 1
        while True:
            try:
                return attempt_once()
            except RetryableSendError as exc:
                delay = self.delay_before_retry(attempt, exc)
                if delay is None:
                    raise
            self.sleep(delay)
            attempt += 1
