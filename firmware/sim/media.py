"""Things people look at: run videos and track maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from firmware.sim.track import Track

VIDEO_SUFFIXES = (".mp4", ".gif")


class VideoWriter:
    """Writes a run as ``.mp4`` (H.264 via imageio-ffmpeg) or ``.gif``: the camera view scaled up
    (4× for mp4, 2× for the much larger gif by default) with a heads-up line (lap, lap time, speed,
    steering) and a small map of the track."""

    def __init__(self, path: str | Path, track: Track, fps: float, scale: int | None = None) -> None:
        import imageio.v2 as imageio

        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"{self.path}: video must end in {' or '.join(VIDEO_SUFFIXES)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        gif = self.path.suffix.lower() == ".gif"
        self.scale = scale or (2 if gif else 4)
        self.track = track
        self.frames = 0
        kwargs: dict[str, Any] = (
            {"duration": 1000 / fps, "loop": 0}
            if gif
            else {
                "fps": fps,
                "codec": "libx264",
                "quality": 7,
                "macro_block_size": 16,
                "ffmpeg_log_level": "error",
            }
        )
        self._writer = imageio.get_writer(self.path, mode="I", **kwargs)
        self._map, self._map_fn = _minimap(track, 150 * self.scale // 4)

    def add(self, image: NDArray[np.uint8], x: float, y: float, hud: str) -> None:
        """One frame: the camera ``image`` (H×W×3 or ×1), the car at ``(x, y)``, a text line."""
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        h, w = image.shape[:2]
        big = cv2.resize(image, (w * self.scale, h * self.scale), interpolation=cv2.INTER_LINEAR)
        inset = self._map.copy()
        u, v = self._map_fn(x, y)
        cv2.circle(inset, (u, v), 4, (230, 30, 30), -1, cv2.LINE_AA)
        ih, iw = inset.shape[:2]
        big[6 : 6 + ih, -iw - 6 : -6] = inset
        font = 0.55 * self.scale / 4
        bar = round(26 * self.scale / 4)
        cv2.rectangle(big, (0, big.shape[0] - bar), (big.shape[1], big.shape[0]), (0, 0, 0), -1)
        cv2.putText(
            big,
            hud,
            (6, big.shape[0] - bar // 3),
            cv2.FONT_HERSHEY_SIMPLEX,
            font,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        self._writer.append_data(big)
        self.frames += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _minimap(track: Track, size: int) -> tuple[NDArray[np.uint8], Any]:
    xmin, ymin, xmax, ymax = track.bounds(margin=0.3)
    scale = (size - 8) / max(xmax - xmin, ymax - ymin)
    w = int((xmax - xmin) * scale) + 8
    h = int((ymax - ymin) * scale) + 8

    def to_px(x: float, y: float) -> tuple[int, int]:
        return round(4 + (x - xmin) * scale), round(4 + (ymax - y) * scale)

    img = np.full((h, w, 3), 30, np.uint8)
    for ring in (track.inner, track.outer):
        pts = np.array([to_px(px, py) for px, py in ring], np.int32)
        cv2.polylines(img, [pts], True, (230, 230, 230), 1, cv2.LINE_AA)
    return img, to_px


def plot_track_map(
    track: Track,
    path: str | Path,
    trace: Sequence[tuple[float, float]] | NDArray[np.floating] | None = None,
    speeds: Sequence[float] | NDArray[np.floating] | None = None,
    title: str | None = None,
    obstacles: Sequence[Any] = (),
) -> Path:
    """A PNG of the track (borders, dashed centre line, start line, waypoint numbers every 10) with
    an optional driven ``trace`` of ``(x, y)`` coloured by ``speeds`` (m/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    xmin, ymin, xmax, ymax = track.bounds(margin=0.4)
    aspect = (ymax - ymin) / (xmax - xmin)
    fig, ax = plt.subplots(figsize=(10, max(4.0, 10 * aspect) + 0.6))
    try:
        road = np.vstack([track.outer, track.inner[::-1]])
        ax.fill(road[:, 0], road[:, 1], color="#3a3a3e", zorder=0)
        ax.fill(track.inner[:, 0], track.inner[:, 1], color="#dfe8d8", zorder=0)
        for ring in (track.inner, track.outer):
            ax.plot(ring[:, 0], ring[:, 1], color="white", lw=1.5, zorder=1)
        ax.plot(track.center[:, 0], track.center[:, 1], color="#f0c020", lw=0.8, ls=(0, (4, 4)), zorder=1)
        ax.plot(
            [track.inner[0, 0], track.outer[0, 0]],
            [track.inner[0, 1], track.outer[0, 1]],
            color="#e03030", lw=3, zorder=3, label="start / finish",
        )  # fmt: skip
        for i in range(0, len(track.center) - 1, 10):
            ax.annotate(str(i), track.center[i], fontsize=6, color="#9a9a9a", zorder=2)
        heading = track.heading_at(0.0)
        x0, y0 = track.point_at(0.0)
        ax.annotate(
            "", xy=(x0 + 0.6 * np.cos(heading), y0 + 0.6 * np.sin(heading)), xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "#e03030", "lw": 2}, zorder=3,
        )  # fmt: skip
        for ob in obstacles:
            corners = np.array(ob.corners() + ob.corners()[:1])
            ax.fill(corners[:, 0], corners[:, 1], color="#e08c28", zorder=4)
        if trace is not None and len(trace) > 1:
            pts = np.asarray(trace, dtype=np.float64)
            if speeds is not None and len(speeds) == len(pts):
                segs = np.stack([pts[:-1], pts[1:]], axis=1)
                lc = LineCollection(list(segs), cmap="plasma", linewidths=2, zorder=5)
                lc.set_array(np.asarray(speeds, dtype=np.float64)[1:])
                ax.add_collection(lc)
                fig.colorbar(lc, ax=ax, label="speed (m/s)", shrink=0.7)
            else:
                ax.plot(pts[:, 0], pts[:, 1], color="#2080ff", lw=1.5, zorder=5, label="driven")
        ax.set_xlim(xmin, xmax)
        ax.set_ylim(ymin, ymax)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.set_title(title or f"{track.name} — {track.length:.1f} m, {track.width:.2f} m wide")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
