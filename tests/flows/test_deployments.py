"""``prefect.yaml`` loads as ``prefect deploy`` reads it, every entrypoint loads its flow (here and in
a fresh interpreter in the project directory, as a process worker's flow run does), every parameter
set validates against its flow, and ``spirale serve`` serves the same deployments."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
from prefect.cli.deploy._triggers import _initialize_deployment_triggers
from prefect.events import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint

from flows.params import IntakeParams
from flows.serve import FORM_SUBMITTED, deployments, form_trigger
from spirale.settings import PROJECT_ROOT

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
# What a process worker's flow run does with the deployment's entrypoint, in a new interpreter.
LOAD_FLOW = """
import sys
from prefect.flows import load_flow_from_entrypoint
flow = load_flow_from_entrypoint(sys.argv[1], use_placeholder_flow=False)
print("flow:", flow.name)
"""


def prefect_yaml() -> dict[str, Any]:
    data = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def yaml_deployments() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in prefect_yaml()["deployments"]}


def test_prefect_yaml_is_a_valid_project_file() -> None:
    model = PrefectYamlModel.model_validate(prefect_yaml())
    assert len(model.deployments) == 8
    assert {d.work_pool.name for d in model.deployments if d.work_pool} == {"spirale"}


def served_flow_names() -> dict[str, str]:
    """The flow of each deployment, by deployment name, as ``spirale serve`` defines them."""
    names: dict[str, str] = {}
    for deployment in deployments():
        assert deployment.flow_name, deployment.name
        names[deployment.name] = deployment.flow_name
    return names


def load_in_a_fresh_process(entrypoint: str) -> str:
    """The name of the flow at ``entrypoint``, loaded by a new interpreter in the project directory
    (nothing imported beforehand, as in a worker's flow run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_FLOW, entrypoint],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{entrypoint} does not load in a fresh process:\n{result.stderr[-3000:]}"
    [line] = [line for line in result.stdout.splitlines() if line.startswith("flow: ")]
    return line.removeprefix("flow: ")


@pytest.mark.parametrize("name", sorted(yaml_deployments()))
def test_each_entrypoint_imports_and_its_parameters_validate(name: str) -> None:
    spec = yaml_deployments()[name]
    flow: Flow[..., Any] = load_flow_from_entrypoint(spec["entrypoint"], use_placeholder_flow=False)
    assert flow.name == served_flow_names()[name]
    validated = flow.validate_parameters(spec.get("parameters", {}))
    assert set(validated) <= {"params"}
    for raw in spec["schedules"]:
        RawScheduleConfig.model_validate(raw)


@pytest.mark.parametrize("name", sorted(yaml_deployments()))
def test_each_entrypoint_loads_in_a_fresh_process_as_a_worker_loads_it(name: str) -> None:
    # In this process the scoring package is already imported, which hides an entrypoint whose
    # loading shadows it (a file path puts flows/ first on sys.path, before the scoring package).
    assert load_in_a_fresh_process(yaml_deployments()[name]["entrypoint"]) == served_flow_names()[name]


def test_the_form_trigger_starts_intake_with_templated_parameters() -> None:
    [trigger] = _initialize_deployment_triggers("intake/forms", yaml_deployments()["forms"]["triggers"])
    assert isinstance(trigger, DeploymentEventTrigger)
    assert trigger.expect == {FORM_SUBMITTED}
    assert trigger.parameters == form_trigger().parameters
    # Once the server renders the templates, the parameters are a valid IntakeParams.
    params = dict(trigger.parameters or {})["params"]
    rendered = {k: v.replace("{{ event.payload.", "").replace(" }}", "") for k, v in params.items()}
    assert IntakeParams.model_validate(rendered).form_id == "form_id"


Timing = tuple[timedelta | str | None, str | None]


def _yaml_schedules(spec: dict[str, Any]) -> list[Timing]:
    """(interval, None) or (cron, time zone) of each schedule."""
    out: list[Timing] = []
    for raw in spec["schedules"]:
        schedule = RawScheduleConfig.model_validate(raw)
        out.append((schedule.interval, None) if schedule.interval else (schedule.cron, schedule.timezone))
    return out


def _served_schedules(deployment: Any) -> list[Timing]:
    out: list[Timing] = []
    for item in deployment.schedules or []:
        schedule = item.schedule
        interval = getattr(schedule, "interval", None)
        out.append((interval, None) if interval else (schedule.cron, schedule.timezone))
    return out


def test_spirale_serve_serves_what_prefect_yaml_deploys() -> None:
    served = {d.name: d for d in deployments()}
    declared = yaml_deployments()
    assert set(served) == set(declared)
    for name, spec in declared.items():
        deployment = served[name]
        assert spec["entrypoint"] == deployment.entrypoint, name
        assert _served_schedules(deployment) == _yaml_schedules(spec), name
        limit = spec.get("concurrency_limit")
        if limit is None:
            assert deployment.concurrency_limit is None, name
        else:
            assert deployment.concurrency_limit == limit["limit"], name
            options = deployment.concurrency_options
            assert options is not None and options.collision_strategy.value == limit["collision_strategy"]
        assert len(deployment.triggers) == len(spec.get("triggers", [])), name
