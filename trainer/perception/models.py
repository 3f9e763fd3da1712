"""The perception network: a MobileNet-style body shared by one classification head per task.

The body is :mod:`trainer.models`' building block (a strided stem, then depthwise-separable
blocks with batch norm and ReLU6), so the detector is as cheap on the car's CPU as the pilot and
quantises to int8 the same way. The input is the whole camera frame, resized to 60×80, normalised
to [-1, 1]; each head returns logits over its task's classes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainer.models import _separable
from trainer.perception import TASKS


class NetOptions(BaseModel):
    """Size of the network (the search tunes these)."""

    model_config = ConfigDict(extra="forbid")

    width_multiplier: float = Field(default=1.0, gt=0, le=4, description="channel scale")
    dropout: float = Field(default=0.2, ge=0, lt=1)
    hidden: int = Field(default=64, ge=8, le=1024, description="units of the dense layer before the heads")
    tasks: list[str] = Field(default_factory=lambda: list(TASKS), min_length=1)
    height: int = Field(default=60, ge=16, le=480)
    width: int = Field(default=80, ge=16, le=640)


class PerceptionNet(nn.Module):
    """``forward(x)`` → ``{task: logits [B, classes]}`` for an input ``[B, 3, H, W]`` in [-1, 1]."""

    def __init__(self, options: NetOptions | None = None) -> None:
        super().__init__()
        self.options = options or NetOptions()
        o = self.options
        for task in o.tasks:
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")

        def ch(c: int) -> int:
            return max(8, round(c * o.width_multiplier / 8) * 8)

        widths = [ch(16), ch(24), ch(32), ch(48), ch(64)]
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0])]
        layers.append(nn.ReLU6(inplace=True))
        for cin, cout in itertools.pairwise(widths):
            layers.append(_separable(cin, cout, 2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten())
        self.dense = nn.Sequential(
            nn.Dropout(o.dropout), nn.Linear(widths[-1] * 6, o.hidden), nn.ReLU(inplace=True)
        )
        self.heads = nn.ModuleDict({task: nn.Linear(o.hidden, len(TASKS[task])) for task in o.tasks})

    @property
    def tasks(self) -> Sequence[str]:
        return list(self.heads.keys())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.dense(self.features(x))
        return {task: head(h) for task, head in self.heads.items()}


class ExportWrapper(nn.Module):
    """The network as ONNX likes it: a tuple of softmax probabilities, one per task, in order."""

    def __init__(self, net: PerceptionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return tuple(torch.softmax(out[t], dim=1) for t in self.net.tasks)
