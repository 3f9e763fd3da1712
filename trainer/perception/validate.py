"""The data report of a perception dataset, and the checks it must pass before it is trained on.

The report counts frames per class for each task (and per session), the label balance, blur
outliers (variance of the Laplacian far below the dataset's median), exposure outliers (too dark,
too bright, or mostly clipped), duplicate frames (identical after downscaling), frames without
labels, and lidar ranges (a ``lidar.csv`` row for every frame, every range finite and within the
lidar's limits). :func:`check` turns it into pass / fail with reasons; training refuses a dataset
that fails (:class:`DatasetRefused`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infra.store import NoSuchKey, ObjectStore
from schemas.dataset import session_prefix
from schemas.messages import SessionRef
from trainer.perception import TASKS
from trainer.perception.dataset import PerceptionTable, load_lidar


class DatasetRefused(ValueError):
    """A dataset that failed its checks; ``reasons`` says which and why."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("dataset refused: " + "; ".join(reasons))
        self.reasons = reasons


class Thresholds(BaseModel):
    """Limits of the checks (fractions are of all frames)."""

    model_config = ConfigDict(extra="forbid")

    min_sessions: int = Field(default=3, ge=1, description="train, val and test need one session each")
    min_per_class: int = Field(default=10, ge=0, description="frames of every class of every task")
    max_imbalance: float = Field(default=50.0, gt=1, description="largest / smallest class count")
    blur_ratio: float = Field(default=0.1, gt=0, lt=1, description="sharper than this × median is fine")
    max_blurred: float = Field(default=0.1, ge=0, le=1)
    dark: float = Field(default=25.0, ge=0, le=255, description="mean grey level below this is too dark")
    bright: float = Field(default=230.0, ge=0, le=255)
    max_clipped: float = Field(
        default=0.5, ge=0, le=1, description="a frame with more clipped pixels is badly exposed"
    )
    max_badly_exposed: float = Field(default=0.05, ge=0, le=1)
    max_duplicates: float = Field(default=0.05, ge=0, le=1)
    max_unlabelled: float = Field(default=0.01, ge=0, le=1)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DataReport:
    frames: int
    sessions: int
    per_class: dict[str, dict[str, int]]
    per_session: dict[str, dict[str, Any]]
    blurred: list[dict[str, Any]]
    badly_exposed: list[dict[str, Any]]
    duplicates: int
    unlabelled: int
    skipped: dict[str, int]
    lidar: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def _where(table: PerceptionTable, i: int) -> dict[str, Any]:
    return {"session": table.sessions[i], "seq": int(table.seqs[i])}


def _lidar(store: ObjectStore, table: PerceptionTable) -> dict[str, Any]:
    """Per session: rows, frames, range limits, values out of range or not finite."""
    out: dict[str, Any] = {}
    frames = {n: int(np.sum(np.asarray(table.sessions) == n)) for n in table.session_names()}
    for name in table.session_names():
        car, session = name.split("/", 1)
        prefix = session_prefix(car, session)
        scans = load_lidar(store, SessionRef(car=car, session=session))
        if scans is None:
            out[name] = {"present": False}
            continue
        limits = {"min_range": 0.0, "max_range": float("inf")}
        try:
            limits |= json.loads(store.get(prefix + "scene.json"))["lidar"]
        except (NoSuchKey, KeyError, ValueError):
            pass
        values = scans.ranges.astype(np.float64) if scans.ranges.size else np.zeros((1, 1))
        finite = np.isfinite(values)
        bad = int(
            (~finite).sum()
            + ((values < limits["min_range"] - 1e-6) | (values > limits["max_range"] + 1e-6)).sum()
        )
        out[name] = {
            "present": True,
            "rows": len(scans),
            "frames": frames[name],
            "beams": int(values.shape[1]),
            "min": float(values[finite].min()) if finite.any() else None,
            "max": float(values[finite].max()) if finite.any() else None,
            "mean": float(values[finite].mean()) if finite.any() else None,
            "bad_values": bad,
            "no_return_fraction": float((values >= limits["max_range"] - 1e-6).mean()),
        }
    return out


def data_report(
    store: ObjectStore, table: PerceptionTable, thresholds: Thresholds | None = None
) -> DataReport:
    """Look at every frame of ``table`` (loaded from ``store``) and run the checks."""
    t = thresholds or Thresholds()
    n = len(table)
    per_class = {
        task: {c: int((table.labels[task] == i).sum()) for i, c in enumerate(classes)}
        for task, classes in TASKS.items()
    }
    per_session: dict[str, dict[str, Any]] = {}
    where = np.asarray(table.sessions)
    for name in table.session_names():
        mask = where == name
        per_session[name] = {"frames": int(mask.sum())} | {
            task: {c: int((table.labels[task][mask] == i).sum()) for i, c in enumerate(TASKS[task])}
            for task in TASKS
        }
    sharp, bright, clipped = (
        table.raw_stats.get(k, np.zeros(n)) for k in ("sharpness", "brightness", "clipped")
    )
    median = float(np.median(sharp)) if n else 0.0
    blurred = [
        _where(table, int(i)) | {"sharpness": float(sharp[i])}
        for i in np.flatnonzero(sharp < t.blur_ratio * median)
    ]
    exposure = (bright < t.dark) | (bright > t.bright) | (clipped > t.max_clipped)
    badly = [
        _where(table, int(i)) | {"brightness": float(bright[i]), "clipped": float(clipped[i])}
        for i in np.flatnonzero(exposure)
    ]
    digests = [hashlib.sha1(img.tobytes()).hexdigest() for img in table.images]
    duplicates = n - len(set(digests))
    unlabelled = table.skipped.get("unlabelled", 0) + table.skipped.get("unknown_class", 0)
    report = DataReport(
        frames=n,
        sessions=len(per_session),
        per_class=per_class,
        per_session=per_session,
        blurred=blurred[:200],
        badly_exposed=badly[:200],
        duplicates=duplicates,
        unlabelled=unlabelled,
        skipped=dict(table.skipped),
        lidar=_lidar(store, table),
    )
    report.checks = _checks(report, t, len(blurred), len(badly))
    return report


def _checks(r: DataReport, t: Thresholds, blurred: int, badly: int) -> list[Check]:
    total = max(r.frames + r.unlabelled, 1)
    checks = [
        Check("sessions", r.sessions >= t.min_sessions, f"{r.sessions} sessions (need {t.min_sessions})")
    ]
    for task, counts in r.per_class.items():
        few = [f"{c} {v}" for c, v in counts.items() if v < t.min_per_class]
        checks.append(
            Check(
                f"{task} classes",
                not few,
                f"all classes have {t.min_per_class} frames or more"
                if not few
                else f"too few frames: {', '.join(few)} (need {t.min_per_class})",
            )
        )
        present = [v for v in counts.values() if v > 0]
        ratio = max(present) / min(present) if present else float("inf")
        checks.append(
            Check(
                f"{task} balance",
                ratio <= t.max_imbalance,
                f"largest/smallest class {ratio:.1f} (limit {t.max_imbalance:g})",
            )
        )
    checks.append(
        Check(
            "blur", blurred <= t.max_blurred * total, f"{blurred} blurred frames (limit {t.max_blurred:.0%})"
        )
    )
    checks.append(
        Check(
            "exposure",
            badly <= t.max_badly_exposed * total,
            f"{badly} badly exposed frames (limit {t.max_badly_exposed:.0%})",
        )
    )
    checks.append(
        Check(
            "duplicates",
            r.duplicates <= t.max_duplicates * total,
            f"{r.duplicates} duplicate frames (limit {t.max_duplicates:.0%})",
        )
    )
    checks.append(
        Check(
            "labels",
            r.unlabelled <= t.max_unlabelled * total,
            f"{r.unlabelled} frames without labels (limit {t.max_unlabelled:.0%})",
        )
    )
    lidar_bad = [f"{name}: {why}" for name, v in r.lidar.items() if (why := _lidar_problem(v))]
    checks.append(
        Check("lidar", not lidar_bad, "; ".join(lidar_bad[:5]) or "every frame has a scan within range")
    )
    return checks


def _lidar_problem(v: dict[str, Any]) -> str:
    if not v["present"]:
        return "no lidar.csv"
    if v["rows"] != v["frames"]:
        return f"{v['rows']} rows for {v['frames']} frames"
    return f"{v['bad_values']} ranges out of limits" if v["bad_values"] else ""


def ensure_valid(report: DataReport) -> None:
    """Raise :class:`DatasetRefused` with the reasons if any check failed."""
    if not report.ok:
        raise DatasetRefused(report.reasons)


def write_data_report(report: DataReport, out_dir: Path) -> Path:
    """``data_report.json``, ``data_report.md`` and ``class_balance.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_report.json").write_text(json.dumps(report.to_dict(), indent=1))
    fig, axes = plt.subplots(1, len(report.per_class), figsize=(5 * len(report.per_class), 3.4))
    for ax, (task, counts) in zip(np.atleast_1d(axes), report.per_class.items(), strict=True):
        ax.bar(list(counts), list(counts.values()), color="#4c78a8")
        ax.set_title(f"{task}: frames per class")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(out_dir / "class_balance.png", dpi=100)
    plt.close(fig)
    lines = [
        f"# Data report\n\n{report.frames} frames, {report.sessions} sessions: "
        f"**{'PASS' if report.ok else 'FAIL'}**\n",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {'ok' if c.ok else 'FAIL'} | {c.detail} |" for c in report.checks]
    for task, counts in report.per_class.items():
        lines.append(f"\n**{task}**: " + ", ".join(f"{c} {v}" for c, v in counts.items()))
    lines.append(
        f"\nduplicates {report.duplicates}, blurred {len(report.blurred)}, "
        f"badly exposed {len(report.badly_exposed)}, "
        f"unlabelled {report.unlabelled}\n\n![class balance](class_balance.png)\n"
    )
    path = out_dir / "data_report.md"
    path.write_text("\n".join(lines))
    return path
