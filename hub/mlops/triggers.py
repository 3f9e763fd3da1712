"""Retraining triggers: a policy in ``[mlops]`` turns a drift event into a queued train job on the
model's dataset, and the job's request says why it ran (``requested_by``), so the lineage of the
model it produces (dataset → job → model) records the trigger."""

import logging
import time
from collections.abc import Callable
from typing import Any

from hub.config import MlopsConfig
from hub.storage.catalog import Catalog
from schemas.messages import DriftEvent, TrainParams

log = logging.getLogger(__name__)

RequestJob = Callable[[TrainParams, str], dict[str, Any]]  # params, requested_by -> job entry


class RetrainPolicy:
    def __init__(self, config: MlopsConfig, catalog: Catalog, request: RequestJob) -> None:
        self.config = config
        self.catalog = catalog
        self.request = request
        self._last: dict[str, float] = {}  # model name -> when a job was last triggered
        self.triggered: list[dict[str, Any]] = []

    def on_event(self, car: str, event: DriftEvent) -> dict[str, Any] | None:
        cfg = self.config
        if not (cfg.retrain_on_drift and event.drifted):
            return None
        name, _, version = event.model.partition(":")
        now = time.time()
        if now - self._last.get(name, -1e18) < cfg.retrain_cooldown_s:
            return None
        model = self.catalog.get_model(name, version) if version else None
        dataset = ((model or {}).get("lineage") or {}).get("dataset")
        if dataset is None:
            log.warning("drift on %s: no dataset in its lineage, nothing to retrain on", event.model)
            return None
        params = TrainParams(
            dataset=dataset,
            model_name=name,
            epochs=cfg.retrain_epochs,
            evaluate_track=cfg.retrain_evaluate_track,
            evaluate_laps=cfg.retrain_evaluate_laps if cfg.retrain_evaluate_track else 0,
        )
        why = f"mlops: input drift on {car}, {event.model} PSI {event.score:.3f} > {event.threshold}"
        entry = self.request(params, why)
        self._last[name] = now
        self.triggered.append(entry)
        log.warning("%s: queued %s", why, entry.get("id") or entry.get("job"))
        return entry
