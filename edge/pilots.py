"""Pilots: what decides steering and throttle in autopilot mode.

* :class:`ModelPilot` runs a deployed network through a runtime, preprocessing each frame with
  the model card (``schemas.model_card.preprocess``, the trainer's own function) and decoding the
  outputs with ``decode_outputs``.
* Other pilots are plugins: an entry point in the group ``paddock.pilots`` names a factory
  ``factory(body, config) -> Pilot`` (:mod:`edge.plugins`). The simulator's ``expert`` pilot is
  one, declared like any other (it drives from the sim's ground truth, to record training laps).

A pilot runs on the control thread, once per tick: it must not block on I/O.
"""

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge import plugins
from edge.runtimes import LoadedModel
from firmware.camera import Frame
from schemas.model_card import FrameStack, ModelManifest, decode_outputs, output_confidence, preprocess

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """A pilot's wish for this tick. ``throttle`` None means "use the configured autopilot throttle"."""

    steering: float
    throttle: float | None = None
    inference_ms: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    confidence: float | None = None  # 0..1 where the model gives one (categorical outputs)
    # The network's feature values for this frame, where its card declares them (the drift monitor's)
    features: np.ndarray | None = None


class Pilot(ABC):
    name: str = "pilot"
    needs_frame: bool = True

    @property
    def ref(self) -> str | None:
        """What telemetry and frame records call this pilot (a model's name:version)."""
        return self.name

    @abstractmethod
    def act(self, frame: Frame | None) -> Decision: ...

    def close(self) -> None:  # noqa: B027 - most pilots hold nothing
        pass


class ModelPilot(Pilot):
    """A deployed model: card-driven preprocessing, one inference, card-driven decoding."""

    needs_frame = True

    def __init__(self, manifest: ModelManifest, model: LoadedModel) -> None:
        self.manifest = manifest
        self.model = model
        self.name = "model"
        self.has_throttle = manifest.card.output("throttle") is not None
        self._frames = FrameStack(manifest.card.input)  # a model of several frames gets the last ones
        self._last: tuple[int, Decision] | None = None  # (frame index, the decision a repeat gets)
        spec = manifest.card.features
        self._features = (spec.tensor, spec.size) if spec is not None else None

    @property
    def ref(self) -> str:
        return self.manifest.ref

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    def infer(self, image: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        raw = self.model.run(self._frames.push(preprocess(image, self.manifest.card.input)))
        return decode_outputs(self.manifest.card, raw), raw

    def act(self, frame: Frame | None) -> Decision:
        if frame is None:
            raise ValueError("the model pilot needs a camera frame")
        # A tick that sees the frame of the previous one (the loop ticks faster than the camera
        # captures) takes the decision made on it: the same input gives the same outputs, so the
        # network does not run again (nor does a model's frame stack take the frame twice).
        if self._last is not None and self._last[0] == frame.index:
            return self._last[1]
        t0 = time.perf_counter()
        values, raw = self.infer(frame.image)
        ms = (time.perf_counter() - t0) * 1000
        confidence = output_confidence(self.manifest.card, raw)
        features = None
        if self._features is not None:  # a reference only: the telemetry samples it at its own rate
            features = raw.get(self._features[0])
            if features is not None and features.size != self._features[1]:
                features = None
        steering, throttle = values.get("steering", 0.0), values.get("throttle")
        # A repeated tick reports no inference time: it ran none.
        again = Decision(steering, throttle, None, confidence=confidence, features=features)
        self._last = (frame.index, again)
        return Decision(steering, throttle, ms, confidence=confidence, features=features)

    def close(self) -> None:
        self.model.close()


PilotFactory = Callable[[Any, Any], Pilot]  # (body, CarConfig) -> Pilot; see edge.plugins


def pilot_plugins() -> dict[str, PilotFactory]:
    """Pilot factories of the group ``paddock.pilots`` that load (the expert among them)."""
    found: dict[str, PilotFactory] = {}
    for name, plugin in plugins.plugins(plugins.PILOTS).items():
        try:
            found[name] = plugin.load()
        except plugins.PluginError as exc:
            log.warning("%s", exc)
    return found
