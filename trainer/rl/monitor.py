"""Monitoring a training run: what DeepRacer's console shows, per iteration.

An *iteration* is one round of experience collection followed by a policy update. For each,
:class:`IterationStats` holds the mean episode reward, the mean completion (% of a lap), episodes
by status, best and mean lap time. :class:`RunLog` appends them to ``metrics.jsonl`` in the run
directory (so a resumed run continues the same file) and redraws ``reward.png`` and
``completion.png`` (DeepRacer's reward graph and completion graph). :class:`LiveView` is the
terminal's live table.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trainer.rl.env import EPISODE_STATUSES


@dataclass(frozen=True)
class IterationStats:
    iteration: int
    steps: int  # environment steps so far, all workers
    episodes: int  # episodes so far
    elapsed_s: float  # training wall clock so far (resumed runs included)
    episodes_this_iteration: int
    mean_reward: float
    completion_pct: float  # mean progress of this iteration's episodes
    statuses: dict[str, int] = field(default_factory=dict)
    best_lap_time: float | None = None
    mean_lap_time: float | None = None
    steps_per_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def summarise(
    episodes: Iterable[dict[str, Any]],
    *,
    iteration: int,
    steps: int,
    total_episodes: int,
    elapsed_s: float,
    steps_per_s: float,
) -> IterationStats:
    eps = list(episodes)
    laps = [float(e["lap_time"]) for e in eps if e["status"] == "lap_complete" and e.get("lap_time")]
    counts = Counter(e["status"] for e in eps)
    return IterationStats(
        iteration=iteration,
        steps=steps,
        episodes=total_episodes,
        elapsed_s=elapsed_s,
        episodes_this_iteration=len(eps),
        mean_reward=statistics.fmean(e["reward"] for e in eps) if eps else 0.0,
        completion_pct=statistics.fmean(e["progress"] for e in eps) if eps else 0.0,
        statuses={s: counts.get(s, 0) for s in EPISODE_STATUSES},
        best_lap_time=min(laps) if laps else None,
        mean_lap_time=statistics.fmean(laps) if laps else None,
        steps_per_s=steps_per_s,
    )


class RunLog:
    """``metrics.jsonl`` and the two graphs in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "metrics.jsonl"
        self.history: list[IterationStats] = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    self.history.append(IterationStats(**json.loads(line)))

    def add(self, stats: IterationStats) -> None:
        self.history.append(stats)
        with self.path.open("a") as f:
            f.write(stats.to_json() + "\n")

    def plot(self) -> None:
        plot_history(self.history, self.directory)


def plot_history(history: list[IterationStats], directory: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    its = [h.iteration for h in history]
    for name, values, label in (
        ("reward.png", [h.mean_reward for h in history], "average reward per episode"),
        ("completion.png", [h.completion_pct for h in history], "average % track completion"),
    ):
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
        ax.plot(its, values, marker="o", markersize=3, label="training")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        if name == "completion.png":
            ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        fig.tight_layout()
        tmp = directory / f".{name}"
        fig.savefig(tmp, format="png")
        plt.close(fig)
        tmp.replace(directory / name)


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def stats_table(history: list[IterationStats], rows: int = 12) -> Table:
    table = Table(
        "iter",
        "steps",
        "episodes",
        "reward",
        "completion %",
        "laps",
        "off track",
        "crashed",
        "other",
        "best lap s",
        "mean lap s",
        "steps/s",
    )
    for h in history[-rows:]:
        st = h.statuses
        other = sum(v for k, v in st.items() if k not in ("lap_complete", "off_track", "crashed"))
        table.add_row(
            str(h.iteration),
            str(h.steps),
            str(h.episodes),
            f"{h.mean_reward:.1f}",
            f"{h.completion_pct:.1f}",
            str(st.get("lap_complete", 0)),
            str(st.get("off_track", 0)),
            str(st.get("crashed", 0)),
            str(other),
            _fmt(h.best_lap_time),
            _fmt(h.mean_lap_time),
            f"{h.steps_per_s:.0f}",
        )
    return table


class LiveView:
    """A rich live table of the latest iterations under a one-line header (budget, stop reason)."""

    def __init__(self, console: Console, title: str, enabled: bool = True) -> None:
        self.console = console
        self.title = title
        self.enabled = enabled
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.enabled:
            self._live = Live(Text(self.title), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def update(self, history: list[IterationStats], status: str) -> None:
        if self._live is not None:
            self._live.update(Group(Text(f"{self.title} — {status}"), stats_table(history)))
        elif history:
            h = history[-1]
            self.console.print(
                f"iteration {h.iteration}: reward {h.mean_reward:.1f}, completion {h.completion_pct:.1f} %, "
                f"laps {h.statuses.get('lap_complete', 0)}/{h.episodes_this_iteration}, {status}"
            )

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None


ProgressHook = Callable[[IterationStats], None]
