"""Synthetic recorded sessions in the hub's layout, for tests and benchmarks.

Each frame shows a grey road on grass whose position and bend follow the recorded steering, so a
model can learn the mapping in a few epochs. Shards are written with ``schemas.shards.write_shard``,
the hub's own writer, with a session manifest beside them.
"""

import cv2
import numpy as np
from numpy.typing import NDArray

from infra.store import ObjectStore
from schemas.dataset import SessionManifest, session_manifest_key
from schemas.payloads import encode_jpeg
from schemas.shards import Sample
from trainer.record import put_shard


def road_image(
    steering: float, rng: np.random.Generator, width: int = 160, height: int = 120
) -> NDArray[np.uint8]:
    img = np.empty((height, width, 3), dtype=np.uint8)
    horizon = height // 3
    img[:horizon] = (135, 180, 235)
    img[horizon:] = (60, 140, 60)
    cx = width / 2
    top_x = cx + steering * width * 0.45
    bottom_x = cx - steering * width * 0.25
    road = np.array(
        [
            [bottom_x - width * 0.35, height - 1],
            [bottom_x + width * 0.35, height - 1],
            [top_x + width * 0.08, horizon],
            [top_x - width * 0.08, horizon],
        ],
        dtype=np.int32,
    )
    cv2.fillConvexPoly(img, road, (110, 110, 110))
    cv2.line(img, (int(bottom_x), height - 1), (int(top_x), horizon), (240, 240, 240), 2)
    noise = rng.integers(-8, 9, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def frame_record(car: str, session: str, seq: int, steering: float, throttle: float) -> dict[str, object]:
    return {
        "car": car,
        "session": session,
        "seq": seq,
        "t_capture_ns": seq * 50_000_000,
        "steering": steering,
        "throttle": throttle,
        "mode": "manual",
        "width": 160,
        "height": 120,
    }


def write_session(
    store: ObjectStore,
    car: str,
    session: str,
    frames: int,
    *,
    seed: int = 0,
    per_shard: int = 50,
    straight_fraction: float = 0.6,
) -> SessionManifest:
    """Record ``frames`` synthetic frames as shards + manifest; most frames drive nearly straight."""
    rng = np.random.default_rng(seed)
    samples = []
    for seq in range(frames):
        straight = rng.random() < straight_fraction
        steering = float(np.clip(rng.normal(0, 0.05) if straight else rng.uniform(-1, 1), -1, 1))
        throttle = float(np.clip(0.5 - 0.3 * abs(steering) + rng.normal(0, 0.02), -1, 1))
        jpeg = encode_jpeg(road_image(steering, rng))
        samples.append(Sample(seq=seq, jpeg=jpeg, record=frame_record(car, session, seq, steering, throttle)))
    shards = [
        put_shard(store.put, car, session, index, samples[start : start + per_shard])
        for index, start in enumerate(range(0, frames, per_shard))
    ]
    manifest = SessionManifest(
        car=car,
        session=session,
        frame_count=frames,
        seq_first=0,
        seq_last=frames - 1,
        shards=shards,
        state="sealed",
    )
    store.put(session_manifest_key(car, session), manifest.to_json())
    return manifest
