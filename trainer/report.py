"""Offline evaluation on the validation split and the plots people look at.

* :func:`offline_metrics` — MAE and R² per output (accuracy for categorical outputs) of the
  decoded actions, exactly as the car would read them.
* :func:`plot_losses` — training and validation loss per epoch (and the learning rate).
* :func:`plot_predictions` — predicted against recorded steering: a scatter and the first frames of
  each validation session over time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trainer.data import FrameTable
from trainer.models import PilotModel, bin_index
from trainer.train import EpochMetrics, predict_table


def offline_metrics(model: PilotModel, table: FrameTable) -> dict[str, float]:
    """Metrics of ``model`` on every frame of ``table`` (no augmentation)."""
    import torch

    pred, true = predict_table(model, table)
    metrics: dict[str, float] = {"frames": float(len(table))}
    if len(table) == 0:
        return metrics
    for i, spec in enumerate(model.output_specs()):
        e = pred[:, i] - true[:, i]
        metrics[f"{spec.name}_mae"] = float(np.mean(np.abs(e)))
        metrics[f"{spec.name}_rmse"] = float(np.sqrt(np.mean(e * e)))
        sst = float(np.sum((true[:, i] - true[:, i].mean()) ** 2))
        if sst > 1e-12:
            metrics[f"{spec.name}_r2"] = 1.0 - float(np.sum(e * e)) / sst
        if spec.kind == "categorical":
            t = torch.from_numpy(true[:, i].astype(np.float32))
            p = torch.from_numpy(pred[:, i].astype(np.float32))
            hits = bin_index(p, spec.bins) == bin_index(t, spec.bins)
            metrics[f"{spec.name}_accuracy"] = float(hits.float().mean())
    return metrics


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(history: list[EpochMetrics], path: str | os.PathLike[str], title: str = "") -> Path:
    plt = _plt()
    epochs = [h.epoch for h in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(epochs, [h.train_loss for h in history], "o-", label="training loss")
    val = [h.val_loss for h in history]
    if any(v is not None for v in val):
        ax.plot(epochs, [np.nan if v is None else v for v in val], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(epochs, [h.lr for h in history], ":", color="grey", label="learning rate")
    lr_ax.set_ylabel("learning rate", color="grey")
    lines = ax.get_legend_handles_labels()
    lr_lines = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right")
    ax.set_title(title or "loss per epoch")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_predictions(
    model: PilotModel, table: FrameTable, path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Predicted vs recorded steering: scatter (left) and the first 300 frames over time (right)."""
    plt = _plt()
    pred, true = predict_table(model, table)
    names = [s.name for s in model.output_specs()]
    col = names.index("steering") if "steering" in names else 0
    p: NDArray[Any] = pred[:, col] if len(pred) else np.zeros(0)
    t: NDArray[Any] = true[:, col] if len(true) else np.zeros(0)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, gridspec_kw={"width_ratios": [1, 1.6]})
    a.scatter(t, p, s=6, alpha=0.4)
    a.plot([-1, 1], [-1, 1], "k--", lw=1)
    a.set_xlim(-1.05, 1.05)
    a.set_ylim(-1.05, 1.05)
    a.set_xlabel(f"recorded {names[col]}")
    a.set_ylabel(f"predicted {names[col]}")
    a.set_aspect("equal")
    a.grid(True, alpha=0.3)
    n = min(300, len(t))
    b.plot(np.arange(n), t[:n], label="recorded", lw=1.5)
    b.plot(np.arange(n), p[:n], label="predicted", lw=1.2)
    b.set_xlabel("frame")
    b.set_ylabel(names[col])
    b.set_ylim(-1.05, 1.05)
    b.grid(True, alpha=0.3)
    b.legend(loc="upper right")
    fig.suptitle(title or f"{model.architecture}: predicted vs recorded {names[col]} ({len(t)} frames)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
