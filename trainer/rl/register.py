"""Registering a trained DeepRacer model with the hub, as any model: the ONNX file, its card (with the
action space) and its lineage, whose ``parent`` is the model it was cloned from.

After registering, the model directory holds ``registered.json`` (``name``, ``version``), so a model
cloned from it later names it as its parent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.model_card import ModelCard
from trainer.hub_client import HubClient, Lineage
from trainer.rl.export import CARD_FILE, ONNX_FILE, export
from trainer.rl.files import REGISTERED_FILE, parent_ref


def register(
    model_dir: Path,
    hub: str,
    token: str | None,
    name: str,
    version: str | None,
    *,
    job: str | None = None,
    metrics: dict[str, float] | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """Export if needed, then ``POST /models``; returns the hub's entry."""
    if not (model_dir / ONNX_FILE).exists() or not (model_dir / CARD_FILE).exists():
        export(model_dir)
    card = ModelCard.model_validate_json((model_dir / CARD_FILE).read_text())
    summary = _read(model_dir / "training.json")
    parent = parent or _parent_of(summary)
    lineage = Lineage(
        run=model_dir.name, job=job, parent=parent, metrics=metrics or {}, training={"kind": "rl"} | summary
    )
    evaluations = sorted(model_dir.glob("evaluation-*/evaluation.json"))
    report = evaluations[-1].read_bytes() if evaluations else None
    with HubClient(hub, token) as client:
        entry = client.register_model(
            name=name,
            version=version,
            artifact=model_dir / ONNX_FILE,
            card=card,
            lineage=lineage,
            report=report,
            description=f"DeepRacer-style RL policy ({card.architecture})",
        )
    registered = {"name": entry.get("name", name), "version": entry.get("version", version)}
    (model_dir / REGISTERED_FILE).write_text(json.dumps(registered))
    return entry


def _parent_of(summary: dict[str, Any]) -> str | None:
    """The registered ref of the directory this model was cloned from, if it was registered."""
    parent = summary.get("parent")
    return parent_ref(Path(parent)) if parent else None


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}
