"""The car: throttle/steering conventions, bicycle kinematics, actuator lag and latency."""

import math
from dataclasses import replace

import pytest

from firmware.sim.physics import (
    Car,
    CarState,
    VehicleSpec,
    angle_deg_to_steering,
    speed_to_throttle,
    steering_to_angle_deg,
    throttle_to_speed,
)

IDEAL = VehicleSpec(
    speed_time_constant=0.0, steering_time_constant=0.0, latency=0.0, max_accel=1e6, max_brake=1e6
)


@pytest.mark.parametrize(
    ("throttle", "speed"),
    [
        (1.0, 4.0),
        (0.5, 2.05),
        (1e-9, 0.1),
        (0.0, 0.0),
        (-0.5, 0.0),
        (-1.0, 0.0),
        (2.0, 4.0),
        (float("nan"), 0.0),
    ],
)
def test_throttle_maps_linearly_onto_the_speed_range(throttle: float, speed: float) -> None:
    assert throttle_to_speed(throttle, VehicleSpec()) == pytest.approx(speed)


@pytest.mark.parametrize("speed", [0.1, 0.5, 1.0, 2.5, 4.0])
def test_speed_to_throttle_inverts_the_mapping(speed: float) -> None:
    car = VehicleSpec()
    throttle = speed_to_throttle(speed, car)
    assert 0 < throttle <= 1
    assert throttle_to_speed(throttle, car) == pytest.approx(speed)


def test_speed_to_throttle_clips_and_brakes() -> None:
    car = VehicleSpec()
    assert speed_to_throttle(0.0, car) == 0.0
    assert speed_to_throttle(-1.0, car) == 0.0
    assert speed_to_throttle(9.0, car) == 1.0
    assert throttle_to_speed(speed_to_throttle(0.05, car), car) == pytest.approx(0.1)


def test_steering_conventions() -> None:
    car = VehicleSpec()
    assert steering_to_angle_deg(-1.0, car) == 30.0  # full left is DeepRacer +30°
    assert steering_to_angle_deg(0.5, car) == -15.0
    assert angle_deg_to_steering(30.0, car) == -1.0
    assert angle_deg_to_steering(-45.0, car) == 1.0  # clipped
    assert angle_deg_to_steering(steering_to_angle_deg(0.3, car), car) == pytest.approx(0.3)


def test_straight_line_at_the_commanded_speed() -> None:
    car = Car(IDEAL, dt=0.01, state=CarState(speed=2.0))  # already rolling: no start-up half step
    car.set_command(0.0, speed_to_throttle(2.0, IDEAL))
    for _ in range(100):
        car.tick()
    assert car.state.speed == pytest.approx(2.0)
    assert car.state.x == pytest.approx(2.0)  # 1 s at 2 m/s
    assert car.state.y == pytest.approx(0.0)


@pytest.mark.parametrize("steering", [1.0, -1.0, 0.5])
def test_turning_circle_of_the_bicycle_model(steering: float) -> None:
    angle = -steering * math.radians(30)
    radius = IDEAL.wheelbase / math.tan(abs(angle))
    quarter = (math.pi / 2) * radius / 1.0  # seconds for a quarter circle at 1 m/s
    dt = quarter / 100
    car = Car(IDEAL, dt=dt, state=CarState(speed=1.0, steering_angle=angle))
    car.set_command(steering, speed_to_throttle(1.0, IDEAL))
    for _ in range(100):
        car.tick()
    s = car.state
    # Right turns go clockwise (yaw falls) and end up on the right (-y) after a quarter circle.
    side = -1 if steering > 0 else 1
    assert s.yaw == pytest.approx(side * math.pi / 2)
    assert s.x == pytest.approx(radius)
    assert s.y == pytest.approx(side * radius)


def test_command_latency_in_whole_ticks() -> None:
    config = replace(IDEAL, latency=0.05)
    car = Car(config, dt=0.01)
    assert car.latency_ticks == 5
    car.set_command(0.0, 1.0)
    for _ in range(5):
        car.tick()
        assert car.state.speed == 0.0
    car.tick()
    assert car.state.speed == pytest.approx(4.0)


def test_first_order_lag_of_speed_and_steering() -> None:
    config = replace(
        VehicleSpec(), latency=0.0, max_accel=1e6, speed_time_constant=0.2, steering_time_constant=0.1
    )
    car = Car(config, dt=0.001)
    car.set_command(1.0, speed_to_throttle(2.0, config))
    for _ in range(100):  # one steering time constant
        car.tick()
    assert car.state.steering_angle == pytest.approx(-math.radians(30) * (1 - math.exp(-1)), rel=1e-3)
    for _ in range(100):  # one speed time constant in all
        car.tick()
    assert car.state.speed == pytest.approx(2.0 * (1 - math.exp(-1)), rel=1e-3)


def test_acceleration_and_braking_limits() -> None:
    config = replace(VehicleSpec(), latency=0.0, speed_time_constant=0.0, max_accel=2.0, max_brake=4.0)
    car = Car(config, dt=0.01)
    car.set_command(0.0, 1.0)
    for _ in range(50):
        car.tick()
    assert car.state.speed == pytest.approx(1.0)  # 0.5 s at 2 m/s²
    car.set_command(0.0, -1.0)  # brake
    for _ in range(10):
        car.tick()
    assert car.state.speed == pytest.approx(0.6)
    for _ in range(100):
        car.tick()
    assert car.state.speed == 0.0  # stops, never reverses


def test_nan_commands_are_neutral_and_runs_are_deterministic() -> None:
    assert Car(VehicleSpec(), 0.01).set_command(float("nan"), float("nan")).throttle == 0.0

    def run() -> CarState:
        car = Car(VehicleSpec(), dt=1 / 60)
        for i in range(300):
            car.set_command(math.sin(i / 20), 0.4 + 0.2 * math.cos(i / 30))
            car.tick()
        return car.state

    assert run() == run()


def test_body_points() -> None:
    car = Car(VehicleSpec(), dt=0.01, state=CarState(1.0, 2.0, math.pi / 2))
    fx, fy = car.front_point()
    assert (fx, fy) == pytest.approx((1.0, 2.14))
    wheels = car.wheel_points()
    assert wheels[0] == pytest.approx((1.0 - 0.08, 2.0 + 0.165))  # front-left
    assert wheels[3] == pytest.approx((1.0 + 0.08, 2.0))  # rear-right


def test_invalid_configs() -> None:
    with pytest.raises(ValueError, match="max_speed"):
        VehicleSpec(max_speed=0)
    with pytest.raises(ValueError, match="min_speed"):
        VehicleSpec(min_speed=5.0)
    with pytest.raises(ValueError, match="latency"):
        VehicleSpec(latency=-1)
    with pytest.raises(ValueError, match="time step"):
        Car(VehicleSpec(), dt=0)
