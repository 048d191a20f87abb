"""Turn a decided step into the provider-neutral message a channel sends: rendered content, the
sender identity, the one-click unsubscribe headers, and the ids that tie provider events back to
the outbox row."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.base import EmailMessage, SmsMessage
from channels.sms_length import sms_length
from channels.unsubscribe import UnsubscribeSigner, list_unsubscribe_headers, unsubscribe_url
from models.claims import ClaimedEnrollment
from models.ids import ordered_id
from sequences.rendering import Renderer
from sequences.schema import Channel, Sequence, Step
from spirale.dispatch.batch import PendingSend
from spirale.settings import Settings


@dataclass
class MessageBuilder:
    """Builds messages for one dispatcher; ``providers`` maps a channel kind to its provider name."""

    renderer: Renderer
    settings: Settings
    providers: Mapping[str, str]

    def __post_init__(self) -> None:
        self._signer = UnsubscribeSigner(self.settings.secret_key)
        self._sender = {"name": self.settings.sender_name, "email": self.settings.sender_email}
        self._public_url = self.settings.public_url.rstrip("/")

    @staticmethod
    def new_id() -> uuid.UUID:
        return ordered_id()

    def provider_name(self, channel: str) -> str:
        return self.providers[channel]

    def unsubscribe_link(self, lead_key: str, channel: str) -> str:
        return unsubscribe_url(self._public_url, self._signer.sign(lead_id=lead_key, channel=channel))

    def context(
        self, sequence: Sequence, step: Step, variant: str | None, lead: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The template context: plain dicts only, never ORM objects."""
        return {
            "lead": lead["context"],
            "sender": self._sender,
            "unsubscribe_url": self.unsubscribe_link(lead["key"], step.channel.value),
            "sequence": {"name": sequence.name},
            "step": {"id": step.id, "channel": step.channel.value},
            "variant": variant,
        }

    def build(
        self,
        outbox_id: uuid.UUID,
        sequence: Sequence,
        step: Step,
        variant: str | None,
        lead: Mapping[str, Any],
        address: str,
    ) -> tuple[EmailMessage | SmsMessage, str | None, int | None]:
        """Render and wrap one message; returns (message, subject, SMS segments)."""
        context = self.context(sequence, step, variant, lead)
        rendered = self.renderer.render_step(sequence, step, variant or None, context)
        oid = str(outbox_id)
        if step.channel is Channel.EMAIL:
            headers = list_unsubscribe_headers(context["unsubscribe_url"], self.settings.unsubscribe_mailto)
            email = EmailMessage(
                outbox_id=oid,
                to=address,
                subject=rendered.subject or "",
                html=rendered.html or "",
                text=rendered.text or "",
                from_email=self.settings.sender_email,
                from_name=self.settings.sender_name,
                headers=headers,
                categories=(sequence.name, f"{sequence.name}/{step.id}"),
                custom_args={
                    "outbox_id": oid,
                    "lead_id": lead["key"],
                    "sequence": sequence.name,
                    "step": step.id,
                },
            )
            return email, rendered.subject, None
        body = rendered.text or ""
        sms = SmsMessage(
            outbox_id=oid,
            to=address,
            body=body,
            status_callback=f"{self._public_url}/webhooks/twilio/status?outbox_id={oid}",
        )
        return sms, None, sms_length(body).segments

    def pending(
        self,
        outbox_id: uuid.UUID,
        channel: str,
        message: EmailMessage | SmsMessage,
        row: ClaimedEnrollment,
        segments: int | None,
    ) -> PendingSend:
        return PendingSend(
            outbox_id=outbox_id,
            channel=channel,
            message=message,
            lead_id=row.lead_id,
            enrollment_id=row.id,
            segments=segments,
        )
