"""A small pilot of the trainer's own architecture, trained in the test on the simulator's expert, and
the input statistics (pixels and the network's features) of what a car sees on the oval.

Trained briefly, it already tells a bend to the left from one to the right, which is what its
features notice when the oval is driven the other way round: the pixels' histograms stay the same.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from firmware.sim.render import Randomization, Renderer
from firmware.sim.tracks import get_track
from schemas.input_stats import FeatureStatsAccumulator, InputStats, InputStatsAccumulator
from schemas.model_card import preprocess
from tests.edge.trained import expert_drive as disturbed_expert
from trainer.models import PilotModel, build_model
from trainer.train import training_feature_stats

OPTIONS = {"camera_width": 160, "camera_height": 120, "width": 64, "height": 32, "crop_top": 40}
Pose = tuple[float, float, float]


@dataclass(frozen=True)
class SimPilot:
    model: PilotModel
    train: InputStats  # of its training frames (every 3rd), as the trainer puts them in the card


def expert_drive(seed: int, frames: int) -> tuple[list[Pose], list[tuple[float, float]]]:
    """The expert's poses and actions on the oval (tests/edge/trained.py's disturbed drive)."""
    poses, labels = [], []
    for world, steering, throttle in disturbed_expert("oval", frames, seed):
        s = world.car.state
        poses.append((s.x, s.y, s.yaw))
        labels.append((steering, throttle))
    return poses, labels


def camera(poses: list[Pose], *, reverse: bool = False, dim: bool = False) -> list[np.ndarray]:
    """The camera images at ``poses``; ``reverse``: facing the other way round (the oval driven
    clockwise), ``dim``: the lights dimmed and the floor and road in new colours."""
    renderer = Renderer(get_track("oval"))
    if dim:
        renderer.randomize(np.random.default_rng(3), Randomization(enabled=True, brightness=(0.45, 0.45)))
    return [renderer.render(x, y, yaw + (np.pi if reverse else 0.0)) for x, y, yaw in poses]


@cache
def sim_pilot(frames: int = 600, steps: int = 100, seed: int = 0) -> SimPilot:
    """The mobilenet pilot (half width) cloned from the expert, and its training statistics."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is faster on a busy machine
    try:
        torch.manual_seed(seed)
        model = build_model("mobilenet", {**OPTIONS, "width_multiplier": 0.5})
        poses, labels = expert_drive(seed, frames)
        images = camera(poses)
        x = torch.tensor(np.stack([preprocess(im, model.spec) for im in images]))
        y = torch.tensor(np.asarray(labels, dtype=np.float32))
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        pick = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(x), (32,), generator=pick)
            loss = model.loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        model.eval()
        sample = images[::3]
        stats = _pixels(sample).model_copy(update={"features": training_feature_stats(model, sample)})
        return SimPilot(model, stats)
    finally:
        torch.set_num_threads(threads)


def drive_stats(
    model: PilotModel, seed: int, frames: int, *, reverse: bool = False, dim: bool = False
) -> InputStats:
    """Input statistics with the model's features of ``frames`` views of another drive of the
    expert (``seed``), one every ten steps, as a car's telemetry summarises them."""
    poses, _ = expert_drive(seed, frames * 10)
    images = camera(poses[::10], reverse=reverse, dim=dim)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        features = FeatureStatsAccumulator()
        with torch.no_grad():
            x = torch.from_numpy(np.stack([preprocess(im, model.spec) for im in images]))
            for row in model.feature_values(x).numpy():
                features.add(row)
    finally:
        torch.set_num_threads(threads)
    return _pixels(images).model_copy(update={"features": features.stats()})


def _pixels(images: list[np.ndarray]) -> InputStats:
    acc = InputStatsAccumulator()
    for image in images:
        acc.add(image)
    stats = acc.stats()
    assert stats is not None
    return stats
