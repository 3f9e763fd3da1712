"""The simulator: DeepRacer-compatible tracks, car physics, a first-person camera, lidar, DeepRacer
reward params, an expert driver and the simulated body for the car daemon.

The gymnasium environment lives in :mod:`firmware.sim.gym_env` (importing it registers
``paddock/DeepRacer-v0``); it is not imported here, so the car daemon does not load gymnasium.
See docs/simulator.md.
"""

from firmware.sim.bots import BotCars, BotConfig
from firmware.sim.expert import ExpertConfig, ExpertDriver
from firmware.sim.lidar import LidarConfig
from firmware.sim.obstacles import Obstacle, place_obstacles
from firmware.sim.physics import (
    CarState,
    VehicleSpec,
    angle_deg_to_steering,
    speed_to_throttle,
    steering_to_angle_deg,
    throttle_to_speed,
)
from firmware.sim.render import Randomization, RenderConfig
from firmware.sim.reward import (
    PARAM_KEYS,
    RewardFunction,
    RewardFunctionError,
    deepracer_params,
    load_reward_function,
)
from firmware.sim.run import RunResult, drive
from firmware.sim.simulated_body import GroundTruth, SimActuators, SimBody, SimCamera
from firmware.sim.track import Projection, Track, TrackError, load_track
from firmware.sim.tracks import builtin_track, builtin_track_names, get_track
from firmware.sim.world import SimEvent, World, WorldConfig, WorldStatus

__all__ = [
    "PARAM_KEYS",
    "BotCars",
    "BotConfig",
    "CarState",
    "ExpertConfig",
    "ExpertDriver",
    "GroundTruth",
    "LidarConfig",
    "Obstacle",
    "Projection",
    "Randomization",
    "RenderConfig",
    "RewardFunction",
    "RewardFunctionError",
    "RunResult",
    "SimActuators",
    "SimBody",
    "SimCamera",
    "SimEvent",
    "Track",
    "TrackError",
    "VehicleSpec",
    "World",
    "WorldConfig",
    "WorldStatus",
    "angle_deg_to_steering",
    "builtin_track",
    "builtin_track_names",
    "deepracer_params",
    "drive",
    "get_track",
    "load_reward_function",
    "load_track",
    "place_obstacles",
    "speed_to_throttle",
    "steering_to_angle_deg",
    "throttle_to_speed",
]
