"""Releasing a triggered job's model with no human action (``[mlops] auto_deploy``).

When a train job that an MLOps trigger queued (``requested_by`` starting ``mlops:``) succeeds, its
model becomes a :class:`Release`. The hub's MLOps thread (:meth:`Releaser.tick`, each second)
waits for the model's car-side smoke test (the trainer agent records it before it reports the
job; ``auto_deploy_smoke_wait_s`` at most), then, for each group whose current pilot has the
model's name: with ``canary``, starts a canary (the evaluation gate first, with the smoke test;
the canary controller promotes or rolls back on its own); with ``group``, deploys to the group once
the gate passes. A refusal is recorded with the gate's reasons. Every release is a JSON document
in the object store under ``releases/``, so one waiting when the hub stops goes on when it starts.
"""

import logging
import threading
import time
from typing import Literal

from pydantic import BaseModel, Field

from hub.config import MlopsConfig
from hub.mlops import gate
from hub.mlops.canary import CanaryController, CanaryError, Deployments
from hub.mlops.records import StoredRecords
from hub.mlops.triggers import TRIGGERED
from hub.storage.catalog import Catalog
from infra.store import ObjectStore
from schemas.messages import JobResult

log = logging.getLogger(__name__)

PREFIX = "releases/"


class Release(BaseModel):
    job: str
    model: str = Field(description="the job's model, name:version")
    requested_by: str | None = Field(default=None, description="why the job ran (the trigger)")
    mode: Literal["canary", "group"]
    state: Literal["waiting", "canary", "deployed", "refused"] = "waiting"
    created: float
    decided: float | None = None
    groups: list[str] = Field(default_factory=list, description="the groups it went to")
    canaries: list[str] = Field(default_factory=list, description="the canaries it started")
    reasons: list[str] = Field(default_factory=list, description="why a group refused it")
    smoke_test: gate.SmokeTest | None = None


class Releaser:
    def __init__(
        self,
        config: MlopsConfig,
        catalog: Catalog,
        store: ObjectStore,
        deployer: Deployments,
        canaries: CanaryController,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.store = store
        self.deployer = deployer
        self.canaries = canaries
        self._lock = threading.Lock()
        self._stored = StoredRecords(store, PREFIX, Release, key=lambda r: r.job)
        self._releases = self._stored.records

    def all(self) -> list[Release]:
        with self._lock:
            return sorted(self._releases.values(), key=lambda r: r.created)

    def on_job_result(self, job: str, result: JobResult) -> None:
        """A job's result (ingest's thread): a triggered train job's model waits for :meth:`tick`."""
        if self.config.auto_deploy == "off" or result.kind != "train" or result.status != "succeeded":
            return
        if result.model is None or job in self._releases:
            return
        requested_by = ((self.catalog.get_job(job) or {}).get("request") or {}).get("requested_by")
        if not str(requested_by or "").startswith(TRIGGERED):
            return  # a person asked for it: they deploy it
        release = Release(
            job=job,
            model=f"{result.model.name}:{result.model.version}",
            requested_by=requested_by,
            mode=self.config.auto_deploy,
            created=time.time(),
        )
        with self._lock:
            self._save(release)
        log.warning("%s: %s registered, released once its smoke test is in", job, release.model)

    def tick(self, now: float | None = None) -> list[Release]:
        """Release every waiting model whose smoke test is in (or waited long enough)."""
        now = time.time() if now is None else now
        done = []
        for r in self.all():
            if r.state != "waiting":
                continue
            name, _, version = r.model.partition(":")
            r.smoke_test = gate.smoke_test_of(self.catalog, name, version)
            if r.smoke_test is None and now - r.created < self.config.auto_deploy_smoke_wait_s:
                continue
            self._release(r, name, version)
            done.append(r)
        return done

    def _release(self, r: Release, name: str, version: str) -> None:
        groups = self._groups_driving(name, version)
        if not groups:
            r.reasons.append(f"no group drives a {name} model")
        why = f"{r.job}: {r.requested_by}"
        for group in groups:
            try:
                if r.mode == "canary":
                    r.canaries.append(self.canaries.start(group, name, version, requested_by=why).id)
                else:
                    self._deploy(group, name, version, why)
                r.groups.append(group)
            except CanaryError as exc:
                reasons = (exc.detail.get("gate") or {}).get("reasons") or []
                r.reasons.append(f"{group}: {exc}" + (f": {'; '.join(reasons)}" if reasons else ""))
            except Exception as exc:  # decided once: a release is never retried every second
                log.exception("%s: releasing %s to %s failed", r.job, r.model, group)
                r.reasons.append(f"{group}: {type(exc).__name__}: {exc}")
        r.state = ("canary" if r.mode == "canary" else "deployed") if r.groups else "refused"
        r.decided = time.time()
        with self._lock:
            self._save(r)
        log.warning("%s %s: %s%s", r.job, r.model, r.state, f" ({'; '.join(r.reasons)})" if r.reasons else "")

    def _deploy(self, group: str, name: str, version: str, why: str) -> None:
        status = self.deployer.status("group", group)
        decision = gate.check_target(self.catalog, self.store, self.config, status, (name, version))
        if not decision.passed:
            detail = {"gate": decision.model_dump(mode="json")}
            raise CanaryError(409, "refused by the evaluation gate", detail)
        self.deployer.deploy("group", group, name, version, requested_by=why)

    def _groups_driving(self, name: str, version: str) -> list[str]:
        """Groups whose current model has ``name`` (and is not this version already)."""
        out = []
        for status in self.deployer.all_status():
            current = status["current"]
            if status["target_kind"] != "group" or status.get("slot", "pilot") != "pilot" or not current:
                continue
            if current["name"] == name and current["version"] != version:
                out.append(status["target"])
        return out

    def _save(self, r: Release) -> None:
        self._stored.save(r)
