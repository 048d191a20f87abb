"""Email through SendGrid's v3 ``mail/send``, with the official ``sendgrid`` SDK.

SendGrid offers no idempotency key, so a request that may have arrived is never resent here: a
timeout, a dropped connection after the request left, or a 5xx is ``UnknownOutcomeError`` and the
outbox reconciles it from the Event Webhook (every message carries ``custom_args.outbox_id``).
Only a 429 (with ``X-RateLimit-Reset``, epoch seconds) or a connection that failed before the
request was written is retryable.
"""

from __future__ import annotations

import http.client
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

import sendgrid
from pydantic import SecretStr
from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    MailSettings,
    PlainTextContent,
    SandBoxMode,
    Subject,
    To,
)
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from channels.base import BaseChannel, ChannelKind, EmailMessage, SendResult
from channels.retry import RetryPolicy
from spirale.errors import ChannelError, PermanentSendError, RetryableSendError, UnknownOutcomeError


class _RedactAuthorization(logging.Filter):
    """The SDK's HTTP client logs request headers, API key included, at DEBUG: mask the key."""

    _bearer = re.compile(r"(Bearer\s+)[^'\"\s,}]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Bearer" in message:
            record.msg, record.args = self._bearer.sub(r"\1***", message), None
        return True


logging.getLogger("python_http_client.client").addFilter(_RedactAuthorization())


CHANNEL_NAME = "sendgrid"
SENDGRID_API = "https://api.sendgrid.com"

Payload = dict[str, Any]


class SendGridEmail(BaseChannel[EmailMessage, Payload, Any]):
    """Sends each email with one ``POST /v3/mail/send``; ``sandbox`` asks SendGrid to validate
    without delivering. The SDK client is not thread-safe, so each worker thread gets its own."""

    name = CHANNEL_NAME
    kind = ChannelKind.EMAIL

    def __init__(
        self,
        api_key: str | SecretStr,
        *,
        host: str = SENDGRID_API,
        sandbox: bool = False,
        concurrency: int = 8,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(concurrency=concurrency, retry=retry)
        self._api_key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not self._api_key:
            raise ValueError("SendGrid needs an API key")
        self.host = host.rstrip("/")
        self.sandbox = sandbox
        self.timeout = timeout
        self._clock = clock
        self._local = threading.local()

    def build_payload(self, message: EmailMessage) -> Payload:
        """The ``mail/send`` JSON body, built with the SDK's mail helpers."""
        try:
            mail = Mail(
                from_email=From(message.from_email, message.from_name or None),
                to_emails=To(message.to),
                subject=Subject(message.subject),
                plain_text_content=PlainTextContent(message.text),
                html_content=HtmlContent(message.html),
            )
        except ApiKeyIncludedException as exc:
            raise translate_error(exc) from exc
        mail.header = [Header(name, value) for name, value in message.headers.items()]
        mail.category = [Category(category) for category in message.categories]
        custom_args = {**message.custom_args, "outbox_id": message.outbox_id}
        mail.custom_arg = [CustomArg(key, value) for key, value in custom_args.items()]
        if self.sandbox:
            mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
        payload: Payload = mail.get()
        return payload

    def post(self, payload: Payload) -> Any:
        """One ``POST /v3/mail/send``; every SDK and transport failure is translated here."""
        try:
            return self._client().client.mail.send.post(request_body=payload, timeout=self.timeout)
        except (SendGridHTTPError, URLError, http.client.HTTPException, OSError) as exc:
            raise translate_error(exc, now=self._clock()) from exc

    def parse_result(self, message: EmailMessage, response: Any) -> SendResult:
        """SendGrid returns the message id in the ``X-Message-Id`` header (absent in sandbox mode)."""
        message_id = response.headers.get("X-Message-Id")
        return SendResult(str(message_id) if message_id else None)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = sendgrid.SendGridAPIClient(self._api_key, host=self.host)
            self._local.client = client
        return client


def translate_error(exc: Exception, *, now: float | None = None) -> ChannelError:
    """Classify a SendGrid SDK or transport failure (the only place that does)."""
    if isinstance(exc, SendGridHTTPError):
        return _http_error(exc, now=time.time() if now is None else now)
    if isinstance(exc, ApiKeyIncludedException):
        return PermanentSendError("the email content looks like it contains an API key", channel=CHANNEL_NAME)
    if isinstance(exc, URLError):
        # urllib raises URLError only while connecting or writing the request: SendGrid cannot have
        # received a complete request, so it cannot have processed it.
        return RetryableSendError(f"connection failed before sending: {exc.reason}", channel=CHANNEL_NAME)
    # Raised while waiting for the answer: the request was written and may have been processed.
    return UnknownOutcomeError(f"no answer after sending ({type(exc).__name__}: {exc})", channel=CHANNEL_NAME)


def _http_error(exc: SendGridHTTPError, *, now: float) -> ChannelError:
    status = int(exc.status_code)
    detail = f"SendGrid answered {status}: {_error_messages(exc)}"
    if status == 429:
        retry_after = _retry_after(exc.headers, now=now)
        return RetryableSendError(detail, channel=CHANNEL_NAME, status_code=status, retry_after=retry_after)
    if 400 <= status < 500:
        return PermanentSendError(detail, channel=CHANNEL_NAME, status_code=status)
    return UnknownOutcomeError(detail, channel=CHANNEL_NAME, status_code=status)


def _retry_after(headers: Any, *, now: float) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (an epoch timestamp), if SendGrid sent one."""
    reset = headers.get("X-RateLimit-Reset") if headers is not None else None
    try:
        return max(float(reset) - now, 0.0) if reset is not None else None
    except ValueError:
        return None


def _error_messages(exc: SendGridHTTPError) -> str:
    """The ``errors[].message`` texts of a SendGrid error body, or the raw body."""
    try:
        body = exc.to_dict
    except ValueError:
        return repr(exc.body[:200])
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return repr(body)[:200]
    return "; ".join(str(error.get("message")) for error in errors if isinstance(error, dict))
