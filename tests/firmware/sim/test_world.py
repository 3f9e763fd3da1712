"""The world: lap timing, progress, off-track, reversed, crashes, determinism, camera and lidar."""

import math
from dataclasses import replace

import numpy as np
import pytest

from firmware.sim.lidar import LidarConfig
from firmware.sim.obstacles import Obstacle, place_obstacles
from firmware.sim.physics import VehicleSpec, speed_to_throttle
from firmware.sim.render import Randomization, RenderConfig
from firmware.sim.track import Track
from firmware.sim.world import World, WorldConfig

IDEAL_CAR = VehicleSpec(speed_time_constant=0.0, steering_time_constant=0.0, latency=0.0, max_accel=1e6)


def test_lap_time_on_a_circle_matches_the_hand_computed_value() -> None:
    """Steer a constant circle whose front point follows a circular track exactly: one lap takes
    2π·R_rear / v, with R_rear = wheelbase / tan(steering angle)."""
    car = IDEAL_CAR
    angle = math.radians(20.0)
    r_rear = car.wheelbase / math.tan(angle)
    r_front = math.hypot(r_rear, car.front_offset)
    theta = np.linspace(0, 2 * math.pi, 720, endpoint=False)
    circle = Track.from_centerline(
        "circle", np.stack([r_front * np.cos(theta), r_front * np.sin(theta)], 1), 0.5
    )
    speed = 1.5
    world = World(circle, WorldConfig(car=car, dt=1 / 30, substeps=2))
    yaw = math.pi / 2 - math.atan(car.front_offset / r_rear)  # tangent to the rear axle's circle
    world.reset(yaw_offset=yaw - circle.heading_at(0.0), speed=speed)
    steering = -angle / car.max_steering_rad  # negative = left
    throttle = speed_to_throttle(speed, car)
    expected = 2 * math.pi * r_rear / speed
    half = None
    while world.status.lap < 2:
        status = world.step(steering, throttle)
        assert status.all_wheels_on_track
        assert status.distance_from_center < 1e-3
        if half is None and status.progress >= 50:
            half = status.time
    assert world.status.lap_times == pytest.approx((expected, expected), abs=2e-3)
    assert half == pytest.approx(expected / 2, abs=world.dt)


def test_progress_lap_events_and_total_progress() -> None:
    world = World("oval", WorldConfig(car=IDEAL_CAR))
    steps = []
    while world.status.lap < 1:
        st = world.step(*_follow(world))
        steps.append(st)
    laps = [e for st in steps for e in st.events if e.kind == "lap"]
    assert len(laps) == 1 and laps[0].lap == 1 and laps[0].lap_time == world.status.lap_times[0]
    assert steps[-1].progress == 100.0 and steps[-1].lap_completed
    progress = [st.progress for st in steps[:-1]]
    assert progress == sorted(progress)  # never falls while driving forwards
    assert world.step(*_follow(world)).total_progress == pytest.approx(100 + world.status.progress)
    assert world.status.progress < 2


def _follow(world: World) -> tuple[float, float]:
    """A crude centre-line follower (the expert is tested on its own)."""
    s = world.car.state
    target_s = world.status.s + 0.5
    tx, ty = world.track.point_at(target_s)
    alpha = math.atan2(ty - s.y, tx - s.x) - s.yaw
    alpha = (alpha + math.pi) % (2 * math.pi) - math.pi
    return -max(-1.0, min(1.0, alpha / 0.5)), 0.3


def test_off_track_needs_all_four_wheels_off() -> None:
    world = World("oval")
    first_wheel_off = None
    events = []
    for _ in range(200):
        status = world.step(0.0, 0.4)  # straight on: the oval bends left ahead
        events += status.events
        if first_wheel_off is None and not status.all_wheels_on_track:
            first_wheel_off = status.steps
            assert not status.off_track
        if status.off_track:
            break
    assert status.off_track and not status.all_wheels_on_track
    assert first_wheel_off is not None and first_wheel_off < status.steps
    assert [e.kind for e in events] == ["off_track"]
    back = world.reset_to_track()
    assert back.all_wheels_on_track and not back.off_track
    assert back.distance_from_center < 1e-6 and back.speed == 0.0
    assert back.time == status.time and back.progress == pytest.approx(status.progress, abs=1.0)


def test_driving_the_wrong_way_is_reported_after_reverse_steps() -> None:
    world = World("oval", WorldConfig(reverse_steps=15))
    world.reset(yaw_offset=math.pi)
    kinds = []
    for _ in range(40):
        status = world.step(0.0, 0.3)
        kinds += [e.kind for e in status.events]
        if status.reversed:
            break
    assert kinds == ["reversed"]
    # Progress starts falling on the first step that moves; 15 falling steps make it "reversed".
    assert 15 <= status.steps <= 17
    assert status.progress < 0


def test_crash_into_a_box_stops_the_car_and_reset_clears_it() -> None:
    track = World("oval").track
    boxes = place_obstacles(track, [10.0], ["center"])
    world = World(track, WorldConfig(obstacles=boxes))
    for _ in range(100):
        status = world.step(0.0, 0.4)
        if status.crashed:
            break
    assert status.crashed and [e.kind for e in status.events] == ["crash"]
    x = world.car.state.x
    assert world.step(0.0, 1.0).speed == 0.0 and world.car.state.x == x  # stays stopped
    back = world.reset_to_track()
    assert not back.crashed
    assert world.car.state.x < boxes[0].x - 0.25  # put back behind the box
    for _ in range(3):  # the command reaches the wheels after the latency
        status = world.step(0.0, 0.3)
    assert status.speed > 0


def test_same_seed_same_frames_different_seed_different_frames() -> None:
    config = WorldConfig(randomization=Randomization(enabled=True))

    def frames(seed: int) -> list[np.ndarray]:
        world = World("technical", config, seed=seed)
        out = []
        for i in range(10):
            world.step(0.2 * math.sin(i), 0.5)
            out.append(world.render())
        return out

    a, b, c = frames(7), frames(7), frames(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    world = World("technical", config, seed=7)
    world.step(0.0, 0.5)
    first = world.render()
    world.reset(seed=7)
    world.step(0.0, 0.5)
    assert np.array_equal(world.render(), first)


def test_frames_are_rgb_uint8_of_the_configured_size() -> None:
    world = World("s-curve")
    image = world.render()
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8
    small = World("s-curve", WorldConfig(camera=RenderConfig(width=80, height=60, grayscale=True)))
    gray = small.render()
    assert gray.shape == (60, 80, 1) and gray.dtype == np.uint8


def test_camera_sees_the_borders_where_the_homography_puts_them() -> None:
    """On the oval's straight, centred and aligned, the white borders (0.4 m either side) cross
    image row v at the columns a pinhole camera at the configured height and pitch predicts."""
    cam = RenderConfig()
    world = World("oval")
    world.reset(start_progress=5.0)  # 1 m down the straight: the start line is behind the camera
    image = world.render().astype(int)
    fx = (cam.width / 2) / math.tan(math.radians(cam.fov_deg) / 2)
    cx, cy = (cam.width - 1) / 2, (cam.height - 1) / 2
    pitch = math.radians(cam.pitch_deg)
    for v in (48, 54, 60, 66):
        down = pitch + math.atan((v - cy) / fx)  # ray angle below the horizontal
        ahead = cam.camera_height / math.tan(down)  # metres ahead of the camera on the ground
        depth = ahead * math.cos(pitch) + cam.camera_height * math.sin(pitch)
        for side in (+1, -1):  # left border at lateral +0.4 is at image left
            u = cx - side * fx * 0.4 / depth
            row = image[v].sum(axis=1)
            cols = np.flatnonzero(row > 3 * 170)
            cols = cols[(cols < cx) if side > 0 else (cols > cx)]
            assert cols.size, f"no white border in row {v}"
            assert cols.mean() == pytest.approx(u, abs=1.5)
    # Above the horizon: backdrop, not road.
    assert image[:5].mean() > 100


def test_boxes_show_up_in_the_image() -> None:
    track = World("oval").track
    boxes = place_obstacles(track, [6.0], ["center"])

    def orange(image: np.ndarray) -> int:
        r, g, b = (image[..., i].astype(int) for i in range(3))
        # Box orange (g ≈ 0.62 r) and not the yellow centre line (g ≈ 0.8 r).
        return int(((r > 100) & (g < 0.7 * r) & (g > 0.5 * r) & (b < 0.35 * r)).sum())

    assert orange(World(track).render()) == 0
    assert orange(World(track, WorldConfig(obstacles=boxes)).render()) > 50


def test_lidar_ranges_against_the_oval_geometry() -> None:
    track = World("oval").track  # centre line y = -1.6 on the bottom straight, 0.8 m wide
    world = World(track, WorldConfig(lidar=LidarConfig(beams=64, max_range=3.0)))
    ranges = world.lidar()
    assert ranges.shape == (64,) and ranges.dtype == np.float32
    # Beams start straight back and sweep counter-clockwise: 16 = right, 32 = ahead, 48 = left.
    assert ranges[48] == pytest.approx(0.4, abs=1e-4)
    assert ranges[16] == pytest.approx(0.4, abs=1e-4)
    assert ranges[32] == pytest.approx(3.0)  # nothing within range straight ahead
    box = Obstacle(1.0, -1.6, 0.0, 0.25, 0.25, 0.25)
    lidar_x = world.car.state.x + world.config.lidar.mount_forward
    with_box = World(track, WorldConfig(obstacles=(box,))).lidar()
    assert with_box[32] == pytest.approx(1.0 - 0.125 - lidar_x, abs=1e-4)
    noisy = World(track, WorldConfig(lidar=LidarConfig(noise_std=0.01)), seed=1).lidar()
    assert 0 < np.abs(noisy - ranges).max() < 0.06


def test_step_commands_are_clipped_and_deterministic() -> None:
    def run() -> list[tuple[float, float, float]]:
        world = World("technical", WorldConfig(car=replace(VehicleSpec(), latency=0.05)), seed=3)
        out = []
        for i in range(200):
            world.step(3.0 * math.sin(i / 10), float("nan") if i == 5 else 0.5)
            s = world.car.state
            out.append((s.x, s.y, s.yaw))
        return out

    assert run() == run()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="dt"):
        WorldConfig(dt=0)
    with pytest.raises(ValueError, match="substeps"):
        WorldConfig(substeps=0)
    with pytest.raises(ValueError, match="start_progress"):
        World("oval").reset(start_progress=120)
