"""Clone and refine: start a model from an existing one's weights (DeepRacer's "clone model").

As DeepRacer, the clone may change the reward function, the action space's speeds and angles and
the hyperparameters, but not what shapes the network: the number of actions, the sensors, the
network preset and the frame stack must match the parent's. :func:`compare_versions` puts the
evaluations of several versions side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from trainer.rl.files import ModelFileError, load_model_dir


def trained_model_path(model_dir: Path) -> Path:
    path = model_dir / "model.zip"
    if not path.is_file():
        raise ModelFileError(f"{path}: no trained model here (train it with `paddock rl train`)")
    return path


def load_parent_weights(model: BaseAlgorithm, parent_dir: Path) -> None:
    """Copy the parent's policy weights into ``model``; a shape mismatch is one clear error."""
    path = trained_model_path(parent_dir)
    parent = load_model_dir(parent_dir)
    try:
        model.set_parameters(str(path), exact_match=True, device="cpu")
    except (RuntimeError, ValueError, KeyError) as exc:
        detail = str(exc).splitlines()[0]
        raise ModelFileError(
            f"{parent_dir / 'model_metadata.json'}: action_space/sensor/neural_network: the clone's "
            f"network does not fit the parent's ({parent.metadata.neural_network}, "
            f"{len(parent.metadata.discrete_actions) or 'continuous'} actions): {detail}"
        ) from None


def compare_versions(evaluations: dict[str, dict[str, Any]], out: Path | None = None) -> list[dict[str, Any]]:
    """Rows of ``{version, trials, completion, mean lap, best lap, off-track, consistency}`` for
    evaluation reports (``evaluation.json``) by version; with ``out``, also ``comparison.png``."""
    rows = []
    for version, report in evaluations.items():
        s = report["summary"]
        rows.append({"version": version} | s)
    if out is not None and rows:
        _plot(rows, out)
    return rows


def _plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["version"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    ax1.bar(names, [r["completion_pct"] for r in rows])
    ax1.set_ylabel("mean completion %")
    ax1.set_ylim(0, 105)
    ax2.bar(names, [r["mean_lap_time_s"] or 0 for r in rows])
    ax2.set_ylabel("mean lap time s (with penalties)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def read_evaluation(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not an evaluation report ({exc})") from None
