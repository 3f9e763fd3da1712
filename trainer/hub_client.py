"""A small client for the hub's REST API: register a trained model with its lineage, look up a dataset.

The hub's API is configured by its base URL (``--hub http://hub:8080``); every path below is
relative to it, so a hub that mounts its API elsewhere only needs another base URL. The requests
are documented in docs/trainer.md ("Registering with the hub").
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.dataset import DatasetManifest
from schemas.messages import SessionRef
from schemas.model_card import ModelCard

MODELS_PATH = "/api/v1/models"
DATASETS_PATH = "/api/v1/datasets/{name}"


class HubError(RuntimeError):
    """The hub refused a request or could not be reached."""


class ModelFile(BaseModel):
    format: str = Field(description="onnx, onnx-int8 or tflite")
    key: str = Field(description="object-store key, under models/{name}/{version}/")
    sha256: str
    size: int


class Lineage(BaseModel):
    """Where a model comes from: dataset → run → model (ARCHITECTURE §6)."""

    dataset: str | None = None
    sessions: list[SessionRef] = Field(default_factory=list)
    val_sessions: list[SessionRef] = Field(default_factory=list)
    job: str | None = None
    run: dict[str, Any] = Field(default_factory=dict, description="launcher, world, epochs, seed, config")
    parent: str | None = Field(default=None, description="name:version this model was fine-tuned from")


class ModelRegistration(BaseModel):
    """Body of ``POST {hub}/api/v1/models``."""

    name: str
    version: str
    card: ModelCard
    files: list[ModelFile]
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    report_key: str | None = None
    evaluations: list[dict[str, Any]] = Field(default_factory=list)
    created: float


class HubClient:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 15.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise HubError(f"hub {self.base_url} not reachable: {exc}") from None
        if response.status_code >= 400:
            raise HubError(f"{method} {self.base_url}{path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def register_model(self, registration: ModelRegistration) -> Any:
        """``POST /api/v1/models`` with the registration as JSON; returns the hub's answer."""
        return self._request(
            "POST", MODELS_PATH, json=registration.model_dump(mode="json", exclude_none=True)
        )

    def dataset(self, name: str) -> DatasetManifest:
        """``GET /api/v1/datasets/{name}``: the named dataset's sessions, split into train and val."""
        return DatasetManifest.from_dict(self._request("GET", DATASETS_PATH.format(name=name)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
