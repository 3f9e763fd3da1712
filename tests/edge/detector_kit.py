"""A small detector trained in the test the way `paddock perceive train` trains one: frames of the
simulator labelled by its ground truth (firmware/sim/labels.py), the perception network of
trainer/perception, exported to ONNX with the card the car deploys it by.

The scene: obstacles on the centre line of a track, the default look (the simulated car's camera
sees the same). Half the frames are shots from 0.05–2 m behind an obstacle, roughly facing it (so
"box ahead" is not drowned in "none"), half from anywhere on the track.
"""

import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from schemas.model_card import ModelCard

# "Ahead" for this detector: within 1.5 m of the nose (the car's rule then waits for its lidar to
# say the obstacle is within detector.distance_m), so a car at speed sees it in time to brake.
AHEAD_M = 1.5


def scene_frames(
    track: str, obstacles: tuple[float, ...], frames: int, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images (N×60×80×3, as the trainer's dataset keeps them) and class indices per task."""
    import cv2

    from firmware.sim import World, WorldConfig
    from firmware.sim.labels import LabelConfig
    from firmware.sim.obstacles import place_obstacles
    from trainer.perception import TASKS

    world = World(track, seed=seed)
    placed = place_obstacles(world.track, obstacles, ["center"] * len(obstacles))
    world = World(track, WorldConfig(obstacles=placed), seed=seed)
    rng = np.random.default_rng(seed)
    length = world.track.length
    images, obstacle, surface = [], [], []
    for k in range(frames):
        if k % 2 == 0:
            ob = placed[int(rng.integers(len(placed)))]
            p = world.track.project(ob.x, ob.y)
            s = (p.s - float(rng.uniform(0.3, 2.6))) % length
        else:
            s = float(rng.uniform(0, length))
        world.place_car(100 * s / length, float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.2, 0.2)))
        labels = world.labels(LabelConfig(ahead_m=AHEAD_M))
        images.append(cv2.resize(world.render(), (80, 60), interpolation=cv2.INTER_AREA))
        obstacle.append(TASKS["obstacle"].index(labels.obstacle_ahead))
        surface.append(TASKS["surface"].index(labels.surface_ahead))
    labels_by_task = {"obstacle": np.asarray(obstacle, np.int64), "surface": np.asarray(surface, np.int64)}
    return np.stack(images).astype(np.uint8), labels_by_task


@cache
def tiny_detector(
    track: str = "oval", obstacles: tuple[float, ...] = (15.0, 60.0), frames: int = 800, seed: int = 0
) -> tuple[bytes, ModelCard]:
    """ONNX bytes and the deploy card of a detector trained on ``track`` with boxes at ``obstacles``."""
    from trainer.perception.dataset import PerceptionTable
    from trainer.perception.export import detector_model_card, export_onnx
    from trainer.perception.models import NetOptions
    from trainer.perception.train import TrainConfig, train

    images, labels = scene_frames(track, obstacles, frames, seed)
    cut = frames * 4 // 5

    def table(lo: int, hi: int) -> PerceptionTable:
        n = hi - lo
        return PerceptionTable(
            images=images[lo:hi],
            labels={t: v[lo:hi] for t, v in labels.items()},
            sessions=["kit/scene"] * n,
            seqs=np.arange(n),
            records=[{}] * n,
        )

    config = TrainConfig(
        epochs=8, patience=8, batch_size=32, lr=3e-3, net=NetOptions(width_multiplier=0.5, hidden=32)
    )
    result = train({"train": table(0, cut), "val": table(cut, frames)}, config)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(result.model, Path(tmp) / "detector.onnx")
        data = path.read_bytes()
    return data, detector_model_card(result.model, {"val_score": result.best_score, "ahead_m": AHEAD_M})
