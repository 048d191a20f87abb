"""A fake SendGrid + Twilio API: a real HTTP server on 127.0.0.1 that the official SDKs talk to.

It speaks ``POST /v3/mail/send`` (SendGrid) and ``POST``/``GET`` on
``/2010-04-01/Accounts/{sid}/Messages[/{sid}].json`` (Twilio), checks credentials and payload
shapes, records every send request it receives (lookups are not recorded), and injects faults on
demand: by request order (:meth:`FakeProviders.script`) or by recipient
(:meth:`FakeProviders.fail_recipient`). :meth:`FakeProviders.refusing` closes the listening socket
so that connections are refused (a request that never left the client).

Usage: ``pytest_plugins = ("tests.fakes.providers",)`` in the root ``conftest.py`` (or in a test
module) provides the ``fake_providers`` fixture. Point ``SendGridEmail(SENDGRID_API_KEY,
host=fake.url)`` and ``TwilioSms(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, base_url=fake.url, ...)``
at it.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from channels.sms_length import sms_length

SENDGRID_API_KEY = "SG.fake-key.for-tests"
TWILIO_ACCOUNT_SID = "AC" + "f" * 32
TWILIO_AUTH_TOKEN = "fake-auth-token"
SENDGRID = "sendgrid"
TWILIO = "twilio"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_TWILIO_CREATE = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json")
_TWILIO_FETCH = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json")
_SENDGRID_RESERVED_HEADERS = frozenset(
    {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding"}
    | {"to", "from", "subject", "reply-to", "cc", "bcc"}
)


class FaultKind(StrEnum):
    """What the fake does instead of a plain success."""

    RATE_LIMIT = "rate-limit"  # 429 (+ X-RateLimit-Reset / Twilio 20429): not processed
    SERVER_ERROR = "server-error"  # 5xx, processed or not as the fault says
    SLOW = "slow"  # processed and recorded, then answers after `delay` seconds
    DROP_UNPROCESSED = "drop-unprocessed"  # connection reset before the body is read
    DROP_PROCESSED = "drop-processed"  # processed and recorded, then connection reset
    REJECT = "reject"  # a provider error answer (Twilio 21610, SendGrid 403...)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault; build them with the class methods."""

    kind: FaultKind
    status: int = 500
    code: int | None = None
    message: str = ""
    delay: float = 0.0
    reset_in: int = 1
    processed: bool = False

    @classmethod
    def rate_limit(cls, reset_in: int = 1) -> Fault:
        return cls(FaultKind.RATE_LIMIT, 429, 20429, "Too Many Requests", reset_in=reset_in)

    @classmethod
    def server_error(cls, status: int = 500, *, processed: bool = False) -> Fault:
        return cls(FaultKind.SERVER_ERROR, status, None, "Internal Server Error", processed=processed)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        return cls(FaultKind.SLOW, 0, delay=delay, processed=True)

    @classmethod
    def drop_unprocessed(cls) -> Fault:
        return cls(FaultKind.DROP_UNPROCESSED, 0)

    @classmethod
    def drop_processed(cls) -> Fault:
        return cls(FaultKind.DROP_PROCESSED, 0, processed=True)

    @classmethod
    def reject(cls, status: int = 400, code: int | None = None, message: str = "rejected") -> Fault:
        return cls(FaultKind.REJECT, status, code, message)

    @classmethod
    def opted_out(cls) -> Fault:
        return cls.reject(400, 21610, "Attempt to send to unsubscribed recipient")


@dataclass
class ProviderRequest:
    """One send request as the fake received it."""

    provider: str
    http_headers: dict[str, str]
    payload: dict[str, Any] = field(default_factory=dict)
    outbox_id: str | None = None
    to: str | None = None
    subject: str | None = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # the email's headers (SendGrid)
    status: int = 0  # HTTP status answered; 0 when the connection was dropped
    processed: bool = False  # True when the provider would deliver the message
    fault: FaultKind | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer of the fake."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
        extra = {"Content-Type": "application/json", **(headers or {})}
        return cls(status, json.dumps(document).encode(), extra)


class SendGridApi:
    """The slice of SendGrid v3 that Spirale uses."""

    name = SENDGRID

    def authorized(self, headers: dict[str, str], path: str) -> bool:
        return headers.get("authorization") == f"Bearer {SENDGRID_API_KEY}"

    def unauthorized(self) -> Reply:
        return self.error(401, None, "The provided authorization grant is invalid, expired, or revoked")

    def parse(self, record: ProviderRequest, body: bytes, path: str) -> Reply | None:
        try:
            payload = json.loads(body)
        except ValueError:
            return self.error(400, None, "Bad Request")
        record.payload = payload if isinstance(payload, dict) else {"_": payload}
        errors = sendgrid_errors(payload)
        if errors:
            return Reply.json(400, {"errors": [{"message": m, "field": f, "help": None} for f, m in errors]})
        personalization = payload["personalizations"][0]
        record.to = personalization["to"][0]["email"]
        record.subject = payload.get("subject", personalization.get("subject"))
        record.body = payload["content"][0]["value"]
        record.headers = {**payload.get("headers", {}), **personalization.get("headers", {})}
        custom_args = {**payload.get("custom_args", {}), **personalization.get("custom_args", {})}
        record.outbox_id = custom_args.get("outbox_id")
        return None

    def accept(self, record: ProviderRequest) -> Reply:
        record.message_id = secrets.token_urlsafe(16)
        sandbox = record.payload.get("mail_settings", {}).get("sandbox_mode", {}).get("enable", False)
        return Reply(200 if sandbox else 202, b"", {"X-Message-Id": record.message_id})

    def rate_limited(self, fault: Fault) -> Reply:
        headers = {
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + fault.reset_in),
        }
        return Reply.json(429, {"errors": [{"field": None, "message": "too many requests"}]}, headers)

    def error(self, status: int, code: int | None, message: str) -> Reply:
        return Reply.json(status, {"errors": [{"message": message, "field": None, "help": None}]})


class TwilioApi:
    """The slice of Twilio's 2010-04-01 Messages API that Spirale uses."""

    name = TWILIO

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def authorized(self, headers: dict[str, str], path: str) -> bool:
        expected = base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
        return headers.get("authorization") == f"Basic {expected}" and f"/{TWILIO_ACCOUNT_SID}/" in path

    def unauthorized(self) -> Reply:
        return self.error(401, 20003, "Authenticate")

    def parse(self, record: ProviderRequest, body: bytes, path: str) -> Reply | None:
        form = {key: values[0] for key, values in parse_qs(body.decode(), keep_blank_values=True).items()}
        record.payload = form
        record.to, record.body = form.get("To"), form.get("Body")
        record.outbox_id = _outbox_id_from_callback(form.get("StatusCallback"))
        if not record.to:
            return self.error(400, 21604, "A 'To' phone number is required.")
        if not record.body:
            return self.error(400, 21602, "Message body is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return self.error(400, 21603, "A 'From' phone number is required.")
        if not _E164.fullmatch(record.to):
            return self.error(400, 21211, f"The 'To' number {record.to} is not a valid phone number.")
        return None

    def accept(self, record: ProviderRequest) -> Reply:
        sid = "SM" + secrets.token_hex(16)
        record.message_id = sid
        message = _twilio_message(sid, record.payload)
        with self._lock:
            self.messages[sid] = message
        return Reply.json(201, message)

    def fetch(self, sid: str) -> Reply:
        with self._lock:
            message = self.messages.get(sid)
        if message is None:
            return self.error(404, 20404, f"The requested resource /Messages/{sid}.json was not found")
        return Reply.json(200, message)

    def rate_limited(self, fault: Fault) -> Reply:
        return self.error(429, 20429, "Too Many Requests")

    def error(self, status: int, code: int | None, message: str) -> Reply:
        more_info = f"https://www.twilio.com/docs/errors/{code}" if code else None
        return Reply.json(
            status, {"code": code, "message": message, "more_info": more_info, "status": status}
        )


ProviderApi = SendGridApi | TwilioApi


class FakeProviders:
    """The fake server and its state. Use :func:`running_fake_providers` or the fixture."""

    def __init__(self) -> None:
        self.sendgrid = SendGridApi()
        self.twilio = TwilioApi()
        self.latency = 0.0  # added to every successful answer, to make concurrency observable
        self.port = 0
        self._lock = threading.Lock()
        self._requests: list[ProviderRequest] = []
        self._scripts: dict[str, deque[Fault | None]] = {SENDGRID: deque(), TWILIO: deque()}
        self._recipient_faults: dict[str, list[Any]] = {}
        self._in_flight = 0
        self.max_in_flight = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self, *, final: bool = True) -> None:
        if final:
            self._stopping.set()  # wakes handlers sleeping in a slow fault
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        self._server = self._thread = None

    def pause(self) -> None:
        """Stop listening: connections are refused until :meth:`resume`."""
        self.stop(final=False)

    def resume(self) -> None:
        """Listen again, on the same port."""
        if self._server is None:
            self.start()

    @contextmanager
    def refusing(self) -> Iterator[None]:
        """Connections are refused inside the block."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def script(self, provider: str, faults: Iterable[Fault | None]) -> None:
        """The next send requests to ``provider`` meet these faults, in order (``None`` = success)."""
        with self._lock:
            self._scripts[provider].extend(faults)

    def fail_recipient(self, to: str, fault: Fault, *, times: int | None = None) -> None:
        """Sends to ``to`` meet ``fault`` (every time, or the next ``times`` times)."""
        with self._lock:
            self._recipient_faults[to] = [fault, times]

    def requests(self, provider: str | None = None) -> list[ProviderRequest]:
        """Every send request received so far (including refused and failed ones)."""
        with self._lock:
            return [r for r in self._requests if provider is None or r.provider == provider]

    def processed(self, provider: str | None = None) -> list[ProviderRequest]:
        """The send requests the provider acted on: what a recipient may actually receive."""
        return [r for r in self.requests(provider) if r.processed]

    def _scripted_fault(self, provider: str) -> Fault | None:
        with self._lock:
            script = self._scripts[provider]
            return script.popleft() if script else None

    def _recipient_fault(self, to: str | None) -> Fault | None:
        with self._lock:
            entry = self._recipient_faults.get(to or "")
            if entry is None or entry[1] == 0:
                return None
            if entry[1] is not None:
                entry[1] -= 1
            fault: Fault = entry[0]
            return fault

    def _record(self, record: ProviderRequest) -> None:
        with self._lock:
            self._requests.append(record)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def handle_send(self, handler: _Handler, api: ProviderApi) -> None:
        """One send request: scripted fault, auth, shape, recipient fault, then the answer."""
        record = ProviderRequest(api.name, dict(handler.lower_headers()))
        fault = self._scripted_fault(api.name)
        if fault is not None and fault.kind is FaultKind.DROP_UNPROCESSED:
            record.fault = fault.kind
            self._record(record)
            handler.drop()
            return
        body = handler.read_body()
        if not api.authorized(record.http_headers, handler.path):
            self._finish(handler, record, api.unauthorized())
            return
        invalid = api.parse(record, body, handler.path)
        if invalid is not None:
            self._finish(handler, record, invalid)
            return
        fault = fault or self._recipient_fault(record.to)
        self._answer(handler, api, record, fault)

    def _answer(
        self, handler: _Handler, api: ProviderApi, record: ProviderRequest, fault: Fault | None
    ) -> None:
        record.fault = fault.kind if fault else None
        if fault is not None and not fault.processed:
            if fault.kind is FaultKind.RATE_LIMIT:
                self._finish(handler, record, api.rate_limited(fault))
            else:
                self._finish(handler, record, api.error(fault.status, fault.code, fault.message))
            return
        record.processed = True
        accepted = api.accept(record)
        self._stopping.wait(self.latency)
        if fault is None:
            self._finish(handler, record, accepted)
        elif fault.kind is FaultKind.SLOW:
            record.status = accepted.status
            self._record(record)  # recorded first: the provider has the message, the client times out
            self._stopping.wait(fault.delay)
            handler.reply(accepted)
        elif fault.kind is FaultKind.DROP_PROCESSED:
            self._record(record)
            handler.drop()
        else:
            self._finish(handler, record, api.error(fault.status, fault.code, fault.message))

    def _finish(self, handler: _Handler, record: ProviderRequest, reply: Reply) -> None:
        record.status = reply.status
        self._record(record)
        handler.reply(reply)

    def handle_fetch(self, handler: _Handler, sid: str) -> None:
        if not self.twilio.authorized(dict(handler.lower_headers()), handler.path):
            handler.reply(self.twilio.unauthorized())
        else:
            handler.reply(self.twilio.fetch(sid))


class _Server(ThreadingHTTPServer):
    fake: FakeProviders
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # One request per connection: a refused or dropped connection then means exactly one request.
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        fake, path = self.server.fake, urlsplit(self.path).path
        fake._enter()
        self._in_flight = True
        try:
            if path == "/v3/mail/send":
                fake.handle_send(self, fake.sendgrid)
            elif _TWILIO_CREATE.fullmatch(path):
                fake.handle_send(self, fake.twilio)
            else:
                self.reply(Reply.json(404, {"errors": [{"message": f"no route for POST {path}"}]}))
        finally:
            self._settle()

    def do_GET(self) -> None:
        match = _TWILIO_FETCH.fullmatch(urlsplit(self.path).path)
        if match is None:
            self.reply(Reply.json(404, {"message": f"no route for GET {self.path}"}))
        else:
            self.server.fake.handle_fetch(self, match["sid"])

    def lower_headers(self) -> Iterable[tuple[str, str]]:
        return ((name.lower(), value) for name, value in self.headers.items())

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _settle(self) -> None:
        """The request stops counting as in flight once the answer starts: the client may send
        its next request as soon as it has read this one, before this thread returns."""
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            self.server.fake._leave()

    def reply(self, reply: Reply) -> None:
        self._settle()
        try:
            self.send_response(reply.status)
            for name, value in {**reply.headers, "Content-Length": str(len(reply.body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except ConnectionError:
            # The client gave up waiting (a slow fault): exactly the situation being simulated.
            self.close_connection = True

    def drop(self) -> None:
        """Reset the connection without answering (SO_LINGER 0 turns close into a TCP RST)."""
        self._settle()
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the recorded requests instead."""


def sendgrid_errors(payload: Any) -> list[tuple[str | None, str]]:
    """SendGrid's validation of a ``mail/send`` body, as (field, message) pairs."""
    if not isinstance(payload, dict):
        return [(None, "Bad Request")]
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return [("personalizations", "The personalizations field is required and must have at least one.")]
    errors: list[tuple[str | None, str]] = [
        (f"personalizations.{i}.to", "The to array is required for all personalization objects.")
        for i, p in enumerate(personalizations)
        if not (isinstance(p, dict) and _valid_recipients(p.get("to")))
    ]
    sender = payload.get("from")
    if not isinstance(sender, dict) or not _EMAIL.fullmatch(str(sender.get("email", ""))):
        errors.append(("from.email", "The from object must be provided for every email send."))
    if not payload.get("subject") and not all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    ):
        errors.append(("subject", "The subject is required."))
    errors += _content_errors(payload.get("content"))
    errors += _mapping_errors(payload, personalizations)
    categories = payload.get("categories", [])
    if not _valid_categories(categories):
        errors.append(("categories", "Categories must be at most 10 unique strings of up to 255 characters."))
    sandbox = payload.get("mail_settings", {}).get("sandbox_mode", {})
    if sandbox and not isinstance(sandbox.get("enable"), bool):
        errors.append(("mail_settings.sandbox_mode.enable", "Invalid type. Expected: boolean."))
    return errors


def _valid_recipients(recipients: Any) -> bool:
    return (
        isinstance(recipients, list)
        and bool(recipients)
        and all(isinstance(r, dict) and _EMAIL.fullmatch(str(r.get("email", ""))) for r in recipients)
    )


def _content_errors(content: Any) -> list[tuple[str | None, str]]:
    if not isinstance(content, list) or not content:
        return [("content", "Unless a valid template_id is provided, the content parameter is required.")]
    if not all(isinstance(c, dict) and isinstance(c.get("type"), str) and c.get("value") for c in content):
        return [("content", "Each content block needs a type and a non-empty value.")]
    types = [c["type"] for c in content]
    if (
        "text/plain" in types
        and "text/html" in types
        and types.index("text/plain") > types.index("text/html")
    ):
        return [("content", "If present, text/plain and text/html may only be provided in this order.")]
    return []


def _mapping_errors(payload: dict[str, Any], personalizations: list[Any]) -> list[tuple[str | None, str]]:
    errors: list[tuple[str | None, str]] = []
    scopes = [("", payload)] + [(f"personalizations.{i}.", p) for i, p in enumerate(personalizations)]
    for prefix, scope in scopes:
        for key in ("headers", "custom_args"):
            value = scope.get(key, {}) if isinstance(scope, dict) else {}
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                errors.append((prefix + key, "Invalid type. Expected: object of strings."))
            elif key == "headers" and _SENDGRID_RESERVED_HEADERS & {k.lower() for k in value}:
                errors.append((prefix + key, "The headers contain a reserved header."))
    return errors


def _valid_categories(categories: Any) -> bool:
    return (
        isinstance(categories, list)
        and len(categories) <= 10
        and all(isinstance(c, str) and 0 < len(c) <= 255 for c in categories)
        and len(set(categories)) == len(categories)
    )


def _outbox_id_from_callback(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    found = parse_qs(parts.query).get("outbox_id")
    return found[0] if found else parts.path.rstrip("/").rpartition("/")[2] or None


def _twilio_message(sid: str, form: dict[str, str]) -> dict[str, Any]:
    now = formatdate(usegmt=True).replace("GMT", "+0000")
    uri = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{sid}.json"
    service = form.get("MessagingServiceSid")
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": form["Body"],
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": str(sms_length(form["Body"]).segments),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "accepted" if service else "queued",
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": form["To"],
        "uri": uri,
    }


@contextmanager
def running_fake_providers() -> Iterator[FakeProviders]:
    """A started fake, stopped on exit."""
    fake = FakeProviders()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_providers() -> Iterator[FakeProviders]:
    """A fake SendGrid + Twilio server on a free loopback port, fresh for each test."""
    with running_fake_providers() as fake:
        yield fake
