"""Retraining triggers: policies in ``[mlops]`` turn drift, degradation, new feedback frames or a
schedule into a queued train job on the model's dataset (plus the feedback dataset when there is
one), and the job's request says why it ran (``requested_by``), so the lineage of the model it
produces (dataset → job → model) records the trigger. At most one triggered job per model name in
``retrain_cooldown_s``, whatever triggered it."""

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hub.config import MlopsConfig
from hub.storage.catalog import Catalog
from hub.telemetry.metrics import ModelHealthRow
from schemas.messages import DriftEvent, TrainParams

log = logging.getLogger(__name__)

TRIGGERED = "mlops:"  # how every triggered job's requested_by begins (hub.mlops.release looks)
RequestJob = Callable[[TrainParams, str], dict[str, Any]]  # params, requested_by -> job entry
DatasetFor = Callable[[str], str]  # the model's dataset -> the dataset to train on (with feedback)


class RetrainPolicy:
    def __init__(
        self,
        config: MlopsConfig,
        catalog: Catalog,
        request: RequestJob,
        dataset_for: DatasetFor = lambda name: name,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.request = request
        self.dataset_for = dataset_for
        self._last: dict[str, float] = {}  # model name -> when a job was last triggered
        self._scheduled: dict[str, float] = {}  # model ref -> when the schedule last ran it
        self._feedback: dict[str, int] = {}  # model ref -> feedback frames since its last trigger
        self.triggered: list[dict[str, Any]] = []

    def on_event(self, car: str, event: DriftEvent) -> dict[str, Any] | None:
        if not (self.config.retrain_on_drift and event.drifted):
            return None
        why = f"input drift on {car}, {event.model} {event.why()}"
        return self.trigger(event.model, why)

    def on_health(self, rows: Sequence[ModelHealthRow]) -> list[dict[str, Any]]:
        """Degraded models (``retrain_on_degradation``)."""
        if not self.config.retrain_on_degradation:
            return []
        out = []
        for r in rows:
            if r.degraded and r.model:
                i, o = r.interventions_per_min or 0, r.off_track_per_min or 0
                rates = f"interventions {i:.2f}/min, off-track {o:.2f}/min"
                entry = self.trigger(r.model, f"{r.model} degraded on {r.car}: {rates}")
                out += [entry] if entry else []
        return out

    def on_feedback(self, frames: dict[str, int]) -> list[dict[str, Any]]:
        """New feedback frames per model (``retrain_on_feedback_frames``)."""
        threshold = self.config.retrain_on_feedback_frames
        out = []
        for model, n in frames.items():
            self._feedback[model] = self._feedback.get(model, 0) + n
            total = self._feedback[model]
            if threshold and total >= threshold:
                entry = self.trigger(model, f"{total} new feedback frames on {model} (>= {threshold})")
                if entry:
                    self._feedback[model] = 0
                    out.append(entry)
        return out

    def on_schedule(self, models: Iterable[str], now: float | None = None) -> list[dict[str, Any]]:
        """Every deployed model each ``retrain_every_s`` (the first period starts when it is seen)."""
        every = self.config.retrain_every_s
        if not every:
            return []
        now = time.time() if now is None else now
        out = []
        for model in models:
            since = self._scheduled.setdefault(model, now)
            if now - since >= every:
                self._scheduled[model] = now
                entry = self.trigger(model, f"schedule, {model} every {every:g} s")
                out += [entry] if entry else []
        return out

    def trigger(self, model_ref: str, why: str) -> dict[str, Any] | None:
        """Queue a train job for ``model_ref`` (``name:version``) unless it is cooling down; its
        ``requested_by`` is ``why`` after :data:`TRIGGERED`."""
        why = f"{TRIGGERED} {why}"
        name, _, version = model_ref.partition(":")
        now = time.time()
        if now - self._last.get(name, -1e18) < self.config.retrain_cooldown_s:
            return None
        model = self.catalog.get_model(name, version) if version else None
        dataset = ((model or {}).get("lineage") or {}).get("dataset")
        if dataset is None:
            log.warning("%s: no dataset in the lineage of %s, nothing to retrain on", why, model_ref)
            return None
        cfg = self.config
        params = TrainParams(
            dataset=self.dataset_for(dataset),
            model_name=name,
            epochs=cfg.retrain_epochs,
            architecture=cfg.retrain_architecture,
            options=cfg.retrain_options,
            evaluate_track=cfg.retrain_evaluate_track,
            evaluate_laps=cfg.retrain_evaluate_laps if cfg.retrain_evaluate_track else 0,
        )
        entry = self.request(params, why)
        self._last[name] = now
        self.triggered.append(entry)
        log.warning("%s: queued %s", why, entry.get("id") or entry.get("job"))
        return entry
