"""Obstacle kinds, floor surfaces, frame labels and the avoiding expert."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.sim import ExpertDriver, Randomization, World, WorldConfig, drive, get_track, place_obstacles
from firmware.sim.obstacles import OBSTACLE_KINDS, Obstacle, random_obstacles
from firmware.sim.render import SURFACES


def _ahead(track_name: str, kind: str, metres: float = 0.7) -> tuple[World, Obstacle]:
    t = get_track(track_name)
    s = 3.0
    x, y = t.point_at(s + metres)
    ob = Obstacle.of_kind(kind, x, y, t.heading_at(s))  # type: ignore[arg-type]
    world = World(t, WorldConfig(obstacles=(ob,)), seed=0)
    world.reset(0, start_progress=100 * s / t.length)
    return world, ob


@pytest.mark.parametrize("kind", OBSTACLE_KINDS)
def test_each_kind_is_labelled_ahead_seen_by_camera_and_lidar(kind: str) -> None:
    world, _ = _ahead("oval", kind)
    labels = world.labels()
    assert labels.obstacle_ahead == kind
    assert labels.in_view[0].kind == kind
    assert 0.3 < labels.ahead_distance < 0.7  # type: ignore[operator]
    assert abs(labels.in_view[0].bearing) < 15
    # The lidar beams towards it stop at the obstacle; without it they reach farther.
    beams = np.abs(np.degrees(world.config.lidar.angles()) - labels.in_view[0].bearing) < 12
    empty = World(world.track, WorldConfig(), seed=0)
    empty.reset(0, start_progress=100 * 3.0 / world.track.length)
    assert world.lidar()[beams].min() < labels.ahead_distance + 0.2  # type: ignore[operator]
    assert empty.lidar()[beams].min() > labels.ahead_distance + 0.3  # type: ignore[operator]
    # And the camera shows it: the frame differs from the same pose without the obstacle.
    diff = np.abs(world.render().astype(int) - empty.render().astype(int)).sum(axis=2)
    assert (diff > 40).sum() > 60


def test_obstacle_behind_the_car_is_not_in_view() -> None:
    world, _ = _ahead("oval", "box", metres=-1.0)
    labels = world.labels()
    assert labels.obstacle_ahead == "none" and labels.in_view == ()


def test_kinds_look_different() -> None:
    frames = {kind: _ahead("oval", kind)[0].render().astype(int) for kind in OBSTACLE_KINDS}
    kinds = list(frames)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            assert (np.abs(frames[a] - frames[b]).sum(axis=2) > 60).sum() > 100, (a, b)


def test_surfaces_are_randomised_per_session_and_labelled() -> None:
    seen = set()
    for seed in range(16):
        world = World(
            "oval", WorldConfig(randomization=Randomization(enabled=True, surfaces=True)), seed=seed
        )
        labels = world.labels()
        assert labels.surface_under == world.renderer.surface
        seen.add(labels.surface_under)
    assert seen == set(SURFACES)
    world = World("oval", seed=0)
    world.reset(0, lateral=0.9)  # beside the road
    assert world.labels().surface_under == "offtrack"


def test_default_look_is_unchanged_without_surfaces() -> None:
    world = World("oval", WorldConfig(randomization=Randomization(enabled=True)), seed=3)
    assert world.renderer.surface == "asphalt"


def test_random_scene_has_obstacles_on_and_beside_the_road() -> None:
    t = get_track("technical")
    obstacles = random_obstacles(t, np.random.default_rng(4), on_track=3, beside=4)
    on = [o for o in obstacles if t.on_track(np.array([[o.x, o.y]]))[0]]
    assert len(on) == 3 and len(obstacles) > 3
    for o in obstacles[3:]:
        assert not t.on_track(np.array(o.corners())).any()


@pytest.mark.parametrize("track", ["oval", "s-curve", "technical"])
def test_avoiding_expert_finishes_without_collision(track: str) -> None:
    t = get_track(track)
    obstacles = place_obstacles(t, [20, 45, 70])
    world = World(t, WorldConfig(obstacles=obstacles, dt=1 / 15, substeps=4), seed=0)
    result = drive(world, ExpertDriver(t, world.config.car), laps=1)
    assert result.finished and result.crashes == 0
    # The same course without avoidance crashes: the test can fail.
    world = World(t, WorldConfig(obstacles=obstacles, dt=1 / 15, substeps=4), seed=0)
    blind = drive(world, ExpertDriver(t, world.config.car, obstacles=[]), laps=1, max_time_s=20)
    assert blind.crashes > 0


def test_avoiding_expert_passes_random_scenes_of_every_kind() -> None:
    t = get_track("s-curve")
    for seed in range(3):
        obstacles = random_obstacles(t, np.random.default_rng(seed))
        world = World(t, WorldConfig(obstacles=obstacles, dt=1 / 15, substeps=4), seed=seed)
        result = drive(world, ExpertDriver(t, world.config.car), laps=1)
        assert result.finished and result.crashes == 0, seed


def test_obstacle_kind_is_validated() -> None:
    with pytest.raises(ValueError, match="kind"):
        Obstacle(0, 0, kind="tree")  # type: ignore[arg-type]
