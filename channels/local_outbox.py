"""The local outbox: channels that write messages to disk instead of calling a provider.

Used in development, in the demo and whenever no provider credentials are configured. Emails become
real RFC 5322 ``.eml`` files (open them in any mail client); SMS become JSON lines.

Files use LF line endings, as mail stores on disk do (mbox, Maildir) and as ``email`` writes by
default. The ``.eml`` bytes are written directly rather than through ``email.message.EmailMessage``: the
stdlib's policy machinery costs about 1.5 ms per message (a few hundred per second), while this
writer produces the same structure (multipart/alternative, quoted-printable parts, RFC 2047 headers)
at several thousand per second. Tests parse every file back with ``email.parser``.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr
from functools import lru_cache
from pathlib import Path

from channels.base import BaseChannel, ChannelKind, EmailMessage, SendResult, SmsMessage
from channels.retry import RetryPolicy
from channels.sms_length import sms_length
from spirale.clock import utcnow
from spirale.errors import PermanentSendError

CHANNEL_NAME = "local-outbox"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 ftext)
_RESERVED_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
        "content-type", "content-transfer-encoding", "x-spirale-outbox-id", "x-spirale-categories",
        "x-spirale-custom-args",
    }
)  # fmt: skip
# RFC 2047: an encoded word is at most 75 characters; 45 bytes of UTF-8 give 60 base64 characters.
_ENCODED_WORD_BYTES = 45
_MAX_LINE = 998


def local_message_id(outbox_id: str) -> str:
    """The deterministic provider message id the local outbox reports."""
    return f"local-{outbox_id}"


@dataclass(frozen=True, slots=True)
class EmlFile:
    """A rendered email on its way to disk."""

    outbox_id: str
    data: bytes


class LocalOutboxEmail(BaseChannel[EmailMessage, EmlFile, Path]):
    """Writes each email to ``outbox_dir/email/<outbox_id>.eml``, atomically and at most once."""

    name = CHANNEL_NAME
    kind = ChannelKind.EMAIL

    def __init__(
        self,
        outbox_dir: Path,
        *,
        clock: Callable[[], datetime] = utcnow,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(concurrency=1, retry=retry)
        self.email_dir = Path(outbox_dir) / "email"
        self.email_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock

    def build_payload(self, message: EmailMessage) -> EmlFile:
        """Render the message as RFC 5322 bytes."""
        _check_safe_id(message.outbox_id)
        return EmlFile(message.outbox_id, render_eml(message, date=self._clock()))

    def post(self, payload: EmlFile) -> Path:
        """Publish the file under its final name; a second write of the same outbox id is a no-op."""
        target = self.email_dir / f"{payload.outbox_id}.eml"
        if target.exists():
            return target
        temporary = self.email_dir / f".{payload.outbox_id}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "xb") as handle:
                handle.write(payload.data)
            # link() publishes atomically and, unlike rename(), refuses to replace a file a
            # concurrent writer published first: the first copy is the message that was "sent".
            os.link(temporary, target)
        except FileExistsError:
            return target
        finally:
            temporary.unlink(missing_ok=True)
        return target

    def parse_result(self, message: EmailMessage, response: Path) -> SendResult:
        """The local outbox always accepts, with a deterministic id."""
        return SendResult(local_message_id(message.outbox_id))


@dataclass(frozen=True, slots=True)
class SmsLine:
    """An SMS on its way to the JSON-lines file."""

    text: str
    segments: int


class LocalOutboxSms(BaseChannel[SmsMessage, SmsLine, int]):
    """Appends each SMS as one JSON line to ``outbox_dir/sms.jsonl``."""

    name = CHANNEL_NAME
    kind = ChannelKind.SMS

    def __init__(self, outbox_dir: Path, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(concurrency=1, retry=retry)
        self.path = Path(outbox_dir) / "sms.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def build_payload(self, message: SmsMessage) -> SmsLine:
        """One JSON line: outbox id, recipient, body, segment count and encoding."""
        length = sms_length(message.body)
        record = {
            "outbox_id": message.outbox_id,
            "to": message.to,
            "body": message.body,
            "segments": length.segments,
            "encoding": length.encoding,
        }
        return SmsLine(json.dumps(record, ensure_ascii=False) + "\n", length.segments)

    def post(self, payload: SmsLine) -> int:
        """Append the line; the lock keeps concurrent senders' lines whole."""
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(payload.text)
        return payload.segments

    def parse_result(self, message: SmsMessage, response: int) -> SendResult:
        """The local outbox always accepts, with a deterministic id."""
        return SendResult(local_message_id(message.outbox_id), segments=response)


def render_eml(message: EmailMessage, *, date: datetime) -> bytes:
    """``message`` as RFC 5322 / MIME bytes: multipart/alternative with a text and an HTML part."""
    digest = hashlib.sha256(message.outbox_id.encode()).hexdigest()[:32]
    # "=_" can never occur in quoted-printable output, so this boundary cannot collide with a body.
    boundary = f"=_spirale_{digest}"
    domain = message.from_email.rpartition("@")[2] or "spirale.local"
    message_id = message.outbox_id if _SAFE_ID.fullmatch(message.outbox_id) else digest
    head = [
        f"From: {_sender(message.from_name, message.from_email)}",
        f"To: {_checked(message.to)}",
        _header("Subject", message.subject),
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{message_id}@{domain}>",
        *_extra_headers(message),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    parts = [_part("plain", message.text), _part("html", message.html)]
    body = b"".join(f"--{boundary}\n".encode() + part for part in parts)
    return ("\n".join(head) + "\n\n").encode() + body + f"--{boundary}--\n".encode()


def _extra_headers(message: EmailMessage) -> Iterable[str]:
    for name, value in message.headers.items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
            raise _invalid(message.outbox_id, f"header name {name!r} is invalid or reserved")
        yield _header(name, value)
    yield f"X-Spirale-Outbox-Id: {_checked(message.outbox_id)}"
    if message.categories:
        yield _header("X-Spirale-Categories", ", ".join(message.categories))
    custom_args = {**message.custom_args, "outbox_id": message.outbox_id}
    yield _header("X-Spirale-Custom-Args", json.dumps(custom_args, separators=(",", ":")))


def _part(subtype: str, content: str) -> bytes:
    text = content.replace("\r\n", "\n").replace("\r", "\n").encode()
    encoded = binascii.b2a_qp(text, istext=True)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable'
    return head.encode() + b"\n\n" + encoded + b"\n"


def _header(name: str, value: str) -> str:
    """One header line; non-ASCII or over-long values become RFC 2047 encoded words."""
    _checked(value)
    if value.isascii() and len(name) + len(value) + 2 <= _MAX_LINE:
        return f"{name}: {value}"
    return f"{name}: " + "\n ".join(_encoded_words(value))


def _encoded_words(value: str) -> Iterable[str]:
    chunk = ""
    for character in value:
        if len((chunk + character).encode()) > _ENCODED_WORD_BYTES:
            yield _encoded_word(chunk)
            chunk = ""
        chunk += character
    yield _encoded_word(chunk)


def _encoded_word(chunk: str) -> str:
    return f"=?utf-8?b?{binascii.b2a_base64(chunk.encode(), newline=False).decode()}?="


@lru_cache(maxsize=64)
def _sender(name: str, address: str) -> str:
    _checked(name)
    _checked(address)
    return formataddr((name, address), charset="utf-8")


def _checked(value: str) -> str:
    """Refuse line breaks in header values: they would let content inject headers."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise PermanentSendError(f"line break in header value {value[:40]!r}", channel=CHANNEL_NAME)
    return value


def _check_safe_id(outbox_id: str) -> None:
    if not _SAFE_ID.fullmatch(outbox_id):
        raise _invalid(outbox_id, "an outbox id must be a safe file name ([A-Za-z0-9._-], max 128)")


def _invalid(outbox_id: str, reason: str) -> PermanentSendError:
    return PermanentSendError(f"outbox {outbox_id}: {reason}", channel=CHANNEL_NAME)
