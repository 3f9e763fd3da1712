"""MLflow tracking for perception runs (and the pilots' runs: behavioural cloning, RL): parameters,
per-epoch metrics, artefacts, the model (PyTorch, or the pilot's ONNX file) and its version in
MLflow's model registry.

The store is a URL: ``sqlite:///path/mlflow.db`` (the default: ``mlflow.db`` in the current
directory, artefacts beside it in ``mlartifacts/``), a ``file:`` folder, or a tracking server's
``http://host:5000``. Training never fails because tracking does: an unreachable server is one
warning, and the run goes on untracked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "perception"
REGISTERED_MODEL = "perception-detector"


def default_tracking_uri() -> str:
    """``PADDOCK_MLFLOW`` if set, else an SQLite store in the current directory."""
    return os.environ.get("PADDOCK_MLFLOW") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flat(value, f"{name}.")
        else:
            out[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


class Tracker:
    """One MLflow experiment at one tracking URI; :meth:`run` opens a (possibly nested) run."""

    def __init__(self, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> None:
        import mlflow

        self.uri = uri or default_tracking_uri()
        self.mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        existing = mlflow.get_experiment_by_name(experiment)
        if existing is None:
            location = None
            if self.uri.startswith("sqlite:///"):  # keep a local store's artefacts beside it
                location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
            self.experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = existing.experiment_id
        self.experiment = experiment

    @contextmanager
    def run(self, name: str, params: dict[str, Any] | None = None, nested: bool = False) -> Iterator[str]:
        """Open a run (nested under the active one if ``nested``); yields its id."""
        with self.mlflow.start_run(experiment_id=self.experiment_id, run_name=name, nested=nested) as run:
            if params:
                self.mlflow.log_params(_flat(params))
            yield run.info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and v == v}
        self.mlflow.log_metrics(clean, step=step)

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        self.mlflow.log_artifacts(str(folder), artifact_path=path)

    def log_artifact(self, file: Path, path: str | None = None) -> None:
        self.mlflow.log_artifact(str(file), artifact_path=path)

    def log_model(self, model: Any, example: Any, register: str | None = REGISTERED_MODEL) -> str | None:
        """Log the PyTorch model (and register a new version of ``register``); return the version."""
        info = self.mlflow.pytorch.log_model(
            model,
            name="model",
            signature=_signature(model, example),
            pip_requirements=["torch"],
            registered_model_name=register,
            serialization_format="pickle",
        )
        return _version(info)

    def log_onnx(self, path: Path, register: str, tags: dict[str, str] | None = None) -> str | None:
        """Log ``path`` (an ONNX model: the exact file the car runs, loadable by
        ``mlflow.onnx.load_model``) with MLflow's ``onnx`` flavour into the active run (artefact
        ``model``) and register it as a new version of ``register``, tagged with ``tags`` (the hub's
        ``name:version``); return the version (None where the store has no registry)."""
        import onnx

        info = self.mlflow.onnx.log_model(
            onnx.load(str(path)),
            name="model",
            registered_model_name=register,
            pip_requirements=["onnxruntime"],
            save_as_external_data=False,
        )
        version = _version(info)
        if version is not None and tags:
            client = self.mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            for key, value in tags.items():
                client.set_model_version_tag(register, version, key, value)
        return version

    def set_tags(self, tags: dict[str, str]) -> None:
        self.mlflow.set_tags(tags)


def record_quietly(uri: str | None, experiment: str, record: Callable[[Tracker], str]) -> str | None:
    """Where a store is configured (``uri``, else ``PADDOCK_MLFLOW``), log a finished run of
    ``experiment`` with ``record``, which returns the run's id. Tracking is a record of the work,
    never a reason to lose it: a store that cannot be reached, or any failure while logging, is one
    warning and ``None``."""
    uri = uri or os.environ.get("PADDOCK_MLFLOW")
    if not uri:
        return None
    try:
        return record(Tracker(uri, experiment))
    except Exception as exc:
        log.warning("MLflow tracking at %s failed: %s", uri, exc)
        return None


def _version(info: Any) -> str | None:
    """The registered version of a logged model, None where the store has no registry."""
    version = getattr(info, "registered_model_version", None)
    return str(version) if version is not None else None


def _signature(model: Any, example: Any) -> Any:
    """Input and output tensor specs from one example batch (MLflow's own inference feeds float64)."""
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        model.eval()
        outputs = {task: logits.numpy() for task, logits in model(torch.from_numpy(example)).items()}
    return infer_signature(example, outputs)


def list_runs(
    uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest runs of ``experiment``: id, name, status, start time and their final metrics."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri or default_tracking_uri())
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit)
    del mlflow
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "parent": r.data.tags.get("mlflow.parentRunId"),
            "metrics": dict(r.data.metrics),
        }
        for r in runs
    ]


def model_versions(uri: str | None = None, name: str = REGISTERED_MODEL) -> list[dict[str, Any]]:
    """The registry's versions of ``name``, newest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(
        tracking_uri=uri or default_tracking_uri(), registry_uri=uri or default_tracking_uri()
    )
    versions = client.search_model_versions(f"name='{name}'")
    return sorted(
        (
            {"version": v.version, "run_id": v.run_id, "status": v.status, "source": v.source}
            for v in versions
        ),
        key=lambda v: -int(v["version"]),
    )
