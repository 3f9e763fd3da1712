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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from firmware.sim import ExpertConfig, ExpertDriver, Randomization, World, WorldConfig
from firmware.sim.recording import put_shard, sealed_manifest, sim_frame
from infra.store import ObjectStore
from schemas.dataset import SessionManifest, ShardInfo, session_manifest_key
from schemas.shards import Sample


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
            shards.append(put_shard(store.put, car, session, len(shards), samples))
            samples.clear()

    target = c.laps * 100.0
    status = world.status
    while status.total_progress < target and status.time < 120.0 * max(1.0, c.laps):
        state = world.state
        steering, throttle = expert.act(state)
        if steps % c.record_every == 0 and not status.off_track:
            progress = {"progress": round(status.progress, 3)}
            sample = sim_frame(
                world, car, session, seq, t_ns, (steering, throttle), mode=c.mode,
                jpeg_quality=c.jpeg_quality, extra=progress,
            )  # fmt: skip
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
    manifest = sealed_manifest(world, car, session, shards, actions, status.time)
    store.put(session_manifest_key(car, session), manifest.to_json())
    return manifest


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
