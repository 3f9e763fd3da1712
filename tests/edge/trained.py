"""A tiny pilot trained in the test, the way paddock's trainer learns: behavioural cloning of the
simulator's expert, preprocessing every frame with the model card (schemas.model_card.preprocess,
the function the car uses), exported to ONNX.

The data: the expert drives the track in the simulator; every few seconds its steering is
disturbed for a second, so the recording also shows how to come back to the line (labels are
always the undisturbed expert's). A small CNN learns steering and throttle from 80×60 images.
"""

import io
import warnings
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.model_card import InputSpec, ModelCard, OutputSpec, preprocess

if TYPE_CHECKING:
    from firmware.sim import World

CARD = ModelCard(
    architecture="tiny-cnn",
    input=InputSpec(width=80, height=60),
    outputs=[OutputSpec(name="steering"), OutputSpec(name="throttle")],
    description="behavioural clone of the sim expert, trained in the test",
)


@cache
def tiny_pilot(track: str = "oval", frames: int = 1500, steps: int = 300, seed: int = 0) -> bytes:
    import torch
    from torch import nn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is faster on a busy machine
    try:
        return _train(track, frames, steps, seed, torch, nn)
    finally:
        torch.set_num_threads(threads)


def expert_drive(track: str, frames: int, seed: int) -> Iterator[tuple["World", float, float]]:
    """The simulator's expert driving ``track`` for ``frames`` steps, its steering disturbed one
    second in three: yields the world before each step and the expert's (undisturbed) action."""
    from firmware.sim import ExpertDriver, World

    world = World(track, seed=seed)
    expert = ExpertDriver(world.track, world.config.car)
    rng = np.random.default_rng(seed)
    disturbance = 0.0
    for step in range(frames):
        steering, throttle = expert.act(world.state)
        yield world, steering, throttle
        if step % 30 == 0:
            disturbance = float(rng.normal(0.0, 0.3))
        applied = steering + (disturbance if step % 90 < 30 else 0.0)
        if world.step(float(np.clip(applied, -1, 1)), throttle).off_track:
            world.reset_to_track()


def _train(track: str, frames: int, steps: int, seed: int, torch: Any, nn: Any) -> bytes:
    images, labels = [], []
    for world, steering, throttle in expert_drive(track, frames, seed):
        images.append(preprocess(world.render(), CARD.input))
        labels.append((steering, throttle))
    x = torch.tensor(np.stack(images))
    y = torch.tensor(np.asarray(labels, dtype=np.float32))

    class Net(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 5, 2), nn.ReLU(),
                nn.Conv2d(8, 16, 3, 2), nn.ReLU(),
                nn.Conv2d(16, 16, 3, 2), nn.ReLU(),
                nn.Flatten(),
            )  # fmt: skip
            n = self.features(torch.zeros(1, 3, 60, 80)).shape[1]
            self.hidden = nn.Sequential(nn.Linear(n, 32), nn.ReLU())
            self.steering = nn.Linear(32, 1)
            self.throttle = nn.Linear(32, 1)

        def forward(self, image: Any) -> tuple[Any, Any]:
            h = self.hidden(self.features(image))
            return self.steering(h), self.throttle(h)

    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        s, t = net(x[idx])
        loss = ((s[:, 0] - y[idx, 0]) ** 2).mean() + ((t[:, 0] - y[idx, 1]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, 60, 80),),
            buf,
            input_names=["image"],
            output_names=["steering", "throttle"],
            dynamic_axes={"image": {0: "batch"}},
            dynamo=False,
        )
    return buf.getvalue()
