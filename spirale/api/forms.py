"""``POST /forms/{form_id}``: a web-form download enrolls a lead.

The submission is validated, then stored durably in ``form_submissions`` BEFORE anything else
(idempotent on ``submission_id``, or on a hash of form + email + UTC day), and the answer is 202
with the lead's id: the existing lead's for a known email, else a fresh id the intake will create
the lead under. Only then is the intake started (``start_intake``); if that fails, or no trigger
is configured, the submission waits for the next intake run: nothing is lost.

A known and a new email get the same answer shape and run the same queries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from models.leads import normalize_email, normalize_phone
from models.tables import FormSubmission, Lead
from sequences.forms import FormSpec
from spirale.api.context import AcceptedSubmission, ApiContext, get_context, read_body

logger = logging.getLogger(__name__)
router = APIRouter()

SUBMISSIONS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
MAX_BODY = 64 * 1024
MAX_TEXT = 200
TEXT_FIELDS = ("first_name", "last_name", "company", "job_title")
TRUE_WORDS = frozenset({"1", "true", "on", "yes", "oui", "y"})
FALSE_WORDS = frozenset({"", "0", "false", "off", "no", "non", "n"})


class FieldError(ValueError):
    """An invalid form field; the message starts with the field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated form submission."""

    email: str
    lead: dict[str, Any]
    submission_id: str | None


@router.post("/forms/{form_id}", status_code=202)
async def submit_form(form_id: str, request: Request) -> JSONResponse:
    """Store a form submission and start its intake; answers 202 with the lead id."""
    context = get_context(request)
    form = context.forms.get(form_id)
    if form is None:
        raise HTTPException(status_code=404, detail=f"unknown form {form_id!r}")
    fields = parse_body(await read_body(request, limit=MAX_BODY), request.headers.get("content-type"))
    try:
        submission = validate_submission(fields)
    except FieldError as exc:
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=422)
    if context.engine.dialect.name == "sqlite":
        # A local SQLite write takes well under a millisecond and writers queue anyway: handing it
        # to a worker thread would cost more than it saves.
        accepted = store_submission(context, form_id, form, submission)
    else:
        accepted = await run_in_threadpool(store_submission, context, form_id, form, submission)
    start = accepted.new and context.start_intake is not None
    task = BackgroundTask(trigger_intake, context, accepted) if start else None
    return JSONResponse(
        {"lead_id": str(accepted.lead_id), "status": "accepted"}, status_code=202, background=task
    )


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The submitted fields of a JSON or form-encoded body; 400 / 415 for anything else."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
        if kind == "application/json":
            data = json.loads(text) if text.strip() else None
            if not isinstance(data, dict):
                raise HTTPException(status_code=400, detail="the JSON body must be an object of fields")
            return data
        if kind == "application/x-www-form-urlencoded":
            return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=100))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: absurdly deep JSON nesting, which json refuses that way.
        raise HTTPException(status_code=400, detail=f"malformed body: {type(exc).__name__}") from exc
    raise HTTPException(status_code=415, detail="send application/json or application/x-www-form-urlencoded")


def validate_submission(fields: Mapping[str, Any]) -> Submission:
    """Check and normalize the fields; raises :class:`FieldError` naming the first bad field."""
    raw_email = _text(fields, "email", limit=320)
    if not raw_email:
        raise FieldError("email", "required")
    try:
        email = normalize_email(raw_email)
    except ValueError as exc:
        raise FieldError("email", str(exc)) from exc
    country = (_text(fields, "country", limit=2) or "FR").upper()
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        raise FieldError("country", f"expected a two-letter country code, got {country!r}")
    lead: dict[str, Any] = {"email": email, "country": country}
    for name in TEXT_FIELDS:
        lead[name] = _text(fields, name, limit=MAX_TEXT)
    raw_phone = _text(fields, "phone", limit=32)
    try:
        lead["phone"] = normalize_phone(raw_phone, country) if raw_phone else None
    except ValueError as exc:
        raise FieldError("phone", str(exc)) from exc
    for name in ("consent_email", "consent_sms"):
        lead[name] = _flag(fields, name)
    return Submission(email=email, lead=lead, submission_id=_text(fields, "submission_id", limit=128) or None)


def _text(fields: Mapping[str, Any], name: str, *, limit: int) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldError(name, "expected text")
    value = value.strip()
    if len(value) > limit:
        raise FieldError(name, f"longer than {limit} characters")
    if any(ord(c) < 32 for c in value):
        raise FieldError(name, "control characters are not allowed")
    return value


def _flag(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise FieldError(name, "expected a checkbox value (true/false, on, 1/0)")


def submission_key(form_id: str, email: str, submission_id: str | None, now: datetime) -> str:
    """The idempotency key: the client's submission id (per form), else form + email + UTC day."""
    if submission_id:
        return "id:" + hashlib.sha256(f"{form_id}|{submission_id}".encode()).hexdigest()
    day = now.date().isoformat()
    return "day:" + hashlib.sha256(f"{form_id}|{email}|{day}".encode()).hexdigest()


_BY_KEY = select(SUBMISSIONS.c.id, SUBMISSIONS.c.lead_id).where(
    SUBMISSIONS.c.submission_key == bindparam("key")
)
# One round trip for the three lookups: the stored submission of this key, the lead with this
# email, and the lead id already promised to a waiting submission of this email. All three always
# run, so a known email takes no different path than a new one.
_LOOKUP = select(
    _BY_KEY.with_only_columns(SUBMISSIONS.c.id).scalar_subquery().label("row_id"),
    _BY_KEY.with_only_columns(SUBMISSIONS.c.lead_id).scalar_subquery().label("row_lead"),
    select(LEADS.c.id).where(LEADS.c.email == bindparam("email")).scalar_subquery().label("known"),
    select(SUBMISSIONS.c.lead_id)
    # Every waiting submission of an email was promised the same id: any one of them will do.
    .where(SUBMISSIONS.c.email == bindparam("email"), SUBMISSIONS.c.status == "received")
    .limit(1)
    .scalar_subquery()
    .label("waiting"),
)
# Built once: statement construction costs more than SQLite's own work at hundreds per second.
_INSERTS = {
    name: dialect.insert(SUBMISSIONS)
    .on_conflict_do_nothing(index_elements=["submission_key"])
    .returning(SUBMISSIONS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_EMAIL_LOCK = select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("email"), 0)))


def store_submission(
    context: ApiContext, form_id: str, form: FormSpec, submission: Submission
) -> AcceptedSubmission:
    """Store the submission (once per key) and return it with its lead id."""
    now = context.clock()
    key = submission_key(form_id, submission.email, submission.submission_id, now)
    email = {"email": submission.email}
    with context.writing(), context.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Same-email submissions queue here, so they agree on one lead id and one row per key.
            conn.execute(_EMAIL_LOCK, email)
        found = conn.execute(_LOOKUP, {"key": key, **email}).one()
        if found.row_id is not None:
            return AcceptedSubmission(found.row_id, key, form_id, form.sequence, found.row_lead, new=False)
        lead_id = found.known or found.waiting or uuid.uuid4()
        row_id = uuid.uuid4()
        row = _row(row_id, key, form_id, submission, lead_id, now)
        if conn.execute(_INSERTS[conn.dialect.name], row).first() is None:
            # A concurrent request stored the same key first (possible on PostgreSQL only).
            again = conn.execute(_BY_KEY, {"key": key}).one()
            return AcceptedSubmission(again[0], key, form_id, form.sequence, again[1], new=False)
    return AcceptedSubmission(row_id, key, form_id, form.sequence, lead_id, new=True)


def _row(
    row_id: uuid.UUID, key: str, form_id: str, submission: Submission, lead_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    return {
        "id": row_id,
        "form_id": form_id,
        "submission_key": key,
        "email": submission.email,
        "lead_id": lead_id,
        "status": "received",
        "error": None,
        # Flat lead fields, as the intake reads them (spirale.lead_input.parse_lead_input).
        "payload": {name: value for name, value in submission.lead.items() if value not in (None, "")},
        "received_at": now,
        "processed_at": None,
    }


def trigger_intake(context: ApiContext, accepted: AcceptedSubmission) -> None:
    """Start the intake of a stored submission; on failure it waits for the next intake run."""
    if context.start_intake is None:
        return
    try:
        context.start_intake(accepted)
    except Exception as exc:
        # The submission is already durable: a trigger failure (no Prefect server...) only delays it.
        logger.warning(
            "could not start the intake of submission %s (%s: %s): it waits for the next intake run",
            accepted.submission_id,
            type(exc).__name__,
            exc,
        )
