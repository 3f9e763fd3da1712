"""Record the simulator's expert driver into the hub's dataset layout (docs/wire.md "Storage layout").

Each session is one drive of a few laps: camera frames (JPEG) with the expert's action, written
as WebDataset shards with ``schemas.shards.write_shard`` (the hub's writer) plus a sealed session
manifest, so training reads simulated and real recordings the same way.

Pure imitation of a perfect driver never shows the model how to come back to the centre line, so
the car *executes* the expert's steering plus a slowly wandering perturbation (an
Ornstein–Uhlenbeck process) while the frame is *labelled* with the expert's own steering for what
the camera sees (noise injection, as in DART). Sessions differ in seed, start point and, with
``randomize``, lighting, colours and camera mount.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from firmware.sim import ExpertConfig, ExpertDriver, Randomization, World, WorldConfig
from infra.store import ObjectStore
from schemas.dataset import (
    SessionManifest,
    SessionStats,
    ShardInfo,
    session_manifest_key,
    shard_key,
    shard_name,
)
from schemas.messages import FrameRecord
from schemas.payloads import encode_jpeg
from schemas.shards import Sample, write_shard


def put_shard(store: ObjectStore, car: str, session: str, index: int, samples: list[Sample]) -> ShardInfo:
    """Write ``samples`` as shard ``index`` of the session (the hub's layout); return its manifest entry."""
    buf = io.BytesIO()
    write_shard(buf, samples)
    data = buf.getvalue()
    store.put(shard_key(car, session, index), data)
    return ShardInfo(
        name=shard_name(index),
        frames=len(samples),
        bytes=len(data),
        seq_first=samples[0].seq,
        seq_last=samples[-1].seq,
    )


@dataclass(frozen=True)
class RecordConfig:
    """How to record. Defaults give a few thousand varied frames in a few seconds of CPU."""

    laps: float = 2.0  # per session
    record_every: int = 2  # steps between recorded frames (the world steps at 30 Hz → 15 Hz)
    noise_std: float = 0.25  # stationary std of the steering perturbation
    noise_time_s: float = 0.6  # its correlation time
    randomize: bool = True  # lighting, colours, camera mount per session
    max_speed: float = 2.0  # the expert's speed on straights (m/s)
    jpeg_quality: int = 90
    per_shard: int = 500
    mode: str = "manual"  # the expert stands in for a human driver


def record_session(
    store: ObjectStore,
    track: str,
    car: str,
    session: str,
    *,
    seed: int = 0,
    config: RecordConfig | None = None,
    on_frame: Callable[[int], None] | None = None,
    expert: ExpertDriver | None = None,
) -> SessionManifest:
    """Drive ``config.laps`` laps with the expert and write them as one session; return its manifest.

    ``expert`` drives instead of the default expert (e.g. one that follows an optimised racing line)."""
    c = config or RecordConfig()
    rng = np.random.default_rng(seed)
    world = World(track, WorldConfig(randomization=Randomization(enabled=c.randomize)), seed=seed)
    world.reset(seed, start_progress=float(rng.uniform(0, 100)))
    if expert is None:
        expert = ExpertDriver(world.track, world.config.car, ExpertConfig(max_speed=c.max_speed), seed=seed)
    expert.reset()
    dt = world.dt
    theta = 1.0 / c.noise_time_s
    sigma = c.noise_std * math.sqrt(2 * theta)
    noise = 0.0
    samples: list[Sample] = []
    shards: list[ShardInfo] = []
    actions: list[tuple[float, float, float]] = []
    steps = 0
    seq = 0
    t_ns = 0

    def flush() -> None:
        if samples:
            shards.append(put_shard(store, car, session, len(shards), samples))
            samples.clear()

    target = c.laps * 100.0
    status = world.status
    while status.total_progress < target and status.time < 120.0 * max(1.0, c.laps):
        state = world.state
        steering, throttle = expert.act(state)
        if steps % c.record_every == 0 and not status.off_track:
            sample = _frame(world, c, car, session, seq, t_ns, (steering, throttle))
            samples.append(sample)
            actions.append((sample.record["steering"], sample.record["throttle"], float(state.speed)))
            seq += 1
            if on_frame is not None:
                on_frame(seq)
            if len(samples) >= c.per_shard:
                flush()
        noise += -theta * noise * dt + sigma * math.sqrt(dt) * float(rng.standard_normal())
        status = world.step(float(np.clip(steering + noise, -1, 1)), throttle)
        steps += 1
        t_ns += round(dt * 1e9)
        if status.off_track or status.crashed:
            status = world.reset_to_track()
            expert.reset()
            noise = 0.0
    flush()
    manifest = _manifest(world, car, session, shards, actions, status.time)
    store.put(session_manifest_key(car, session), manifest.to_json())
    return manifest


def _frame(
    world: World, c: RecordConfig, car: str, session: str, seq: int, t_ns: int, action: tuple[float, float]
) -> Sample:
    """The camera image now, with the expert's action and the ground truth, as one training frame."""
    state, status = world.state, world.status
    image = world.render()
    record = FrameRecord(
        car=car,
        session=session,
        seq=seq,
        t_capture_ns=t_ns,
        steering=float(np.clip(action[0], -1, 1)),
        throttle=float(np.clip(action[1], -1, 1)),
        mode=c.mode,
        speed=float(state.speed),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
    ).to_dict() | {
        "track": world.track.name,
        "x": round(state.x, 4),
        "y": round(state.y, 4),
        "yaw": round(state.yaw, 4),
        "progress": round(status.progress, 3),
    }
    return Sample(seq=seq, jpeg=encode_jpeg(image, c.jpeg_quality), record=record)


def _manifest(
    world: World,
    car: str,
    session: str,
    shards: list[ShardInfo],
    actions: list[tuple[float, float, float]],
    duration_s: float,
) -> SessionManifest:
    seq = len(actions)
    arr = np.asarray(actions, dtype=np.float64).reshape(-1, 3)
    return SessionManifest(
        car=car,
        session=session,
        frame_count=seq,
        seq_first=0 if seq else None,
        seq_last=seq - 1 if seq else None,
        shards=shards,
        stats=SessionStats(
            steering_mean=float(arr[:, 0].mean()) if seq else None,
            steering_std=float(arr[:, 0].std()) if seq else None,
            throttle_mean=float(arr[:, 1].mean()) if seq else None,
            throttle_std=float(arr[:, 1].std()) if seq else None,
            speed_mean=float(arr[:, 2].mean()) if seq else None,
            duration_s=duration_s,
            width=world.config.camera.width,
            height=world.config.camera.height,
        ),
        state="sealed",
    )


def record_expert(
    store: ObjectStore,
    track: str,
    *,
    sessions: int = 4,
    car: str = "sim-expert",
    prefix: str = "expert",
    seed: int = 0,
    config: RecordConfig | None = None,
    on_frame: Callable[[int], None] | None = None,
    expert: ExpertDriver | None = None,
) -> list[SessionManifest]:
    """Record ``sessions`` sessions named ``{prefix}-{track}-{seed + i}``, seeded ``seed + i``."""
    safe_track = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(track).rsplit("/", 1)[-1])
    safe_track = safe_track.removesuffix("-npy")[:32] or "track"
    return [
        record_session(
            store,
            track,
            car,
            f"{prefix}-{safe_track}-{seed + i}",
            seed=seed + i,
            config=config,
            on_frame=on_frame,
            expert=expert,
        )
        for i in range(sessions)
    ]
