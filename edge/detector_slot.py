"""The detector's model slot: the hot-swap pipeline of :mod:`edge.hotswap`, for classifiers.

The pilot's :class:`~edge.hotswap.ModelManager` does the work (signature, size and sha256 checks,
the atomic cache, loading, warm-up and smoke test off the control loop, the swap between two
ticks, the last good model at boot); this module gives it the detector's own parts: the card kind
it takes (``classifier``), its cache directory, its installer (the loop's
:class:`~edge.detector.DetectorStage`) and its events, which carry ``slot: detector``. Its model
topics are ``cars/{car}/detector`` and ``groups/{group}/detector``; its state goes to
``cars/{car}/detector/state``.
"""

from collections.abc import Callable
from typing import Any

from edge.config import CarConfig
from edge.detector import DETECTOR_SLOT, Detector, DetectorStage
from edge.hotswap import Loaded, ModelManager, model_manager
from edge.loop import ControlLoop
from edge.trust import TrustPolicy
from schemas.messages import ModelState


def detector_manager(
    config: CarConfig,
    loop: ControlLoop,
    stage: DetectorStage,
    trust: TrustPolicy,
    *,
    latest_frame: Callable[[], Any],
    on_event: Callable[[dict[str, Any]], None],
    on_state: Callable[[ModelState], None],
) -> ModelManager:
    """A model manager whose models are detectors, installed into ``stage``.

    ``trust`` keeps its own sequences (not the pilot's file): each slot accepts only envelopes newer
    than the last one it took, whatever the hub numbers the other slot's with."""

    def install(loaded: Loaded, on_installed: Callable[[int, int], None]) -> None:
        stage.install(Detector(loaded.pilot.manifest, loaded.pilot.model), on_installed)

    def event(e: dict[str, Any]) -> None:
        on_event({**e, "slot": DETECTOR_SLOT})

    return model_manager(
        config,
        loop,
        config.detector_cache_dir,
        trust,
        latest_frame=latest_frame,
        on_event=event,
        on_state=on_state,
        kind="classifier",
        install=install,
    )
