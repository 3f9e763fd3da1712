"""The paddock hub: lossless MQTT ingest to object storage, telemetry sinks, catalog, REST API,
signed model deployments and job dispatch.

Embed it::

    from hub import HubConfig, HubService

    async with HubService(HubConfig(data_dir=path)) as hub:
        ...  # hub.api_url, hub.api_token, hub.ingest_stats()

or run it with ``paddock hub serve --config hub.toml``. See docs/hub.md.
"""

from typing import TYPE_CHECKING, Any

from hub.config import HubConfig, HubConfigError
from hub.telemetry.metrics import CarIngest, IngestStats

if TYPE_CHECKING:
    from hub.service import HubService, serve

__all__ = ["CarIngest", "HubConfig", "HubConfigError", "HubService", "IngestStats", "serve"]


def __getattr__(name: str) -> Any:
    # The service pulls in FastAPI and uvicorn; the sealer process (hub.storage.sealproc) needs neither.
    if name in ("HubService", "serve"):
        from hub import service

        return getattr(service, name)
    raise AttributeError(f"module 'hub' has no attribute {name!r}")
