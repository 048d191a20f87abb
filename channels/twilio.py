"""SMS through Twilio's Messages API, with the official ``twilio`` SDK.

Twilio offers no idempotency key for ``Messages.create``, so only what Twilio says it did not
process is retried: HTTP 429 / error 20429 ("never processed, always safe to retry") and a
connection that could not be opened. Timeouts, resets after the request left and 5xx answers are
``UnknownOutcomeError``: the status callback (it carries the outbox id) or a lookup settles them.
Error 21610 means the recipient replied STOP: permanent, and the number must be suppressed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from channels.base import BaseChannel, ChannelKind, SendResult, SmsMessage
from channels.retry import RetryPolicy
from channels.sms_length import sms_length
from spirale.errors import ChannelError, PermanentSendError, RetryableSendError, UnknownOutcomeError

CHANNEL_NAME = "twilio"
TWILIO_API = "https://api.twilio.com"

OPTED_OUT = 21610
RATE_LIMITED = 20429
# Refusals worth naming; every other 4xx is permanent too.
PERMANENT_CODES = {
    21211: "invalid 'To' phone number",
    21408: "sending to this region is not enabled",
    21610: "the recipient replied STOP (unsubscribed)",
    21614: "'To' is not a mobile number",
}

Payload = dict[str, str]


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK ships no type hints
    """The SDK's HTTP client, sending to ``base_url`` instead of ``https://api.twilio.com``.

    This is the SDK's documented seam (``Client(http_client=...)``): it serves regional proxies
    and lets tests talk to a local fake Twilio over loopback.
    """

    def __init__(self, base_url: str, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        """Rewrite the Twilio API prefix, then send as the SDK would."""
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TokenBucket:
    """Spaces calls to at most ``rate`` per second, allowing ``burst`` back-to-back (thread-safe).

    Twilio queues whatever a sender cannot emit at its MPS and expires the queue after hours, so
    pacing on our side keeps messages in our outbox (cancellable, suppressible) until they can go.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate} burst={burst}")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._theoretical_arrival = float("-inf")

    def acquire(self) -> None:
        """Block until the caller may make one call."""
        with self._lock:
            now = self._clock()
            arrival = max(now, self._theoretical_arrival)
            allowed_at = max(now, arrival - self._tolerance)
            self._theoretical_arrival = arrival + self._interval
        # Sleeping outside the lock: the slot is already reserved, others reserve the next ones.
        if allowed_at > now:
            self._sleep(allowed_at - now)


class TwilioSms(BaseChannel[SmsMessage, Payload, Any]):
    """Sends each SMS with one ``Messages.create``, paced to ``per_second`` for this sender."""

    name = CHANNEL_NAME
    kind = ChannelKind.SMS

    def __init__(
        self,
        account_sid: str,
        auth_token: str | SecretStr,
        *,
        messaging_service_sid: str | None = None,
        from_: str | None = None,
        base_url: str = TWILIO_API,
        per_second: float = 1.0,
        timeout: float = 10.0,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(concurrency=concurrency, retry=retry)
        # A messaging service picks the sender from its pool; it wins over a fixed number.
        if messaging_service_sid:
            self.sender = {"messaging_service_sid": messaging_service_sid}
        elif from_:
            self.sender = {"from_": from_}
        else:
            raise ValueError("Twilio needs a messaging service SID or a 'from' number")
        self.account_sid = account_sid
        self._auth_token = auth_token.get_secret_value() if isinstance(auth_token, SecretStr) else auth_token
        self.base_url = base_url
        self.timeout = timeout
        self.pacer = TokenBucket(per_second, clock=clock, sleep=sleep)
        self._local = threading.local()

    def build_payload(self, message: SmsMessage) -> Payload:
        """Keyword arguments for ``client.messages.create``."""
        payload = {"to": message.to, "body": message.body, **self.sender}
        if message.status_callback:
            payload["status_callback"] = message.status_callback
        return payload

    def post(self, payload: Payload) -> Any:
        """Wait for this sender's slot, then create the message; SDK failures are translated here."""
        self.pacer.acquire()
        try:
            return self._client().messages.create(**payload)
        except (TwilioRestException, requests.RequestException) as exc:
            raise translate_error(exc) from exc

    def parse_result(self, message: SmsMessage, response: Any) -> SendResult:
        """Twilio's message SID; segments as measured for cost (GSM-7 / UCS-2)."""
        return SendResult(str(response.sid), segments=sms_length(message.body).segments)

    def message_status(self, sid: str) -> str:
        """The current status of a sent message (``queued``, ``sent``, ``delivered``...)."""
        try:
            return str(self._client().messages(sid).fetch().status)
        except (TwilioRestException, requests.RequestException) as exc:
            raise translate_error(exc) from exc

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            http_client = BaseUrlHttpClient(self.base_url, timeout=self.timeout)
            client = Client(self.account_sid, self._auth_token, http_client=http_client)
            self._local.client = client
        return client


def translate_error(exc: Exception) -> ChannelError:
    """Classify a Twilio SDK or transport failure (the only place that does)."""
    if isinstance(exc, TwilioRestException):
        return _rest_error(exc)
    if isinstance(exc, requests.ConnectTimeout) or _connection_refused(exc):
        return RetryableSendError(f"connection failed before sending: {exc}", channel=CHANNEL_NAME)
    # A read timeout, or a connection dropped once the request was written: it may have arrived.
    return UnknownOutcomeError(f"no answer after sending ({type(exc).__name__}: {exc})", channel=CHANNEL_NAME)


def _rest_error(exc: TwilioRestException) -> ChannelError:
    status, code = int(exc.status), exc.code
    detail = f"Twilio answered {status}" + (f" (error {code})" if code else "")
    detail += f": {PERMANENT_CODES.get(code or 0, exc.msg)}"
    provider_code = str(code) if code else None
    if status == 429 or code == RATE_LIMITED:
        return RetryableSendError(
            detail, channel=CHANNEL_NAME, provider_code=provider_code, status_code=status
        )
    if 400 <= status < 500:
        return PermanentSendError(
            detail,
            channel=CHANNEL_NAME,
            provider_code=provider_code,
            status_code=status,
            suppress_address=code == OPTED_OUT,
        )
    return UnknownOutcomeError(detail, channel=CHANNEL_NAME, provider_code=provider_code, status_code=status)


def _connection_refused(exc: Exception) -> bool:
    """True when requests failed to open the connection (refused, unresolvable host)."""
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    return isinstance(getattr(exc.args[0], "reason", None), NewConnectionError)
