"""Built-in procedural tracks and the one resolver for a track name or file.

The built-ins are generated here (no files shipped): smooth closed centre lines, counter-clockwise
like DeepRacer's tracks, resampled every ~10 cm, with constant width borders. They go through the
same validation as a loaded file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from firmware.sim.track import FloatArray, Track, TrackError, load_track, resample_closed

WAYPOINT_SPACING_M = 0.10


def _catmull_rom_closed(control: list[tuple[float, float]], samples: int = 80) -> FloatArray:
    """A closed centripetal Catmull-Rom curve through ``control`` (no cusps or self-loops)."""
    p = np.asarray(control, dtype=np.float64)
    n = len(p)
    pieces = []
    for i in range(n):
        p0, p1, p2, p3 = p[i - 1], p[i], p[(i + 1) % n], p[(i + 2) % n]
        t0 = 0.0
        t1 = t0 + float(np.linalg.norm(p1 - p0)) ** 0.5
        t2 = t1 + float(np.linalg.norm(p2 - p1)) ** 0.5
        t3 = t2 + float(np.linalg.norm(p3 - p2)) ** 0.5
        t = np.linspace(t1, t2, samples, endpoint=False)[:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        pieces.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.vstack(pieces)


def _smooth_closed(points: FloatArray, sigma_m: float) -> FloatArray:
    """Gaussian smoothing along a closed curve: rounds the tightest bends off the spline."""
    step = 0.02
    dense = resample_closed(points, step)
    half = int(4 * sigma_m / step)
    x = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (x / sigma_m) ** 2)
    kernel /= kernel.sum()
    wrapped = np.vstack([dense[-half:], dense, dense[:half]])
    return np.stack([np.convolve(wrapped[:, i], kernel, mode="valid") for i in range(2)], axis=1)


def _designed(name: str, control: list[tuple[float, float]], width: float) -> Track:
    loop = _smooth_closed(_catmull_rom_closed(control), sigma_m=0.25)
    return Track.from_centerline(
        name, resample_closed(loop, WAYPOINT_SPACING_M), width, source=f"built-in {name}"
    )


def _oval() -> Track:
    """A stadium: two 5 m straights joined by half circles of 1.6 m radius; 0.8 m wide."""
    straight, radius, n = 5.0, 1.6, 2000
    t = np.linspace(0.0, math.pi, n // 2, endpoint=False)
    right = np.stack([straight / 2 + radius * np.sin(t), -radius * np.cos(t)], axis=1)
    left = np.stack([-straight / 2 - radius * np.sin(t), radius * np.cos(t)], axis=1)
    bottom = np.stack(
        [np.linspace(-straight / 2, straight / 2, n // 2, endpoint=False), -radius * np.ones(n // 2)], 1
    )
    top = np.stack(
        [np.linspace(straight / 2, -straight / 2, n // 2, endpoint=False), radius * np.ones(n // 2)], 1
    )
    loop = np.vstack([bottom, right, top, left])
    # Start in the middle of the bottom straight, driving +x (counter-clockwise).
    start = int(np.argmin(np.hypot(loop[:, 0], loop[:, 1] + radius)))
    loop = np.roll(loop, -start, axis=0)
    return Track.from_centerline(
        "oval", resample_closed(loop, WAYPOINT_SPACING_M), 0.8, source="built-in oval"
    )


def _s_curve() -> Track:
    """A flowing 21.5 m loop with a left-right-left S through its middle; 0.9 m wide."""
    control = [
        (0.0, 0.0), (3.0, 0.0), (5.0, 0.2), (6.6, 1.0), (7.2, 2.3), (6.6, 3.4), (5.2, 3.5),
        (4.2, 2.7), (3.0, 2.6), (2.0, 3.5), (0.6, 3.7), (-0.8, 3.0), (-1.3, 1.6), (-0.9, 0.4),
    ]  # fmt: skip
    return _designed("s-curve", control, 0.9)


def _technical() -> Track:
    """A 23 m technical loop: a hairpin hook, a chicane and a long sweeper; 0.75 m wide."""
    control = [
        (0.0, 0.0), (2.5, 0.0), (4.5, 0.0), (6.2, 0.3), (7.0, 1.3), (6.6, 2.4), (5.4, 2.5),
        (4.6, 1.7), (3.6, 1.5), (2.8, 2.1), (2.9, 3.2), (2.4, 4.3), (1.2, 4.5), (0.0, 3.8),
        (-0.9, 2.6), (-1.4, 1.2), (-1.0, 0.2),
    ]  # fmt: skip
    return _designed("technical", control, 0.75)


_BUILTINS: dict[str, Callable[[], Track]] = {
    "oval": _oval,
    "s-curve": _s_curve,
    "technical": _technical,
}


def builtin_track_names() -> list[str]:
    """Names of the built-in procedural tracks."""
    return list(_BUILTINS)


@cache
def builtin_track(name: str) -> Track:
    """A built-in track by name (generated once per process)."""
    try:
        factory = _BUILTINS[name]
    except KeyError:
        raise TrackError(
            f"unknown built-in track {name!r}; built-in tracks: {', '.join(builtin_track_names())}"
        ) from None
    return factory()


def get_track(name_or_path: str | Path | Track) -> Track:
    """Resolve a built-in name (``"oval"``), a ``.npy`` path, or pass a :class:`Track` through.

    A name ending in ``-reversed`` (``"oval-reversed"``) is that track driven the other way.
    """
    if isinstance(name_or_path, Track):
        return name_or_path
    text = str(name_or_path)
    if text in _BUILTINS:
        return builtin_track(text)
    if text.endswith("-reversed") and text.removesuffix("-reversed") in _BUILTINS:
        return builtin_track(text.removesuffix("-reversed")).reversed()
    path = Path(text)
    if path.suffix == ".npy" or path.exists():
        return load_track(path)
    raise TrackError(
        f"{text!r} is neither a built-in track ({', '.join(builtin_track_names())}) nor a track file"
    )
