"""Everything ``spirale serve`` runs in one process: the HTTP API in a thread, and every deployment
served by Prefect (schedules, the form trigger, one subprocess per flow run).

The deployments here mirror ``prefect.yaml`` (same names, schedules, limits and trigger), which
deploys the same flows to a process work pool instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval, Schedule
from prefect.types.entrypoint import EntrypointType

from flows.ab_review import ab_review
from flows.dispatch import dispatch
from flows.hygiene import hygiene
from flows.intake import intake
from flows.process_events import process_events
from flows.reactivation import reactivation
from flows.reconcile import reconcile
from flows.scoring import scoring
from spirale.errors import ConfigError
from spirale.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from prefect.deployments.runner import RunnerDeployment

    from spirale.api.context import AcceptedSubmission

logger = logging.getLogger(__name__)

FORM_SUBMITTED = "spirale.form.submitted"
SUBMISSION_RESOURCE = "spirale.form-submission"
PARIS = "Europe/Paris"
TAGS = ["spirale"]
# A run of the same deployment while one is still going is cancelled, never queued: the running
# one (or the next scheduled one) does the work, and two ticks never overlap.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
# A submission whose event was lost waits at most this long for an intake sweep.
INTAKE_SWEEP = timedelta(minutes=5)
API_START_TIMEOUT_S = 15.0
_EVENT_NAMESPACE = uuid.UUID("4f1d9a62-3c55-4d0e-9f2b-6f0c1e7a5b11")


def form_trigger() -> DeploymentEventTrigger:
    """Start ``intake`` on each ``spirale.form.submitted`` event, with the form and submission ids."""
    return DeploymentEventTrigger(
        name="intake on form submission",
        expect={FORM_SUBMITTED},
        match={"prefect.resource.id": f"{SUBMISSION_RESOURCE}.*"},
        parameters={
            "params": {
                "form_id": "{{ event.payload.form_id }}",
                "submission_id": "{{ event.payload.submission_id }}",
            }
        },
    )


def schedules() -> dict[str, list[Schedule]]:
    """The schedules of each deployment, by flow name."""
    return {
        "dispatch": [Interval(timedelta(minutes=1))],
        "intake": [Interval(INTAKE_SWEEP)],
        "process-events": [Interval(timedelta(minutes=1))],
        "reconcile": [Interval(timedelta(minutes=15))],
        "scoring": [Cron("0 2 * * *", timezone=PARIS)],
        "reactivation": [Cron("0 6 * * 1", timezone=PARIS)],
        "ab-review": [Cron("0 7 * * *", timezone=PARIS)],
        "hygiene": [Cron("0 3 * * 0", timezone=PARIS)],
    }


def deployments() -> list[RunnerDeployment]:
    """A deployment per flow, as ``prefect.yaml`` declares them."""
    when = schedules()
    named: dict[str, Flow[..., Any]] = {
        "tick": dispatch,
        "forms": intake,
        "webhooks": process_events,
        "unknown-outcomes": reconcile,
        "nightly": scoring,
        "weekly": reactivation,
        "daily": ab_review,
        "retention": hygiene,
    }
    built = []
    for name, flow in named.items():
        frequent = flow.name in {"dispatch", "intake", "process-events", "reconcile"}
        deployment = flow.to_deployment(
            name,
            schedules=when[flow.name],
            concurrency_limit=ONE_AT_A_TIME if frequent else None,
            triggers=[form_trigger()] if flow.name == "intake" else None,
            tags=TAGS,
            description=(flow.description or "").splitlines()[0],
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        built.append(cast("RunnerDeployment", deployment))
    return built


def emit_form_submitted(submission: AcceptedSubmission) -> None:
    """The API's intake hook: announce a stored submission to Prefect (the trigger starts
    ``intake``). The event id derives from the submission key, so a repeat is one event."""
    from prefect.events import emit_event

    event = emit_event(
        event=FORM_SUBMITTED,
        resource={
            "prefect.resource.id": f"{SUBMISSION_RESOURCE}.{submission.submission_id}",
            "prefect.resource.name": submission.form_id,
        },
        related=[
            {"prefect.resource.id": f"spirale.form.{submission.form_id}", "prefect.resource.role": "form"}
        ],
        payload={
            "form_id": submission.form_id,
            "submission_id": str(submission.submission_id),
            "sequence": submission.sequence,
        },
        id=uuid.uuid5(_EVENT_NAMESPACE, submission.submission_key),
    )
    if event is None:
        raise ConfigError(
            f"no Prefect API to announce {FORM_SUBMITTED} to; the next intake sweep takes it in"
        )


def serve_all(settings: Settings, *, host: str, port: int, limit: int | None = None) -> None:
    """Register every deployment (schedules and the form trigger), then open the API on
    ``host:port`` in a thread and run the flow runs until interrupted. Registering first means no
    submission can arrive before its trigger exists. Schedules stay active when the process stops."""
    import uvicorn
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from spirale.api.app import create_app

    app = create_app(settings, start_intake=emit_form_submitted)
    runner = Runner(pause_on_shutdown=False, limit=limit)
    served = deployments()
    for deployment in served:
        runner.add_deployment(deployment)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    # The API thread runs in this context, so the events it emits reach the same Prefect API.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(server.run,), name="spirale-api", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, f"http://{host}:{port}")
        names = ", ".join(f"{d.flow_name}/{d.name}" for d in served)
        logger.info("Spirale API on http://%s:%d; serving %s", host, port, names)
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        logger.info("stopping; the schedules stay active")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _wait_started(server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the Spirale API did not start on {url} (is the port already in use?)")
        time.sleep(0.05)
