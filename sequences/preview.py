"""Previews for marketers: every step of a sequence rendered for one lead, as files a browser opens
offline, with an ``index.html`` listing them in send order with their planned local times.

Each email gives ``NN-STEP[-VARIANT].html`` (the message as sent) and ``.txt`` (its text part); each
SMS a ``.txt`` with its encoding and segment count shown in the index; each manual step (call,
LinkedIn, task) a ``.txt`` of its note. Every variant of an A/B step is rendered. The messages carry
a real signed unsubscribe link, so a preview shows exactly what a lead would receive. A step that
fails to render is listed with its error instead of stopping the preview.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import SecretStr

from channels.sms_length import SmsLength, sms_length
from channels.unsubscribe import UnsubscribeSigner, unsubscribe_url
from models.leads import lead_context
from sequences.durations import format_duration
from sequences.planner import PlannedStep, lead_key, lead_zone, plan
from sequences.rendering import SAMPLE_LEAD, Renderer, plain_dict
from sequences.schema import Channel, Sequence, Step
from spirale.errors import RenderError

INDEX = "index.html"
_OWN_FILES = re.compile(r"^\d{2,}-[a-z0-9_-]+\.(html|txt)$")
_PAGE = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

UnsubscribeLinks = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class PreviewEntry:
    """One rendered message (a step, or one variant of an A/B step) and its files."""

    order: int
    step: Step
    planned: PlannedStep
    variant: str | None = None
    weight: float | None = None
    subject: str | None = None
    text: str | None = None
    sms: SmsLength | None = None
    files: dict[str, str] = field(default_factory=dict)
    unsubscribe_url: str | None = None
    error: str | None = None

    @property
    def title(self) -> str:
        return f"{self.step.id} · {self.variant}" if self.variant else self.step.id


@dataclass(frozen=True, slots=True)
class Preview:
    """A written preview: where it is and what it holds."""

    sequence: Sequence
    out_dir: Path
    entries: tuple[PreviewEntry, ...]

    @property
    def index(self) -> Path:
        return self.out_dir / INDEX

    @property
    def errors(self) -> list[PreviewEntry]:
        return [entry for entry in self.entries if entry.error]


def preview_lead(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """The template view of a lead given as plain fields (a lead JSON file), or the sample lead.
    Consent may be given flat (``consent_email``) or nested (``consent: {email: true}``)."""
    if fields is None:
        return plain_dict(SAMPLE_LEAD)
    context = lead_context(fields)
    consent = fields.get("consent")
    if isinstance(consent, Mapping):
        context["consent"] = {channel: bool(consent.get(channel)) for channel in ("email", "sms")}
    return context


def signed_unsubscribe_links(secret_key: SecretStr | str, public_url: str, key: str) -> UnsubscribeLinks:
    """Real unsubscribe URLs for the lead ``key``, one per channel, signed as the dispatcher signs."""
    signer = UnsubscribeSigner(secret_key)
    return lambda channel: unsubscribe_url(public_url, signer.sign(lead_id=key, channel=channel))


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    """What to preview: a sequence for a lead (plain fields, or None for the sample lead) enrolled
    at the aware instant ``start``; the sender and the unsubscribe signing come from settings."""

    sequence: Sequence
    lead: Mapping[str, Any] | None
    start: datetime
    sender: Mapping[str, str]
    public_url: str
    secret_key: SecretStr | str = field(repr=False)


def build_preview(request: PreviewRequest, *, renderer: Renderer, out_dir: Path) -> Preview:
    """Render every step of ``request.sequence`` for its lead into ``out_dir`` and write the index.
    Files of an earlier preview in ``out_dir`` are replaced. The lead is keyed (jitter, unsubscribe
    token) by its ``id``, else its email, as ``spirale plan`` does."""
    context_lead = preview_lead(request.lead)
    planning_lead = {**context_lead, "id": (request.lead or {}).get("id")}
    unsubscribe = signed_unsubscribe_links(request.secret_key, request.public_url, lead_key(planning_lead))
    timeline = plan(request.sequence, planning_lead, request.start)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_previous(out_dir)
    entries: list[PreviewEntry] = []
    for planned in sorted(timeline, key=lambda p: p.at):
        step = request.sequence.steps[request.sequence.step_index(planned.step_id)]
        for variant in step.variants or (None,):
            base = PreviewEntry(
                order=len(entries) + 1,
                step=step,
                planned=planned,
                variant=variant.id if variant else None,
                weight=variant.weight if variant else None,
            )
            context = _context(request, step, base.variant, context_lead, unsubscribe)
            entries.append(_render(base, request.sequence, renderer, context, out_dir))
    preview = Preview(request.sequence, out_dir, tuple(entries))
    _write_index(preview, request, context_lead, planning_lead)
    return preview


def _context(
    request: PreviewRequest,
    step: Step,
    variant: str | None,
    lead: dict[str, Any],
    unsubscribe: UnsubscribeLinks,
) -> dict[str, Any]:
    return {
        "lead": lead,
        "sender": dict(request.sender),
        "unsubscribe_url": unsubscribe(step.channel.value),
        "sequence": {"name": request.sequence.name},
        "step": {"id": step.id, "channel": step.channel.value},
        "variant": variant,
    }


def _render(
    entry: PreviewEntry, sequence: Sequence, renderer: Renderer, context: Mapping[str, Any], out_dir: Path
) -> PreviewEntry:
    stem = f"{entry.order:02d}-{entry.step.id}" + (f"-{entry.variant}" if entry.variant else "")
    try:
        message = renderer.render_step(sequence, entry.step, entry.variant, context)
    except RenderError as exc:
        return replace(entry, error=str(exc))
    files: dict[str, str] = {}
    if message.html is not None:
        files["HTML"] = _write(out_dir / f"{stem}.html", message.html)
    if message.text is not None:
        label = {Channel.EMAIL: "text part", Channel.SMS: "SMS text"}.get(entry.step.channel, "note")
        files[label] = _write(out_dir / f"{stem}.txt", message.text)
    return replace(
        entry,
        subject=message.subject,
        text=message.text,
        sms=sms_length(message.text or "") if entry.step.channel is Channel.SMS else None,
        files=files,
        unsubscribe_url=None if entry.step.channel.is_manual else str(context["unsubscribe_url"]),
    )


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return path.name


def _remove_previous(out_dir: Path) -> None:
    """Delete what an earlier preview wrote here (only files named the way previews name them)."""
    for path in out_dir.iterdir():
        if path.is_file() and (path.name == INDEX or _OWN_FILES.match(path.name)):
            path.unlink()


def _write_index(
    preview: Preview,
    request: PreviewRequest,
    lead: Mapping[str, Any],
    planning_lead: Mapping[str, Any],
) -> None:
    tz, country = lead_zone(request.sequence, planning_lead)
    page = _PAGE.get_template("preview.html.j2").render(
        sequence=request.sequence,
        lead=lead,
        lead_key=lead_key(planning_lead),
        start=request.start.astimezone(tz),
        zone=tz.key,
        country=country,
        entries=preview.entries,
        holdouts=_holdouts(request.sequence),
        format_duration=format_duration,
    )
    preview.index.write_text(page, encoding="utf-8")


def _holdouts(sequence: Sequence) -> dict[str, float]:
    return {step.id: step.holdout for step in sequence.steps if step.holdout}
