"""``POST /tasks/{task_id}/outcome``: a salesperson logs what happened on a sales task (a call
reached the lead, a voicemail, a meeting booked...). The cadence rules live in
``scoring.cadence.record_outcome``; this endpoint only translates HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, select
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from models.tables import SalesTask
from spirale.api.auth import require_api_token
from spirale.api.context import ApiContext, get_context

router = APIRouter()
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]


class OutcomeIn(BaseModel):
    """The body: the outcome (``reached``, ``no-answer``, ``meeting``...) and who logged it."""

    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(min_length=1, max_length=32)
    actor: str = Field(min_length=1, max_length=100)


@router.post("/tasks/{task_id}/outcome", dependencies=[Depends(require_api_token)])
async def task_outcome(task_id: uuid.UUID, body: OutcomeIn, request: Request) -> JSONResponse:
    """Record the outcome; 404 for an unknown task, 409 when the task cannot take it."""
    context = get_context(request)
    return await run_in_threadpool(_record, context, task_id, body)


def _record(context: ApiContext, task_id: uuid.UUID, body: OutcomeIn) -> JSONResponse:
    from scoring.cadence import CallLimitError, TaskError, record_outcome

    now = context.clock()
    with context.writing(), context.engine.begin() as conn:
        if conn.execute(select(TASKS.c.id).where(TASKS.c.id == task_id)).first() is None:
            raise HTTPException(status_code=404, detail=f"no task {task_id}")
        try:
            result = record_outcome(
                conn, task_id=task_id, outcome=body.outcome, now=now, actor=body.actor, rules=_rules(context)
            )
        except CallLimitError as exc:
            return _conflict(str(exc), allowed_at=exc.allowed_at)
        except TaskError as exc:
            return _conflict(str(exc))
    return JSONResponse(
        {
            "task_id": str(result.task_id),
            "lead_id": str(result.lead_id),
            "outcome": str(result.outcome),
            "already": result.already,
            "cadence_ended": result.cadence_ended,
            "exit_reason": result.exit_reason,
        },
        # A reached lead or a booked meeting is an event: score it and end other sequences now.
        background=BackgroundTask(context.on_events) if context.on_events is not None else None,
    )


def _rules(context: ApiContext) -> Any:
    from scoring.rules import load_rules, scoring_path

    path = scoring_path(context.settings.sequences_dir)
    return load_rules(path) if path.is_file() else None


def _conflict(message: str, *, allowed_at: datetime | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if allowed_at is not None:
        body["allowed_at"] = allowed_at.isoformat()
    return JSONResponse(body, status_code=409)
