"""Ground-truth labels for a frame: which obstacles the camera sees and what the car drives on.

    labels = frame_labels(world)                 # or world.labels()
    labels.obstacle_ahead   # "none" or the kind of the nearest obstacle in the corridor ahead
    labels.ahead_ambiguous  # True: the frame is neither clearly "none" nor clearly that kind
    labels.surface_ahead    # "asphalt" | "wood" | "carpet" | "tile" | "offtrack"
    labels.in_view          # [ObstacleInView(kind, distance, bearing), ...] nearest first

The corridor ahead is a rectangle in front of the car's nose, as wide as the car plus a margin and
``LabelConfig.ahead_m`` long: what a car driving straight on would hit. Distances are from the
camera to the nearest point of the obstacle's footprint; bearings are of its centre, degrees,
positive to the left. Labels are pure geometry (no occlusion test): the nearest obstacle in the
corridor is the one the camera sees in front.

A whole-frame classifier cannot place an obstacle to the centimetre, so frames near the corridor's
edge are *ambiguous* (``ahead_ambiguous``): an obstacle the camera shows clearly in a band
``ambiguous_m`` beyond the corridor's end or ``ambiguous_side_m`` beside it, with none in the
corridor (it looks just like one ahead), or an obstacle in the corridor that the camera shows
smaller than ``min_px`` pixels either way or with less than ``min_visible`` of it inside the
frame. Trainers leave the obstacle label of those frames out of the loss and the metrics; the
surface label stays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from firmware.sim.obstacles import Obstacle, rectangles_overlap
from firmware.sim.physics import Car
from firmware.sim.render import OFF_TRACK, Renderer
from firmware.sim.track import Track


class World(Protocol):
    """What labelling reads of a :class:`firmware.sim.world.World` (no import: the world imports us)."""

    track: Track
    car: Car
    renderer: Renderer

    @property
    def config(self) -> Any: ...


NO_OBSTACLE = "none"


@dataclass(frozen=True, slots=True)
class LabelConfig:
    """What counts as in view and ahead (metres)."""

    view_range_m: float = 3.0  # obstacles farther than this are not listed
    ahead_m: float = 1.0  # corridor length beyond the car's nose
    corridor_margin_m: float = 0.05  # added to each side of the car's width
    surface_ahead_m: float = 0.35  # the ground point whose surface is "ahead" (from the camera)
    ambiguous_m: float = 0.5  # the band beyond the corridor's end where "none" is ambiguous
    ambiguous_side_m: float = 0.15  # and beside the corridor, on each side
    min_px: float = 6.0  # an obstacle ahead must show at least this wide and tall (camera pixels)
    min_visible: float = 0.5  # and at least this fraction of its projected box inside the frame

    def __post_init__(self) -> None:
        for name in ("view_range_m", "ahead_m", "surface_ahead_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LabelConfig.{name} must be positive")
        for name in ("corridor_margin_m", "ambiguous_m", "ambiguous_side_m", "min_px"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"LabelConfig.{name} must be >= 0")
        if not 0 <= self.min_visible <= 1:
            raise ValueError("LabelConfig.min_visible must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class ObstacleInView:
    kind: str
    distance: float  # m, camera to the nearest point of the footprint
    bearing: float  # degrees, + left of the heading
    index: int  # which obstacle of the world's config


@dataclass(frozen=True, slots=True)
class FrameLabels:
    obstacle_ahead: str  # "none" or a kind
    ahead_distance: float | None  # m to the obstacle ahead
    surface_under: str
    surface_ahead: str
    in_view: tuple[ObstacleInView, ...]
    ahead_ambiguous: bool = False  # near the corridor's edge or hardly shown: no obstacle label

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["in_view"] = [
            {"kind": o.kind, "distance": round(o.distance, 3), "bearing": round(o.bearing, 2)}
            for o in self.in_view
        ]
        if self.ahead_distance is not None:
            out["ahead_distance"] = round(self.ahead_distance, 3)
        return out


def frame_labels(world: World, config: LabelConfig | None = None) -> FrameLabels:
    """The labels of the frame ``world.render()`` shows now."""
    c = config or LabelConfig()
    state = world.car.state
    renderer = world.renderer
    cam_x, cam_y, _ = renderer.camera_pose(state.x, state.y, state.yaw)
    in_view = []
    for i, ob in enumerate(world.config.obstacles):
        distance = _distance_to(ob, cam_x, cam_y)
        if distance > c.view_range_m or not _visible(world, ob):
            continue
        bearing = math.degrees(_wrap(math.atan2(ob.y - cam_y, ob.x - cam_x) - state.yaw))
        in_view.append(ObstacleInView(ob.kind, distance, bearing, i))
    in_view.sort(key=lambda o: o.distance)
    obstacles = world.config.obstacles
    corridor = _corridor(world, c, c.ahead_m, c.corridor_margin_m)
    ahead = [o for o in in_view if rectangles_overlap(corridor, obstacles[o.index].corners())]
    if ahead:
        ambiguous = not _shown(world, obstacles[ahead[0].index], c)
    else:
        band = _corridor(world, c, c.ahead_m + c.ambiguous_m, c.corridor_margin_m + c.ambiguous_side_m)
        ambiguous = any(
            rectangles_overlap(band, obstacles[o.index].corners()) and _shown(world, obstacles[o.index], c)
            for o in in_view
        )
    cos, sin = math.cos(state.yaw), math.sin(state.yaw)
    mid = world.config.car.wheelbase / 2
    under = (state.x + mid * cos, state.y + mid * sin)
    front = (cam_x + c.surface_ahead_m * cos, cam_y + c.surface_ahead_m * sin)
    return FrameLabels(
        obstacle_ahead=ahead[0].kind if ahead else NO_OBSTACLE,
        ahead_distance=ahead[0].distance if ahead else None,
        surface_under=surface_at(world, *under),
        surface_ahead=surface_at(world, *front),
        in_view=tuple(in_view),
        ahead_ambiguous=ambiguous,
    )


def surface_at(world: World, x: float, y: float) -> str:
    """The surface at a ground point: the road's surface between the borders, else off track."""
    if bool(world.track.on_track(np.array([[x, y]]))[0]):
        return world.renderer.surface
    return OFF_TRACK


def _corridor(world: World, c: LabelConfig, length: float, margin: float) -> list[tuple[float, float]]:
    """The rectangle ``length`` long in front of the car's nose, its width plus ``margin`` a side."""
    s = world.car.state
    car = world.config.car
    nose = car.length - car.rear_overhang  # the body's front, from the rear axle
    half = car.width / 2 + margin
    box = Obstacle(
        s.x + (nose + length / 2) * math.cos(s.yaw),
        s.y + (nose + length / 2) * math.sin(s.yaw),
        s.yaw,
        length,
        2 * half,
        0.1,
    )
    return box.corners()


def _shown(world: World, ob: Obstacle, c: LabelConfig) -> bool:
    """Whether the camera shows ``ob`` at a usable size, mostly inside the frame."""
    s = world.car.state
    width, height, inside = world.renderer.visible_extent(s.x, s.y, s.yaw, ob)
    return width >= c.min_px and height >= c.min_px and inside >= c.min_visible


def _visible(world: World, ob: Obstacle) -> bool:
    s = world.car.state
    points = [(ob.x, ob.y), *ob.corners()]
    return any(world.renderer.object_in_view(s.x, s.y, s.yaw, px, py) for px, py in points)


def _distance_to(ob: Obstacle, x: float, y: float) -> float:
    """Distance from ``(x, y)`` to the obstacle's footprint (0 inside)."""
    c, s = math.cos(ob.yaw), math.sin(ob.yaw)
    dx, dy = x - ob.x, y - ob.y
    u, v = dx * c + dy * s, -dx * s + dy * c  # in the obstacle's frame
    ex = max(abs(u) - ob.length / 2, 0.0)
    ey = max(abs(v) - ob.width / 2, 0.0)
    return math.hypot(ex, ey)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
