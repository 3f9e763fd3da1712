"""The demo's report directory: ``report.json``, plots people look at, and a video of one lap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np


def write_report(
    out: Path,
    report: dict[str, Any],
    *,
    track: str,
    traces: dict[str, list[tuple[float, float, float]]],
    frames: list[tuple[np.ndarray, float, float, str]],
    store: Path,
) -> list[Path]:
    """Write everything; return the files written. Plot or video failures do not lose the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json"]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    files.append(_lap_times_png(out / "lap_times.png", report))
    from firmware.sim.media import VideoWriter, plot_track_map
    from firmware.sim.tracks import get_track

    t = get_track(track)
    for car, trace in traces.items():
        if len(trace) > 2:
            arr = np.asarray(trace, dtype=np.float64)
            laps = report["cars"][car]["autopilot_lap_times_s"]
            title = f"{car} on autopilot — laps " + ", ".join(f"{x:.2f} s" for x in laps)
            files.append(plot_track_map(t, out / f"trace_{car}.png", arr[:, :2], arr[:, 2], title=title))
    if frames:
        path = out / "autopilot_lap.mp4"
        with VideoWriter(path, t, fps=15) as video:
            for image, x, y, hud in frames:
                video.add(image, x, y, hud)
        files.append(path)
    # The trainer's own plots of the run that made the model.
    for key, name in (("loss", "training_loss.png"), ("predictions", "predictions.png")):
        src = report["training"]["artifacts"].get(key)
        if src and (store / src).is_file():
            shutil.copyfile(store / src, out / name)
            files.append(out / name)
    return files


def _lap_times_png(path: Path, report: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cars = list(report["cars"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        width = 0.38
        for i, car in enumerate(cars):
            c = report["cars"][car]
            for j, (key, colour, label) in enumerate(
                (
                    ("expert_lap_times_s", "#4a7ab8", "expert"),
                    ("autopilot_lap_times_s", "#e0803a", "autopilot"),
                )
            ):
                times = c[key]
                xs = [i + (j - 0.5) * width] * len(times)
                ax.scatter(xs, times, color=colour, zorder=3, label=label if i == 0 else None)
                if times:
                    ax.bar(
                        i + (j - 0.5) * width, float(np.mean(times)), width * 0.9, color=colour, alpha=0.35
                    )
        race = report.get("race")
        if race:  # the three lap times side by side: the simulated baselines as lines across
            for key, style, label in (
                ("baseline_expert_s", ":", "baseline expert (simulator)"),
                ("optimised_line_s", "--", "optimised line (simulator)"),
            ):
                if race.get(key):
                    ax.axhline(race[key], color="#555555", ls=style, label=f"{label} {race[key]:.2f} s")
        ax.set_xticks(range(len(cars)), cars)
        ax.set_ylabel("lap time (s)")
        ttfl = report.get("time_to_first_autonomous_lap_s")
        teacher = "race-line expert" if race else "expert"
        title = f"lap times: {teacher} (recorded) vs autopilot (trained model)"
        if ttfl:
            title += f"\nfirst autonomous lap {ttfl:.0f} s after the demo started"
        ax.set_title(title)
        ax.legend(loc="lower right")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
