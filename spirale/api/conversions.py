"""``POST /conversions``: a lead bought, signed or booked — from the shop, the CRM or a script.
Idempotent on ``(source, external_id)``; the rules live in ``scoring.conversions``."""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from spirale.api.auth import require_api_token
from spirale.api.context import ApiContext, get_context

router = APIRouter()


class ConversionIn(BaseModel):
    """A conversion of the lead given by ``lead_id`` or ``email``."""

    model_config = ConfigDict(extra="forbid")

    lead_id: uuid.UUID | None = None
    email: str | None = Field(default=None, max_length=320)
    occurred_at: AwareDatetime | None = None
    value: float | None = None
    source: str = Field(default="api", min_length=1, max_length=64)
    external_id: str | None = Field(default=None, max_length=128)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError("must be a positive amount")
        return value


@router.post("/conversions", dependencies=[Depends(require_api_token)])
async def post_conversion(body: ConversionIn, request: Request) -> JSONResponse:
    """201 when recorded, 200 when it already was, 422 for an unknown lead or a bad value."""
    context = get_context(request)
    return await run_in_threadpool(_record, context, body)


def _record(context: ApiContext, body: ConversionIn) -> JSONResponse:
    from scoring.conversions import ConversionError, record_conversion

    now = context.clock()
    occurred_at: datetime = body.occurred_at or now
    try:
        with context.writing(), context.engine.begin() as conn:
            recorded = record_conversion(
                conn,
                lead_id=body.lead_id,
                email=body.email,
                occurred_at=occurred_at,
                value=body.value,
                source=body.source,
                external_id=body.external_id,
            )
    except ConversionError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    process = BackgroundTask(context.on_events) if recorded and context.on_events is not None else None
    return JSONResponse({"recorded": recorded}, status_code=201 if recorded else 200, background=process)
