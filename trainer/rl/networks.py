"""DeepRacer's ``neural_network`` presets as stable-baselines3 feature extractors.

DeepRacer's presets are small convolutional stacks followed by a dense layer; these keep their depth
(3, 5 and 7 convolutions) scaled to the 60×80 grayscale observation paddock trains on (see
docs/rl.md for why not DeepRacer's 120×160). With a lidar sensor a small dense branch reads the
ranges and is concatenated with the camera's features, as DeepRacer's sensor fusion does.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

# (out_channels, kernel, stride) per convolution, then the dense layer's width.
PRESETS: dict[str, tuple[list[tuple[int, int, int]], int]] = {
    "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512),
    "DEEP_CONVOLUTIONAL_NETWORK": ([(32, 5, 2), (32, 3, 1), (64, 3, 2), (64, 3, 1), (64, 3, 2)], 512),
    "DEEP_CONVOLUTIONAL_NETWORK_DEEP": (
        [(32, 5, 2), (32, 3, 1), (64, 3, 1), (64, 3, 2), (64, 3, 1), (128, 3, 2), (128, 3, 1)],
        512,
    ),
}


def conv_stack(in_channels: int, preset: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for out, kernel, stride in PRESETS[preset][0]:
        layers += [nn.Conv2d(channels, out, kernel, stride), nn.ReLU()]
        channels = out
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


class DeepRacerExtractor(BaseFeaturesExtractor):
    """Camera (``(stack, H, W)`` uint8, already scaled to [0, 1] by SB3) → conv stack → dense;
    for a dict observation, plus ``lidar`` → dense(64), concatenated."""

    def __init__(
        self, observation_space: spaces.Space[Any], preset: str = "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW"
    ) -> None:
        camera_space = (
            observation_space["camera"] if isinstance(observation_space, spaces.Dict) else observation_space
        )
        lidar_space = observation_space["lidar"] if isinstance(observation_space, spaces.Dict) else None
        assert camera_space.shape is not None
        dense = PRESETS[preset][1]
        lidar_width = 64 if lidar_space is not None else 0
        super().__init__(observation_space, dense + lidar_width)
        self.cnn = conv_stack(camera_space.shape[0], preset)
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, *camera_space.shape)).shape[1]
        self.dense = nn.Sequential(nn.Linear(flat, dense), nn.ReLU())
        self.lidar: nn.Module | None = None
        if lidar_space is not None:
            assert lidar_space.shape is not None
            self.lidar = nn.Sequential(nn.Linear(lidar_space.shape[0], 64), nn.ReLU())

    def forward(self, observations: Any) -> torch.Tensor:
        if isinstance(observations, dict):
            camera = self.dense(self.cnn(observations["camera"]))
            assert self.lidar is not None
            fused: torch.Tensor = torch.cat([camera, self.lidar(observations["lidar"])], dim=1)
            return fused
        features: torch.Tensor = self.dense(self.cnn(observations))
        return features
