"""Bot cars as deepracer-simapp's BotCarsCtrl drives them (its defaults: 0.2 m/s along the centre
line, 2 m from the start, spread to 1 m before the line, alternating lanes from the inner one,
lane changes every 3–5 s over 1 m, a 2 s pause)."""

import math

import numpy as np
import pytest

from firmware.sim.bots import BOT_LENGTH, BOT_WIDTH, BotCars, BotConfig
from firmware.sim.tracks import get_track
from firmware.sim.world import World, WorldConfig

DT = 1.0 / 15.0


def _lateral_sign(track, ob) -> float:  # type: ignore[no-untyped-def]
    """+1 in the inner lane, -1 in the outer one, whatever the track's direction."""
    return math.copysign(1.0, track.project(ob.x, ob.y).lateral) * (1 if track.is_ccw else -1)


def test_bots_start_spread_in_alternating_lanes_and_drive_the_centre_line_distance() -> None:
    track = get_track("oval")
    bots = BotCars(track, BotConfig(count=3))
    start = bots.reset(np.random.default_rng(0))
    dists = [track.project(o.x, o.y).s for o in start]
    assert dists == pytest.approx(list(np.linspace(2.0, track.length - 1.0, 3)), abs=0.02)
    assert [_lateral_sign(track, o) for o in start] == [1, -1, 1]
    for ob in start:  # halfway between the centre line and the border
        half = track.width_at(ob.x, ob.y) / 2
        assert abs(track.project(ob.x, ob.y).lateral) == pytest.approx(half / 2, abs=0.03)
        assert (ob.kind, ob.length, ob.width) == ("car", BOT_LENGTH, BOT_WIDTH)
    for _ in range(15):
        moved = bots.step(DT)
    ahead = [(track.project(o.x, o.y).s - d) % track.length for o, d in zip(moved, dists, strict=True)]
    assert ahead == pytest.approx([0.2, 0.2, 0.2], abs=0.01)  # one second at 0.2 m/s
    bots.pause()  # 2 s
    for _ in range(30):
        paused = bots.step(DT)
    assert np.allclose([(o.x, o.y) for o in paused], [(o.x, o.y) for o in moved])
    assert not np.allclose([(o.x, o.y) for o in bots.step(DT)], [(o.x, o.y) for o in paused])


def test_bots_change_lanes() -> None:
    track = get_track("oval")
    bots = BotCars(track, BotConfig(count=2, lane_change=True))
    start = bots.reset(np.random.default_rng(1))
    before = [_lateral_sign(track, o) for o in start]
    yaws_off_lane = []
    for _ in range(int(10.5 / DT)):  # at most 5 s waiting plus 5 s changing (1 m at 0.2 m/s)
        now = bots.step(DT)
        turn = [math.remainder(o.yaw - track.heading_at(track.project(o.x, o.y).s), math.tau) for o in now]
        yaws_off_lane.append(max(abs(t) for t in turn))
    assert [_lateral_sign(track, o) for o in now] == [-s for s in before]
    assert max(yaws_off_lane) > 0.05  # the bot turned across the road while changing


def test_world_sees_moving_bots_on_camera_lidar_and_collisions() -> None:
    world = World("oval", WorldConfig(dt=DT))
    empty_frame, empty_scan = world.render(), world.lidar()
    s = world.status.s + 0.8
    x, y = world.track.point_at(s)
    bots = BotCars(world.track, BotConfig(count=1))
    bots.reset(np.random.default_rng(0))
    from firmware.sim.obstacles import Obstacle

    bot = Obstacle(x, y, world.track.heading_at(s), BOT_LENGTH, BOT_WIDTH, 0.16, "car")
    world.set_obstacles((bot,), (0.2,))
    assert not np.array_equal(world.render(), empty_frame)
    ahead = len(empty_scan) // 2  # the beam straight ahead
    assert world.lidar()[ahead] < empty_scan[ahead] - 0.5
    params = world.params()
    assert params["objects_speed"] == [0.2] and params["objects_heading"] == [pytest.approx(bot.yaw)]
    for _ in range(30):
        status = world.step(0.0, 0.3)
        if status.crashed:
            break
    assert status.crashed and world.params()["is_crashed"]
