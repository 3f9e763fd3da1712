"""Export a trained DeepRacer policy to ONNX for the car, with a model card declaring its action space.

The graph takes one gray frame ``[1, 1, H, W]`` (scaled to [0, 1], as the card's normalisation
says) and gives three outputs: ``action`` (the raw policy: logits per discrete action, or the mean
``[steering_angle, speed]`` of a continuous one), and ``steering`` and ``throttle`` (``[1, 1]``, the
car's commands: the argmax's action, or the mean mapped linearly). A car that knows nothing about
action spaces drives it through the two linear outputs; the card's ``action_space`` says how
they were made (:meth:`schemas.model_card.ActionSpace.command` reproduces them from ``action``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from firmware.sim.physics import VehicleSpec, angle_deg_to_steering, speed_to_throttle
from schemas.model_card import ActionSpace, DiscreteAction, InputSpec, ModelCard, OutputSpec
from trainer.rl.files import ModelFileError, ModelFiles, load_model_dir

ONNX_FILE = "model.onnx"
CARD_FILE = "model_card.json"


def action_space_card(files: ModelFiles, car: VehicleSpec | None = None) -> ActionSpace:
    car = car or VehicleSpec()
    meta = files.metadata
    if meta.discrete_actions:
        actions = [
            DiscreteAction(
                steering_angle=a.steering_angle,
                speed=a.speed,
                steering=angle_deg_to_steering(a.steering_angle, car),
                throttle=speed_to_throttle(a.speed, car),
            )
            for a in meta.discrete_actions
        ]
        return ActionSpace(type="discrete", actions=actions)
    space = meta.action_space
    assert not isinstance(space, list)
    s, v = space.steering_angle, space.speed
    return ActionSpace(
        type="continuous",
        steering_angle=(s.low, s.high),
        speed=(v.low, v.high),
        steering=(angle_deg_to_steering(s.low, car), angle_deg_to_steering(s.high, car)),
        throttle=(speed_to_throttle(v.low, car), speed_to_throttle(v.high, car)),
    )


class _DiscretePolicy(nn.Module):
    steer: torch.Tensor
    throttle: torch.Tensor

    def __init__(self, policy: Any, card: ActionSpace) -> None:
        super().__init__()
        self.extractor = policy.pi_features_extractor
        self.latent = policy.mlp_extractor.policy_net
        self.head = policy.action_net
        self.register_buffer("steer", torch.tensor([[a.steering] for a in card.actions], dtype=torch.float32))
        self.register_buffer(
            "throttle", torch.tensor([[a.throttle] for a in card.actions], dtype=torch.float32)
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.head(self.latent(self.extractor(image)))
        best = torch.argmax(logits, dim=1)
        return logits, self.steer[best], self.throttle[best]


class _ContinuousPolicy(nn.Module):
    low: torch.Tensor
    high: torch.Tensor
    out_low: torch.Tensor
    out_high: torch.Tensor

    def __init__(self, actor: Any, card: ActionSpace) -> None:
        super().__init__()
        self.extractor = actor.features_extractor
        self.latent = actor.latent_pi
        self.mu = actor.mu
        assert card.steering_angle and card.speed and card.steering and card.throttle
        self.register_buffer("low", torch.tensor([card.steering_angle[0], card.speed[0]]))
        self.register_buffer("high", torch.tensor([card.steering_angle[1], card.speed[1]]))
        self.register_buffer("out_low", torch.tensor([card.steering[0], card.throttle[0]]))
        self.register_buffer("out_high", torch.tensor([card.steering[1], card.throttle[1]]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        squashed = torch.tanh(self.mu(self.latent(self.extractor(image))))  # SAC's mean, in [-1, 1]
        action = self.low + (squashed + 1) * 0.5 * (self.high - self.low)
        commands = self.out_low + (squashed + 1) * 0.5 * (self.out_high - self.out_low)
        return action, commands[:, 0:1], commands[:, 1:2]


def export(
    model_dir: Path, out: Path | None = None, car: VehicleSpec | None = None
) -> tuple[Path, ModelCard]:
    """Write ``model.onnx`` and ``model_card.json`` next to the trained model (or into ``out``)."""
    from stable_baselines3 import PPO, SAC

    from trainer.rl.clone import trained_model_path

    files = load_model_dir(model_dir)
    if files.metadata.uses_lidar:
        raise ModelFileError(
            f"{model_dir / 'model_metadata.json'}: sensor: LIDAR cannot drive a car: the car has "
            "no lidar and its model pilot feeds the camera image only; train with "
            "FRONT_FACING_CAMERA alone to deploy"
        )
    summary = _summary(model_dir)
    obs = summary.get("observation", {"width": 80, "height": 60})
    space = action_space_card(files, car)
    sac = files.metadata.training_algorithm == "sac"
    model: Any = (SAC if sac else PPO).load(trained_model_path(model_dir), device="cpu")
    net: nn.Module = _ContinuousPolicy(model.actor, space) if sac else _DiscretePolicy(model.policy, space)
    net.eval()
    out = out or model_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / ONNX_FILE
    # What the policy was trained on (a --set stack_size=N run leaves the file's value alone);
    # the car's pilot stacks its last frames as the card says.
    stack = int(obs.get("stack_size", files.hyperparameters.stack_size))
    dummy = torch.zeros(1, stack, int(obs["height"]), int(obs["width"]))
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice, on every export
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (dummy,),
            str(path),
            input_names=["image"],
            output_names=["action", "steering", "throttle"],
            dynamo=False,
        )
    card = ModelCard(
        architecture=f"deepracer-{files.metadata.training_algorithm}-{files.metadata.neural_network.lower()}",
        input=InputSpec(
            width=int(obs["width"]),
            height=int(obs["height"]),
            colour="gray",
            frames=stack if stack > 1 else None,
        ),
        outputs=[
            OutputSpec(name="steering", range=(-1.0, 1.0)),
            OutputSpec(name="throttle", range=(-1.0, 1.0)),
        ],
        description=f"AWS DeepRacer-style policy {files.directory.name}",
        training={
            k: summary[k] for k in ("track", "episodes", "steps", "elapsed_s", "parent") if k in summary
        }
        | {"kind": "rl", "algorithm": files.metadata.training_algorithm},
        action_space=space,
    )
    (out / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return path, card


def _summary(model_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((model_dir / "training.json").read_text())
        return data
    except (OSError, ValueError):
        return {}
