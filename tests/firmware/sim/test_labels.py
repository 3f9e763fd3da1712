"""The obstacle-ahead label: the corridor, the ambiguous band round it and the size the camera
shows an obstacle at, on constructed scenes (one obstacle at a known place before the car)."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from firmware.sim import Randomization, World, WorldConfig, get_track
from firmware.sim.labels import FrameLabels, LabelConfig
from firmware.sim.obstacles import OBSTACLE_KINDS, Obstacle

START_S = 3.0  # m along the oval's centre line: a straight


def _world(obstacles: tuple[Obstacle, ...] = (), look: Randomization | None = None, seed: int = 0) -> World:
    t = get_track("oval")
    config = WorldConfig(obstacles=obstacles, randomization=look or Randomization())
    world = World(t, config, seed=seed)
    world.reset(seed, start_progress=100 * START_S / t.length)
    return world


@cache
def _start_pose() -> tuple[float, float, float]:
    s = _world().car.state
    return s.x, s.y, s.yaw


def _placed(kind: str, ahead_m: float, lateral_m: float = 0.0) -> Obstacle:
    """An obstacle ``ahead_m`` in front of the car's rear axle, ``lateral_m`` to its left."""
    x0, y0, yaw = _start_pose()
    c, n = math.cos(yaw), math.sin(yaw)
    x, y = x0 + ahead_m * c - lateral_m * n, y0 + ahead_m * n + lateral_m * c
    return Obstacle.of_kind(kind, x, y, yaw)  # type: ignore[arg-type]


def _labels(
    kind: str, ahead_m: float, lateral_m: float = 0.0, config: LabelConfig | None = None
) -> FrameLabels:
    return _world((_placed(kind, ahead_m, lateral_m),)).labels(config)


def test_an_obstacle_in_the_corridor_is_ahead_and_clear() -> None:
    labels = _labels("cone", 0.8)
    assert labels.obstacle_ahead == "cone" and not labels.ahead_ambiguous


def test_an_obstacle_just_beyond_the_corridor_is_ambiguous_not_none() -> None:
    # The corridor ends 1.24 m ahead of the rear axle (nose 0.24 m + 1 m): 20 cm beyond its end
    # the cone looks as it does inside it, so the frame is neither clearly "none" nor "cone".
    labels = _labels("cone", 1.24 + 0.2 + 0.09)
    assert labels.obstacle_ahead == "none" and labels.ahead_ambiguous
    assert labels.in_view and labels.in_view[0].kind == "cone"


def test_an_obstacle_just_beside_the_corridor_is_ambiguous() -> None:
    # The corridor is 15 cm a side; a box whose near side is 8 cm beyond it.
    labels = _labels("box", 0.8, lateral_m=0.15 + 0.08 + 0.125)
    assert labels.obstacle_ahead == "none" and labels.ahead_ambiguous


def test_an_obstacle_far_ahead_or_well_aside_is_none() -> None:
    far = _labels("box", 2.6)
    assert far.obstacle_ahead == "none" and not far.ahead_ambiguous and far.in_view
    aside = _labels("box", 0.6, lateral_m=0.7)
    assert aside.obstacle_ahead == "none" and not aside.ahead_ambiguous


def test_an_obstacle_the_camera_shows_too_small_is_ambiguous() -> None:
    # The same cone in the corridor, but a label that wants 200 pixels of it: hardly shown.
    assert _labels("cone", 0.8, config=LabelConfig(min_px=200)).ahead_ambiguous
    assert not _labels("cone", 0.8, config=LabelConfig(min_px=5)).ahead_ambiguous


@pytest.mark.parametrize("field", ["ambiguous_m", "ambiguous_side_m", "min_px"])
def test_label_config_is_validated(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LabelConfig(**{field: -1.0})
    with pytest.raises(ValueError, match="min_visible"):
        LabelConfig(min_visible=1.5)


def test_kinds_differ_in_colour_in_randomised_scenes() -> None:
    # Kinds drawn in one colour family (boxes in the cones' orange, walls in the tiles' grey, cars
    # in the walls' red) are a few pixels apart at a metre: the classifier mixed them.
    for seed in range(3):
        world = _world((), Randomization(enabled=True, surfaces=True), seed)
        s = world.car.state
        empty = world.renderer.render(s.x, s.y, s.yaw).astype(np.float64)
        colours = {}
        for kind in OBSTACLE_KINDS:
            world.renderer.obstacles = (_placed(kind, 0.8),)
            shown = world.renderer.render(s.x, s.y, s.yaw).astype(np.float64)
            mean = shown[np.abs(shown - empty).sum(axis=2) > 60].mean(axis=0)
            colours[kind] = mean / mean.sum()  # chromaticity: the same under any light
        for i, a in enumerate(OBSTACLE_KINDS):
            for b in OBSTACLE_KINDS[i + 1 :]:
                assert np.abs(colours[a] - colours[b]).max() > 0.1, (seed, a, b, colours[a], colours[b])
