"""Pilots: what decides steering and throttle in autopilot mode.

* :class:`ModelPilot` runs a deployed network through a runtime, preprocessing each frame with
  the model card (``schemas.model_card.preprocess``, the trainer's own function) and decoding the
  outputs with ``decode_outputs``.
* Other pilots are plugins: an entry point in the group ``paddock.pilots`` names a factory
  ``factory(body) -> Pilot``. The simulator's ``expert`` pilot is one (it drives from the sim's
  ground truth, to record training laps).

A pilot runs on the control thread, once per tick: it must not block on I/O.
"""

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from edge.runtimes import LoadedModel
from firmware.camera import Frame
from schemas.model_card import ModelManifest, decode_outputs, preprocess

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "paddock.pilots"


@dataclass(frozen=True, slots=True)
class Decision:
    """A pilot's wish for this tick. ``throttle`` None means "use the configured autopilot throttle"."""

    steering: float
    throttle: float | None = None
    inference_ms: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


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

    @property
    def ref(self) -> str:
        return self.manifest.ref

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    def infer(self, image: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        sample = preprocess(image, self.manifest.card.input)
        raw = self.model.run(sample)
        return decode_outputs(self.manifest.card, raw), raw

    def act(self, frame: Frame | None) -> Decision:
        if frame is None:
            raise ValueError("the model pilot needs a camera frame")
        t0 = time.perf_counter()
        values, _ = self.infer(frame.image)
        ms = (time.perf_counter() - t0) * 1000
        return Decision(values.get("steering", 0.0), values.get("throttle"), ms)

    def close(self) -> None:
        self.model.close()


PilotFactory = Callable[[Any], Pilot]


def pilot_plugins() -> dict[str, PilotFactory]:
    """Pilot factories registered by installed packages (entry point group ``paddock.pilots``)."""
    found: dict[str, PilotFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:
            log.warning("pilot plugin %s failed to load: %s", ep.name, exc)
    return found
