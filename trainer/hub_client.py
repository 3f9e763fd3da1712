"""A small client for the hub's REST API (docs/hub.md): register a trained model with its lineage,
look up a named dataset.

The base URL is configurable (``--hub http://hub:8080``); the paths below are relative to it.
Registering is the hub's ``POST /models`` (multipart: the model file, its card, its lineage and the
training report), which needs the hub's API token; reading a dataset is open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.dataset import DatasetManifest
from schemas.messages import SessionRef
from schemas.model_card import ModelCard

MODELS_PATH = "/models"
DATASETS_PATH = "/datasets/{name}"


class HubError(RuntimeError):
    """The hub refused a request or could not be reached."""


class Lineage(BaseModel):
    """Where a model comes from (dataset → run/job → model). The hub reads ``dataset``, ``run``,
    ``job``, ``parent`` and ``metrics`` and keeps the rest as sent."""

    model_config = ConfigDict(extra="allow")

    dataset: str | None = Field(default=None, description="the hub's dataset name, when trained on one")
    run: str | None = Field(default=None, description="the training run (its folder name)")
    job: str | None = None
    requested_by: str | None = Field(
        default=None, description="why the job ran: who asked, or the MLOps trigger and its figures"
    )
    parent: str | None = Field(default=None, description="name:version this model was fine-tuned from")
    metrics: dict[str, float] = Field(default_factory=dict)
    sessions: list[SessionRef] = Field(default_factory=list, description="training sessions")
    val_sessions: list[SessionRef] = Field(default_factory=list)
    training: dict[str, Any] = Field(
        default_factory=dict, description="launcher, processes, epochs, best epoch, seed, the full config"
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="format → object-store key of every export"
    )
    evaluations: list[dict[str, Any]] = Field(default_factory=list, description="closed-loop reports")


class HubClient:
    def __init__(
        self, base_url: str, token: str | None = None, timeout_s: float = 60.0, ca_file: str | None = None
    ) -> None:
        """``ca_file`` (default: ``PADDOCK_CA_FILE``, which the trainer agent hands its jobs)
        verifies an https:// hub."""
        import httpx

        from infra.tls import https_verify

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, verify=https_verify(ca_file)
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise HubError(f"hub {self.base_url} not reachable: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise HubError(f"{method} {self.base_url}{path}: {response.status_code} {str(detail)[:500]}")
        return response.json() if response.content else None

    def register_model(
        self,
        *,
        name: str,
        version: str | None,
        artifact: Path,
        card: ModelCard,
        lineage: Lineage,
        report: bytes | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """``POST /models``: the model file with its card, lineage and report; returns the hub's
        entry (with the ``name`` and ``version`` it registered)."""
        data = {
            "name": name,
            "card": card.model_dump_json(exclude_none=True),
            "lineage": json.dumps(lineage.model_dump(mode="json", exclude_none=True)),
            "description": description,
        }
        if version:
            data["version"] = version
        files: dict[str, Any] = {
            "artifact": (artifact.name, artifact.read_bytes(), "application/octet-stream")
        }
        if report is not None:
            files["report"] = ("report.json", report, "application/json")
        answer: dict[str, Any] = self._request("POST", MODELS_PATH, data=data, files=files)
        return answer

    def model(self, name: str, version: str) -> dict[str, Any]:
        """``GET /models/{name}/{version}``: the catalog entry (card, format, sha256, lineage, …)."""
        entry: dict[str, Any] = self._request("GET", f"{MODELS_PATH}/{name}/{version}")
        return entry

    def artifact(self, name: str, version: str) -> bytes:
        """``GET /models/{name}/{version}/artifact``: the model file."""
        import httpx

        try:
            response = self._http.get(f"{MODELS_PATH}/{name}/{version}/artifact")
        except httpx.HTTPError as exc:
            raise HubError(f"hub {self.base_url} not reachable: {exc}") from None
        if response.status_code >= 400:
            raise HubError(
                f"GET {self.base_url}{MODELS_PATH}/{name}/{version}/artifact: {response.status_code}"
            )
        return response.content

    def record_smoke_test(self, name: str, version: str, result: dict[str, Any]) -> None:
        """``POST /models/{name}/{version}/smoke-tests``: the car's smoke test of a model, for the gate."""
        self._request("POST", f"{MODELS_PATH}/{name}/{version}/smoke-tests", json=result)

    def dataset(self, name: str) -> DatasetManifest:
        """``GET /datasets/{name}``: the named dataset's sessions, split into train and val."""
        return DatasetManifest.from_dict(self._request("GET", DATASETS_PATH.format(name=name)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
