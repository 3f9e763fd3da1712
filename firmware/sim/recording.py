"""A simulated frame's record, a session's shards and its manifest: the one copy that both the
expert recorder (``trainer/record.py``) and the perception capture (``firmware/sim/capture.py``)
write sessions with, in the hub's dataset layout (docs/wire.md, "Storage layout").

* :func:`sim_frame` — the camera image now as a WebDataset sample: a :class:`FrameRecord` with
  the action, the speed and the image size, plus the simulator's ground truth (track, pose) and
  whatever the caller adds (progress, labels);
* :func:`put_shard` — samples as shard ``index`` of a session, through any ``put(key, bytes)``
  (an object store's, or an atomic file write), returning its manifest entry;
* :func:`sealed_manifest` — the sealed :class:`SessionManifest` with the actions' statistics.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from firmware.sim.world import World
from schemas.dataset import SessionManifest, SessionStats, ShardInfo, shard_key, shard_name
from schemas.messages import FrameRecord
from schemas.payloads import encode_jpeg
from schemas.shards import Sample, write_shard

Put = Callable[[str, bytes], None]


def sim_frame(
    world: World,
    car: str,
    session: str,
    seq: int,
    t_ns: int,
    action: tuple[float, float],
    *,
    mode: str = "manual",
    jpeg_quality: int = 90,
    extra: dict[str, Any] | None = None,
) -> Sample:
    """The camera image now, with ``action`` and the ground truth, as one training frame."""
    state = world.state
    image = world.render()
    record = FrameRecord(
        car=car,
        session=session,
        seq=seq,
        t_capture_ns=t_ns,
        steering=float(np.clip(action[0], -1, 1)),
        throttle=float(np.clip(action[1], -1, 1)),
        mode=mode,
        speed=float(state.speed),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
    ).to_dict() | {
        "track": world.track.name,
        "x": round(state.x, 4),
        "y": round(state.y, 4),
        "yaw": round(state.yaw, 4),
        **(extra or {}),
    }
    return Sample(seq=seq, jpeg=encode_jpeg(image, jpeg_quality), record=record)


def put_shard(put: Put, car: str, session: str, index: int, samples: Sequence[Sample]) -> ShardInfo:
    """Write ``samples`` as shard ``index`` of the session; return its manifest entry."""
    buf = io.BytesIO()
    write_shard(buf, list(samples))
    data = buf.getvalue()
    put(shard_key(car, session, index), data)
    return ShardInfo(
        name=shard_name(index),
        frames=len(samples),
        bytes=len(data),
        seq_first=samples[0].seq,
        seq_last=samples[-1].seq,
    )


def sealed_manifest(
    world: World,
    car: str,
    session: str,
    shards: list[ShardInfo],
    actions: Sequence[tuple[float, float, float]],
    duration_s: float,
) -> SessionManifest:
    """The sealed manifest of a session whose frames had these (steering, throttle, speed)."""
    n = len(actions)
    a = np.asarray(actions, dtype=np.float64).reshape(-1, 3)
    cam = world.config.camera
    return SessionManifest(
        car=car,
        session=session,
        frame_count=n,
        seq_first=0 if n else None,
        seq_last=n - 1 if n else None,
        shards=shards,
        stats=SessionStats(
            steering_mean=float(a[:, 0].mean()) if n else None,
            steering_std=float(a[:, 0].std()) if n else None,
            throttle_mean=float(a[:, 1].mean()) if n else None,
            throttle_std=float(a[:, 1].std()) if n else None,
            speed_mean=float(a[:, 2].mean()) if n else None,
            duration_s=duration_s,
            width=cam.width,
            height=cam.height,
        ),
        state="sealed",
    )
