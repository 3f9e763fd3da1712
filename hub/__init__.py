"""The paddock hub: lossless MQTT ingest to object storage, telemetry sinks, catalog, REST API,
signed model deployments and job dispatch.

Embed it::

    from hub import HubConfig, HubService

    async with HubService(HubConfig(data_dir=path)) as hub:
        ...  # hub.api_url, hub.api_token, hub.ingest_stats()

or run it with ``paddock hub serve --config hub.toml``. See docs/hub.md.
"""

from hub.config import HubConfig, HubConfigError
from hub.metrics import CarIngest, IngestStats
from hub.service import HubService, serve

__all__ = ["CarIngest", "HubConfig", "HubConfigError", "HubService", "IngestStats", "serve"]
