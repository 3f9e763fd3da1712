"""The Airflow DAG (deploy/airflow/) loads in Airflow itself with no import error and has the
pipeline's steps as tasks, in order; a task's body runs the step with paddock's command line.
Airflow lives in its own environment (script/airflow-env), so the checks run there, in one
subprocess (importing Airflow is most of the time)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from deploy.pipeline import STEPS
from tests.missing import venv_python

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "deploy" / "airflow"
AIRFLOW_VENV = Path(os.environ.get("PADDOCK_AIRFLOW_VENV", Path.home() / ".cache/paddock/airflow-venv"))

LOAD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "order": [t.task_id for t in dag.topological_sort()],
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "params": sorted(dag.params.keys()),
        "retries": sorted({t.retries for t in dag.tasks}),
    }
# A task's body as Airflow runs it, without a scheduler: one step, in paddock's environment.
sys.path.insert(0, sys.argv[1])
import paddock_mlops

try:
    ran = paddock_mlops.run_step("validate", "manual__x", {"track": "oval"})
except RuntimeError as exc:
    ran = {"error": str(exc)}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags, "step": ran}))
"""


def airflow_python() -> Path:
    return venv_python(AIRFLOW_VENV, "Apache Airflow", "script/airflow-env")


def test_the_dag_loads_in_airflow_and_its_tasks_run_paddocks_steps(tmp_path: Path) -> None:
    """Loaded by Airflow's DagBag: no import error, the steps in order. A task's body runs the step
    with paddock's command line; with no hub listening it fails with the step's one-line error."""
    env = os.environ | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),  # no database is needed to load a DAG
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": "",  # Airflow's environment needs none of paddock's code...
        # ...its tasks start paddock from paddock's environment (here: this one, this checkout).
        "PADDOCK_PIPELINE_COMMAND": f"env PYTHONPATH={ROOT} {sys.executable} -m deploy.cli",
        "PADDOCK_HUB": "http://127.0.0.1:9",
        "PADDOCK_TOKEN": "t",
    }
    proc = subprocess.run(
        [str(airflow_python()), "-c", LOAD, str(DAGS)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert list(found["dags"]) == ["paddock_mlops"]
    dag = found["dags"]["paddock_mlops"]
    assert dag["order"] == list(STEPS)
    assert dag["upstream"] == {step: ([STEPS[i - 1]] if i else []) for i, step in enumerate(STEPS)}
    assert {"car", "group", "canary", "track", "set"} <= set(dag["params"])
    assert dag["retries"] == [1]
    assert found["step"]["error"].startswith(
        "step validate failed: error: cannot reach the hub at http://127.0.0.1:9"
    ), found["step"]
