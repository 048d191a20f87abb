"""Spirale's exceptions. Third-party exceptions are translated into these in exactly one place
(per adapter), with ``raise OurError(...) from exc``.

    SpiraleError
    ├── ConfigError                 bad settings or configuration files
    ├── SequenceError               a sequence file does not load or validate (carries diagnostics)
    ├── RenderError                 a template failed to render, or broke the sandbox limits
    └── ChannelError                a delivery channel failed; ``channel`` names it
        ├── RetryableSendError      the provider says it did NOT process the request (429,
        │                           connection refused before sending): safe to retry later
        ├── PermanentSendError      the provider refused the message for good (4xx, invalid
        │                           number, Twilio 21610 opted-out): never retry
        └── UnknownOutcomeError     the request may have reached the provider (timeout, 5xx,
                                    reset after sending): never resend blindly, reconcile
"""

from __future__ import annotations


class SpiraleError(Exception):
    """Base class of every error Spirale raises on purpose."""


class ConfigError(SpiraleError):
    """Settings or a configuration file are wrong; the message says which and how."""


class SequenceError(SpiraleError):
    """A sequence failed to load or validate. ``diagnostics`` holds every problem found."""

    def __init__(self, message: str, diagnostics: list[object] | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics or []


class RenderError(SpiraleError):
    """A template failed to render (missing variable, sandbox violation, too slow or too big)."""


class ChannelError(SpiraleError):
    """A delivery channel failed to send one message."""

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        provider_code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.provider_code = provider_code
        self.status_code = status_code


class RetryableSendError(ChannelError):
    """The provider did not process the request; it may be retried after ``retry_after`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        provider_code: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, channel=channel, provider_code=provider_code, status_code=status_code)
        self.retry_after = retry_after


class PermanentSendError(ChannelError):
    """The provider refused this message for good. ``suppress_address`` asks to suppress the
    recipient (Twilio 21610: the number replied STOP; hard bounces)."""

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        provider_code: str | None = None,
        status_code: int | None = None,
        suppress_address: bool = False,
    ) -> None:
        super().__init__(message, channel=channel, provider_code=provider_code, status_code=status_code)
        self.suppress_address = suppress_address


class UnknownOutcomeError(ChannelError):
    """The request may have reached the provider: the message is held as ``unknown`` and
    reconciled from provider events or a message lookup, never resent blindly."""
