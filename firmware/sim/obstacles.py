"""Static obstacles on and beside the track, placed like DeepRacer's object-avoidance races.

Four kinds, each a box-shaped footprint for collisions and lidar and its own look on camera:
``box`` (a 25 cm carton), ``cone`` (a traffic cone: a tapered box), ``wall`` (a long low wall
segment) and ``car`` (a parked DeepRacer-sized car). :func:`random_obstacles` draws a scene per
session: kinds, places along the track, on the road (in a lane) or beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from firmware.sim.track import Track

Lane = Literal["inner", "outer", "center"]
ObstacleKind = Literal["box", "cone", "wall", "car"]
OBSTACLE_KINDS: tuple[ObstacleKind, ...] = ("box", "cone", "wall", "car")

# length (along yaw), width, height in metres, for each kind
KIND_SIZES: dict[str, tuple[float, float, float]] = {
    "box": (0.25, 0.25, 0.25),
    "cone": (0.18, 0.18, 0.30),
    "wall": (0.70, 0.08, 0.22),
    "car": (0.40, 0.20, 0.16),
}


@dataclass(frozen=True, slots=True)
class Obstacle:
    """A box standing on the ground: centre ``(x, y)`` in metres, ``yaw`` in radians."""

    x: float
    y: float
    yaw: float = 0.0
    length: float = 0.25  # along yaw
    width: float = 0.25
    height: float = 0.25
    kind: ObstacleKind = "box"

    def __post_init__(self) -> None:
        if self.kind not in OBSTACLE_KINDS:
            raise ValueError(f"Obstacle.kind must be one of {', '.join(OBSTACLE_KINDS)}, got {self.kind!r}")
        for name in ("x", "y", "yaw"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Obstacle.{name} must be finite")
        for name in ("length", "width", "height"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Obstacle.{name} must be positive, got {value}")

    @classmethod
    def of_kind(cls, kind: ObstacleKind, x: float, y: float, yaw: float = 0.0) -> Obstacle:
        """An obstacle of ``kind`` with that kind's size."""
        if kind not in KIND_SIZES:
            raise ValueError(f"unknown obstacle kind {kind!r}; kinds: {', '.join(OBSTACLE_KINDS)}")
        length, width, height = KIND_SIZES[kind]
        return cls(x, y, yaw, length, width, height, kind)

    @property
    def radius(self) -> float:
        """Half the footprint's diagonal: no point of the obstacle is farther from its centre."""
        return math.hypot(self.length, self.width) / 2

    def corners(self) -> list[tuple[float, float]]:
        """Ground corners, counter-clockwise."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        hl, hw = self.length / 2, self.width / 2
        return [
            (self.x + dx * c - dy * s, self.y + dx * s + dy * c)
            for dx, dy in ((-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw))
        ]


def place_obstacles(
    track: Track,
    progress: Sequence[float],
    lanes: Sequence[Lane] | None = None,
    *,
    size: float = 0.25,
    kinds: Sequence[ObstacleKind] | None = None,
) -> tuple[Obstacle, ...]:
    """Boxes at the given progress percentages (0–100 along the centre line), each in a lane:
    ``"inner"``/``"outer"`` put it halfway between the centre line and that border (DeepRacer's
    lane placement), ``"center"`` on the centre line. Lanes alternate inner/outer by default.
    Without ``kinds`` every obstacle is a box of ``size``; with them, obstacle ``i`` is of kind
    ``kinds[i % len(kinds)]`` at that kind's size."""
    out = []
    for i, pct in enumerate(progress):
        if not 0 <= pct <= 100:
            raise ValueError(f"obstacle progress must be in [0, 100], got {pct}")
        lane: Lane = lanes[i] if lanes is not None else ("inner" if i % 2 == 0 else "outer")
        s = pct / 100 * track.length
        x, y = track.point_at(s)
        yaw = track.heading_at(s)
        if lane != "center":
            (ix, iy), (ox, oy) = track.border_points(x, y)
            bx, by = (ix, iy) if lane == "inner" else (ox, oy)
            x, y = (x + bx) / 2, (y + by) / 2
        if kinds:
            out.append(Obstacle.of_kind(kinds[i % len(kinds)], x, y, yaw))
        else:
            out.append(Obstacle(x, y, yaw, size, size, size))
    return tuple(out)


def random_obstacles(
    track: Track,
    rng: np.random.Generator,
    *,
    on_track: int = 3,
    beside: int = 3,
    kinds: Sequence[ObstacleKind] = OBSTACLE_KINDS,
    min_gap_m: float = 2.5,
) -> tuple[Obstacle, ...]:
    """A random scene: ``on_track`` obstacles in random lanes at least ``min_gap_m`` apart along
    the track, so a car can weave between them (walls lie along a side lane, never across the
    road), and ``beside`` obstacles just outside a border (walls parallel to it)."""
    road_kinds = list(kinds) or ["box"]
    out: list[Obstacle] = []
    taken: list[float] = []
    for _ in range(on_track * 20):
        if len(taken) >= on_track:
            break
        s = float(rng.uniform(0.12, 0.95)) * track.length  # leave the start line clear
        if any(abs((s - t + track.length / 2) % track.length - track.length / 2) < min_gap_m for t in taken):
            continue
        taken.append(s)
        kind: ObstacleKind = road_kinds[int(rng.integers(len(road_kinds)))]
        lanes = [-0.55, 0.55] if kind == "wall" else [-0.5, 0.0, 0.5]
        lateral = float(rng.choice(lanes)) * track.min_half_width
        turn = 0.0 if kind in ("car", "wall") else float(rng.uniform(-0.4, 0.4))
        yaw = track.heading_at(s) + turn
        out.append(Obstacle.of_kind(kind, *_offset(track, s, lateral), yaw))
    for _ in range(beside):
        s = float(rng.uniform(0.0, 1.0)) * track.length
        kind = kinds[int(rng.integers(len(kinds)))]
        side = 1.0 if rng.random() < 0.5 else -1.0
        half_width = KIND_SIZES[kind][1] / 2
        lateral = side * (track.width / 2 + 0.15 + half_width + float(rng.uniform(0.0, 0.25)))
        ob = Obstacle.of_kind(kind, *_offset(track, s, lateral), track.heading_at(s))
        # Every corner clear of the road (a straight wall beside a bend can reach into it).
        clear = [track.project(cx, cy).distance > track.width_at(cx, cy) / 2 + 0.1 for cx, cy in ob.corners()]
        if all(clear) and not track.on_track(np.array(ob.corners())).any():
            out.append(ob)
    return tuple(out)


def _offset(track: Track, s: float, lateral: float) -> tuple[float, float]:
    """The point ``lateral`` metres left of the centre line at ``s``."""
    x, y = track.point_at(s)
    heading = track.heading_at(s)
    return x - lateral * math.sin(heading), y + lateral * math.cos(heading)


def rectangles_overlap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    """Separating-axis test for two convex quadrilaterals given by their corners in order."""
    for poly in (a, b):
        n = len(poly)
        for i in range(n):
            x0, y0 = poly[i]
            x1, y1 = poly[(i + 1) % n]
            ax, ay = y0 - y1, x1 - x0  # edge normal
            pa = [ax * px + ay * py for px, py in a]
            pb = [ax * px + ay * py for px, py in b]
            if max(pa) < min(pb) or max(pb) < min(pa):
                return False
    return True
