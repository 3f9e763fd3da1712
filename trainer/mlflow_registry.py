"""A trained pilot's ONNX file as a version in MLflow's model registry (behavioural cloning and RL;
perception runs register their PyTorch detector in :mod:`trainer.perception.tracking`).

The model is logged with MLflow's ``onnx`` flavour into the active run (artefact ``model``), so the
version's source is the exact file the car runs, loadable by ``mlflow.onnx.load_model`` and
servable by MLflow; the version is tagged with the hub's ``name:version`` where there is one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.perception.tracking import Tracker


def register_onnx(tracker: Tracker, path: Path, name: str, tags: dict[str, str] | None = None) -> str | None:
    """Log ``path`` (an ONNX model) into the active run and register it as a new version of
    ``name``; return the version (None where the store has no registry)."""
    import onnx
    from mlflow.tracking import MlflowClient

    info = tracker.mlflow.onnx.log_model(
        onnx.load(str(path)),
        name="model",
        registered_model_name=name,
        pip_requirements=["onnxruntime"],
        save_as_external_data=False,
    )
    version = getattr(info, "registered_model_version", None)
    if version is None:
        return None
    client = MlflowClient(tracking_uri=tracker.uri, registry_uri=tracker.uri)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, str(version), key, value)
    return str(version)
