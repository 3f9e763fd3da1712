"""Test-set metrics and pictures for the perception classifiers, written into a report directory.

For each task: accuracy, macro F1, per-class precision / recall / F1 / support, the confusion
matrix (``{task}_confusion.png``), one-vs-rest ROC curves with their AUC (``{task}_roc.png``),
precision-recall curves with average precision (``{task}_pr.png``) and the worst mistakes — the
wrong predictions made with the most confidence — as an image grid (``{task}_mistakes.png``).
Everything also goes into ``metrics.json`` and a readable ``report.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from trainer.perception import TASKS
from trainer.perception.dataset import PerceptionTable


def task_metrics(
    y: NDArray[np.int64], probs: NDArray[np.float32], classes: tuple[str, ...]
) -> dict[str, Any]:
    """Accuracy, macro F1 (over the classes present in ``y`` or predicted), per-class figures,
    the confusion matrix (rows: true, columns: predicted) and one-vs-rest ROC AUC and AP."""
    keep = y >= 0
    y, probs = y[keep], probs[keep]
    pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    present = sorted(set(y.tolist()) | set(pred.tolist()))
    p, r, f, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = {
        classes[i]: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(support[i]),
        }
        for i in labels
    }
    aucs, aps = {}, {}
    for i in labels:
        positive = y == i
        if positive.any() and (~positive).any():
            aucs[classes[i]] = float(roc_auc_score(positive, probs[:, i]))
            aps[classes[i]] = float(average_precision_score(positive, probs[:, i]))
    return {
        "frames": len(y),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0))
        if len(y)
        else 0.0,
        "per_class": per_class,
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
        "roc_auc": aucs,
        "average_precision": aps,
    }


def _confusion_png(path: Path, matrix: list[list[int]], classes: tuple[str, ...], title: str) -> None:
    m = np.asarray(matrix, dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves_png(
    path: Path, y: NDArray[np.int64], probs: NDArray[np.float32], classes: tuple[str, ...], kind: str
) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for i, name in enumerate(classes):
        positive = y == i
        if not positive.any() or positive.all():
            continue
        if kind == "roc":
            fpr, tpr, _ = roc_curve(positive, probs[:, i])
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(positive, probs[:, i]):.3f})")
        else:
            prec, rec, _ = precision_recall_curve(positive, probs[:, i])
            ax.plot(rec, prec, label=f"{name} (AP {average_precision_score(positive, probs[:, i]):.3f})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
    ax.set_title(f"{path.stem.split('_')[0]}: {'ROC' if kind == 'roc' else 'precision-recall'} (one vs rest)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def worst_mistakes(y: NDArray[np.int64], probs: NDArray[np.float32], count: int = 16) -> list[int]:
    """Indices of the wrong predictions made with the most confidence, worst first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero((pred != y) & (y >= 0))
    return [int(i) for i in wrong[np.argsort(-probs[wrong, pred[wrong]])][:count]]


def _mistakes_png(
    path: Path,
    table: PerceptionTable,
    y: NDArray[np.int64],
    probs: NDArray[np.float32],
    classes: tuple[str, ...],
    count: int = 16,
) -> list[dict[str, Any]]:
    picks = worst_mistakes(y, probs, count)
    cols = 4
    rows = max(1, -(-len(picks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.1), squeeze=False)
    listed = []
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), picks, strict=False):
        pred = int(probs[i].argmax())
        ax.imshow(cv2.resize(table.images[i], None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
        ax.set_title(f"{classes[int(y[i])]} → {classes[pred]} ({probs[i, pred]:.2f})", fontsize=8)
        listed.append(
            {
                "session": table.sessions[i],
                "seq": int(table.seqs[i]),
                "true": classes[int(y[i])],
                "predicted": classes[pred],
                "confidence": float(probs[i, pred]),
            }
        )
    if not picks:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{path.stem.split('_')[0]}: worst mistakes (true → predicted, confidence)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return listed


def write_report(
    table: PerceptionTable,
    probs: dict[str, NDArray[np.float32]],
    out_dir: Path,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics and pictures of ``probs`` (per task) on ``table`` into ``out_dir``; returns the metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"frames": len(table), "sessions": table.session_names(), "tasks": {}}
    for task, p in probs.items():
        classes = TASKS[task]
        y = table.labels[task]
        m = task_metrics(y, p, classes)
        keep = y >= 0
        _confusion_png(
            out_dir / f"{task}_confusion.png", m["confusion"], classes, f"{task}: confusion (test)"
        )
        _curves_png(out_dir / f"{task}_roc.png", y[keep], p[keep], classes, "roc")
        _curves_png(out_dir / f"{task}_pr.png", y[keep], p[keep], classes, "pr")
        m["worst_mistakes"] = _mistakes_png(out_dir / f"{task}_mistakes.png", table, y, p, classes)
        report["tasks"][task] = m
    report |= extra or {}
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(_markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Perception test report\n\n{report['frames']} frames from "
        f"{len(report['sessions'])} held-out sessions.\n"
    ]
    for task, m in report["tasks"].items():
        lines.append(f"## {task}\n\naccuracy **{m['accuracy']:.4f}**, macro F1 **{m['macro_f1']:.4f}**\n")
        lines.append(
            "| class | precision | recall | F1 | support | ROC AUC | AP |\n|---|---|---|---|---|---|---|"
        )
        for name, c in m["per_class"].items():
            auc = m["roc_auc"].get(name)
            ap = m["average_precision"].get(name)
            lines.append(
                f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} | "
                f"{'-' if auc is None else f'{auc:.3f}'} | {'-' if ap is None else f'{ap:.3f}'} |"
            )
        lines.append(
            f"\n![confusion]({task}_confusion.png) ![ROC]({task}_roc.png) ![PR]({task}_pr.png)\n\n"
            f"![worst mistakes]({task}_mistakes.png)\n"
        )
    return "\n".join(lines) + "\n"
