"""paddock's MLOps pipeline as an Apache Airflow DAG: collect → validate → train → evaluate → gate →
deploy, one task per step, each run through the hub's REST API.

Each task runs one step of ``paddock hub pipeline`` (the steps live in paddock's ``deploy.pipeline``,
with no Airflow in them), in paddock's own environment: Airflow's environment needs no paddock
package, and paddock's needs no Airflow. The Airflow run id is the pipeline's run id, so a retried
task finds the dataset and jobs its earlier try started on the hub instead of starting them again.

On the Airflow workers:

* ``PADDOCK_PIPELINE_COMMAND``: how to start paddock's command line (default ``paddock``; e.g.
  ``/opt/paddock/.venv/bin/paddock``).
* ``PADDOCK_HUB``, and ``PADDOCK_TOKEN`` or ``PADDOCK_TOKEN_FILE``: the hub and its API token (an
  admin token: the steps register datasets, queue jobs and deploy). The token is never a DAG param,
  so it never shows in Airflow's UI or its database.

The DAG's params (set when triggering it) choose the target and the run; ``set`` takes the
pipeline's other settings as ``key=value`` lines (docs/pipeline.md lists them).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

STEPS = ("collect", "validate", "train", "evaluate", "gate", "deploy")
"""The same steps, in the same order, as ``deploy.pipeline.STEPS`` (a test compares them)."""

PARAMS = {
    "car": Param(None, type=["null", "string"], description="deploy to this car"),
    "group": Param(None, type=["null", "string"], description="... or to this group"),
    "canary": Param(False, type="boolean", description="to the group through a canary"),
    "force": Param(False, type="boolean", description="deploy even if the gate refuses (recorded)"),
    "from_cars": Param([], type="array", description="collect only these cars' sessions"),
    "dataset": Param(None, type=["null", "string"], description="train on this dataset; collect nothing"),
    "track": Param("oval", type="string", description="the closed-loop evaluation's track"),
    "laps": Param(2, type="integer", minimum=1),
    "epochs": Param(10, type="integer", minimum=1),
    "set": Param([], type="array", description="more settings, key=value (docs/pipeline.md)"),
}


def command_line(step: str, run_id: str, params: dict[str, Any]) -> list[str]:
    """The ``paddock hub pipeline`` call that runs ``step`` of run ``run_id`` with ``params``."""
    args = [*shlex.split(os.environ.get("PADDOCK_PIPELINE_COMMAND", "paddock"))]
    args += ["hub", "pipeline", "--step", step, "--run", run_id, "--json"]
    for flag in ("car", "group", "dataset", "track", "laps", "epochs"):
        if params.get(flag) is not None:
            args += [f"--{flag}", str(params[flag])]
    args += ["--canary"] if params.get("canary") else []
    args += ["--force"] if params.get("force") else []
    for car in params.get("from_cars") or []:
        args += ["--from-car", str(car)]
    for setting in params.get("set") or []:
        args += ["--set", str(setting)]
    return args


def run_step(step: str, run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one step in paddock's environment; its summary becomes the task's XCom."""
    proc = subprocess.run(command_line(step, run_id, params), capture_output=True, text=True, check=False)
    for line in proc.stderr.splitlines():
        print(line)  # the step's progress, into the task's log
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise RuntimeError(f"step {step} failed: {last[0]}")
    summary: dict[str, Any] = json.loads(proc.stdout)["steps"][step]
    return summary


@task  # type: ignore[untyped-decorator]  # Airflow is not in paddock's environment
def pipeline_step(step: str) -> dict[str, Any]:
    context = get_current_context()
    return run_step(step, str(context["run_id"]), dict(context["params"]))


@dag(  # type: ignore[untyped-decorator]
    dag_id="paddock_mlops",
    description="paddock: collect → validate → train → evaluate → gate → deploy, through the hub",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    tags=["paddock", "mlops"],
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=1)},
)
def paddock_mlops() -> None:
    previous = None
    for step in STEPS:
        current = pipeline_step.override(task_id=step)(step)
        if previous is not None:
            previous >> current
        previous = current


paddock_mlops()
