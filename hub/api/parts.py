"""The collaborators the API works with, passed in by whoever builds the app (the hub's service).

The routes see these and nothing else of the hub, so they never depend on how the service is put
together, and the API never imports :mod:`hub.service`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from hub.config import ApiConfig, MlopsConfig
from hub.fleet.deployments import Deployer
from hub.ingest.receiver import Ingest
from hub.mlops.canary import CanaryController
from hub.mlops.release import Release
from hub.storage.catalog import Catalog
from hub.storage.sealer import SealerHandle
from hub.telemetry.metrics import IngestCounters, IngestStats
from hub.telemetry.sinks import SqliteSink
from infra.store import ObjectStore
from schemas.topics import Topics


@dataclass(frozen=True)
class ApiParts:
    settings: ApiConfig
    token: str
    catalog: Catalog
    store: ObjectStore
    sealer: SealerHandle
    ingest: Ingest
    deployer: Deployer
    counters: IngestCounters
    topics: Topics
    telemetry: SqliteSink | None  # None when the SQLite sink is disabled
    registry: CollectorRegistry
    public_url: Callable[[], str]
    health: Callable[[], dict[str, Any]]
    ingest_stats: Callable[[], IngestStats]
    scoped_tokens: tuple[tuple[str, str], ...] = ()  # (token, "read" | "operate" | "admin")
    mlops: MlopsConfig | None = None  # the evaluation gate's rules
    canaries: CanaryController | None = None
    releases: Callable[[], list[Release]] | None = None  # triggered jobs' models, what became of them
    feedback: Callable[[], dict[str, Any]] | None = None  # the feedback dataset's manifest
    collect_feedback: Callable[[], dict[str, Any]] | None = None  # read new sessions for feedback now
