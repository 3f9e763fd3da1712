"""Capture labelled perception data from randomised scenes, in the hub's dataset layout.

    capture(Path("data"), "oval", CaptureConfig(sessions=8))

Each session is one scene: obstacles of every kind on and beside the road
(:func:`firmware.sim.obstacles.random_obstacles`), a road surface, an off-track floor, light and
colours drawn from the session's seed. The avoiding expert drives it with a wandering steering
perturbation (so the camera also looks at borders and off the road) and every recorded step
writes

* a camera frame and its record as a WebDataset sample (``schemas.shards.write_shard``, the hub's
  writer): the expert's action, the pose, and ``labels`` (obstacle ahead, obstacles in view with
  kind, distance and bearing, surface under and ahead: :mod:`firmware.sim.labels`);
* a lidar row in ``lidar.csv``: ``seq, t_s, x, y, yaw`` then one column per beam (metres);

then a sealed session manifest and ``scene.json`` (the obstacles and the surface). ``DIR`` is an
object-store root: ``DIR/datasets/{car}/{session}/…``, so ``paddock train`` and the hub's import
read it as they read recorded sessions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from firmware.sim.expert import ExpertConfig, ExpertDriver
from firmware.sim.obstacles import random_obstacles
from firmware.sim.recording import put_shard, sealed_manifest, sim_frame
from firmware.sim.render import SURFACES, Randomization
from firmware.sim.tracks import get_track
from firmware.sim.world import World, WorldConfig
from schemas.dataset import (
    SessionManifest,
    ShardInfo,
    lidar_columns,
    lidar_key,
    session_manifest_key,
    session_prefix,
)
from schemas.shards import Sample

SCENE_FILE = "scene.json"


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """How much to capture and how varied. Frames are per session."""

    sessions: int = 8
    frames: int = 300
    record_every: int = 2  # world steps (30 Hz) between frames; every step while an obstacle is ahead
    on_track: int = 5  # obstacles on the road per scene
    beside: int = 4  # obstacles beside it
    noise_std: float = 0.3  # stationary std of the steering perturbation
    noise_time_s: float = 0.8
    drift_every_s: float = 4.0  # on average, a drift towards a border starts this often
    drift_s: float = 0.7  # and lasts this long (the camera then looks off the road)
    shots: float = 0.4  # fraction of frames taken as shots from 0.1–1.1 m behind an obstacle on the road
    far_shots: float = 0.3  # fraction of the shots taken from 1.6–3 m instead: "none", the obstacle small
    max_speed: float = 1.6
    jpeg_quality: int = 90
    per_shard: int = 500
    car: str = "sim-capture"
    prefix: str = "scene"

    def __post_init__(self) -> None:
        if not 1 <= self.sessions <= 10_000:
            raise ValueError(f"sessions must be in [1, 10000], got {self.sessions}")
        if not 1 <= self.frames <= 1_000_000:
            raise ValueError(f"frames must be in [1, 1000000], got {self.frames}")
        if self.record_every < 1 or self.per_shard < 1:
            raise ValueError("record_every and per_shard must be >= 1")
        if self.on_track < 0 or self.beside < 0:
            raise ValueError("obstacle counts must be >= 0")
        if not 0 <= self.shots < 1:
            raise ValueError("shots must be in [0, 1)")
        if not 0 <= self.far_shots <= 1:
            raise ValueError("far_shots must be in [0, 1]")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [1, 100]")


def _put(root: Path, key: str, data: bytes) -> None:
    """Write an object atomically (temp file, then rename): a crash never leaves half a shard."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _SessionWriter:
    """Shards, lidar rows and the manifest of one session."""

    def __init__(self, root: Path, car: str, session: str, config: CaptureConfig, beams: int) -> None:
        self.root, self.car, self.session, self.config = root, car, session, config
        self.samples: list[Sample] = []
        self.shards: list[ShardInfo] = []
        self.lidar = io.StringIO()
        self.csv = csv.writer(self.lidar, lineterminator="\n")
        self.csv.writerow(lidar_columns(beams))  # the layout the hub writes for recorded scans
        self.actions: list[tuple[float, float, float]] = []

    def add(self, sample: Sample, t_s: float, pose: tuple[float, float, float], ranges: np.ndarray) -> None:
        self.samples.append(sample)
        rec = sample.record
        self.actions.append((rec["steering"], rec["throttle"], rec["speed"]))
        self.csv.writerow(
            [sample.seq, f"{t_s:.4f}", *(f"{v:.4f}" for v in pose), *(f"{r:.3f}" for r in ranges)]
        )
        if len(self.samples) >= self.config.per_shard:
            self.flush()

    def put(self, key: str, data: bytes) -> None:
        _put(self.root, key, data)

    def flush(self) -> None:
        if not self.samples:
            return
        self.shards.append(put_shard(self.put, self.car, self.session, len(self.shards), self.samples))
        self.samples = []

    def seal(self, world: World, scene: dict[str, object]) -> SessionManifest:
        self.flush()
        prefix = session_prefix(self.car, self.session)
        _put(self.root, lidar_key(self.car, self.session), self.lidar.getvalue().encode())
        _put(self.root, prefix + SCENE_FILE, json.dumps(scene, indent=1).encode())
        manifest = sealed_manifest(world, self.car, self.session, self.shards, self.actions, world.time)
        _put(self.root, session_manifest_key(self.car, self.session), manifest.to_json())
        return manifest


def _record(
    world: World, writer: _SessionWriter, seq: int, action: tuple[float, float], t_s: float, quality: int
) -> None:
    """Render, label and scan the world as it is now: frame ``seq`` of the session."""
    state = world.state
    labels = {"labels": world.labels().to_dict()}
    sample = sim_frame(
        world, writer.car, writer.session, seq, round(t_s * 1e9), action, jpeg_quality=quality, extra=labels
    )
    writer.add(sample, t_s, (state.x, state.y, state.yaw), world.lidar())


def _drive(
    world: World,
    expert: ExpertDriver,
    writer: _SessionWriter,
    c: CaptureConfig,
    frames: int,
    rng: np.random.Generator,
    on_frame: Callable[[int], None] | None,
) -> int:
    """Drive the scene with the wandering expert, recording ``frames`` frames; return the count."""
    theta = 1.0 / c.noise_time_s
    sigma = c.noise_std * math.sqrt(2 * theta)
    noise, steps, seq = 0.0, 0, 0
    drift, drift_left = 0.0, 0
    last_pose: tuple[float, float] | None = None  # a stopped car is not recorded twice
    while seq < frames and world.time < 60.0 + frames:
        state = world.state
        action = expert.act(state)
        moved = last_pose is None or math.dist(last_pose, (state.x, state.y)) > 0.005
        if moved and (steps % c.record_every == 0 or world.labels().obstacle_ahead != "none"):
            last_pose = (state.x, state.y)
            _record(world, writer, seq, action, world.time, c.jpeg_quality)
            seq += 1
            if on_frame is not None:
                on_frame(seq)
        noise += -theta * noise * world.dt + sigma * math.sqrt(world.dt) * float(rng.standard_normal())
        if drift_left == 0 and rng.random() < world.dt / c.drift_every_s:
            drift, drift_left = float(rng.choice([-0.6, 0.6])), round(c.drift_s / world.dt)
        drift_left = max(0, drift_left - 1)
        # No perturbation while passing an obstacle: the point is to see it, not to hit it.
        wander = 0.0 if expert.is_passing(state) else noise + (drift if drift_left else 0.0)
        status = world.step(float(np.clip(action[0] + wander, -1, 1)), action[1])
        steps += 1
        if status.off_track or status.crashed:
            world.reset_to_track()
            expert.reset()
            noise = 0.0
    return seq


def _shots(
    world: World,
    writer: _SessionWriter,
    c: CaptureConfig,
    first: int,
    count: int,
    rng: np.random.Generator,
    on_frame: Callable[[int], None] | None,
) -> int:
    """Frames from 0.1–1.1 m behind obstacles on the road, roughly facing them; return the count.

    A share ``far_shots`` of them is taken from 1.6–3 m instead, beyond the corridor and its
    ambiguous band: frames labelled ``none`` that show the obstacle a few pixels wide ahead (the
    classifier's commonest mistake was to call those a kind, docs/perception.md)."""
    track = world.track
    on_road = [o for o in world.config.obstacles if track.on_track(np.array([[o.x, o.y]]))[0]]
    if not on_road:
        return 0
    car = world.config.car
    nose = car.length - car.rear_overhang - car.front_offset  # front reference point to the nose
    t0 = world.time
    for k in range(count):
        ob = on_road[int(rng.integers(len(on_road)))]
        p = track.project(ob.x, ob.y)
        far = rng.random() < c.far_shots
        gap = float(rng.uniform(1.6, 3.0) if far else rng.uniform(0.1, 1.1)) + ob.length / 2 + nose
        s = (p.s - gap) % track.length
        lateral = p.lateral + float(rng.uniform(-0.15, 0.15))
        world.place_car(100 * s / track.length, lateral, float(rng.uniform(-0.25, 0.25)))
        _record(world, writer, first + k, (0.0, 0.0), t0 + (k + 1) * world.dt, c.jpeg_quality)
        if on_frame is not None:
            on_frame(first + k + 1)
    return count


def capture_session(
    root: Path,
    track: str,
    session: str,
    *,
    seed: int,
    surface: str | None = None,
    config: CaptureConfig | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> SessionManifest:
    """Capture one randomised scene as session ``session`` under ``root``; return its manifest."""
    c = config or CaptureConfig()
    rng = np.random.default_rng(seed)
    the_track = get_track(track)
    obstacles = random_obstacles(the_track, rng, on_track=c.on_track, beside=c.beside)
    choices = (surface,) if surface else SURFACES
    randomization = Randomization(enabled=True, surfaces=True, surface_choices=choices)  # type: ignore[arg-type]
    world = World(the_track, WorldConfig(randomization=randomization, obstacles=obstacles), seed=seed)
    world.place_car(float(rng.uniform(0, 100)))  # keeps the look drawn at construction
    expert = ExpertDriver(
        world.track, world.config.car, ExpertConfig(max_speed=c.max_speed), obstacles=obstacles
    )
    writer = _SessionWriter(root, c.car, session, c, world.config.lidar.beams)
    shots = round(c.frames * c.shots)
    driven = _drive(world, expert, writer, c, c.frames - shots, rng, on_frame)
    _shots(world, writer, c, driven, c.frames - driven, rng, on_frame)
    scene = {
        "track": world.track.name,
        "seed": seed,
        "surface": world.renderer.surface,
        "obstacles": [asdict(o) for o in obstacles],
        "lidar": asdict(world.config.lidar),
    }
    return writer.seal(world, scene)


def capture(
    root: Path,
    track: str,
    config: CaptureConfig | None = None,
    *,
    seed: int = 0,
    on_frame: Callable[[int], None] | None = None,
) -> list[SessionManifest]:
    """Capture ``config.sessions`` scenes named ``{prefix}-{track}-{seed + i}``. Road surfaces go
    round :data:`SURFACES` (so every surface is in every few sessions); all else is random."""
    c = config or CaptureConfig()
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in Path(str(track)).stem)[:32] or "track"
    order = [SURFACES[int(i)] for i in np.random.default_rng(seed).permutation(len(SURFACES))]
    return [
        capture_session(
            root,
            track,
            f"{c.prefix}-{safe}-{seed + i}",
            seed=seed + i,
            surface=order[i % len(order)],
            config=c,
            on_frame=on_frame,
        )
        for i in range(c.sessions)
    ]
