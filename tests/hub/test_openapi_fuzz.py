"""schemathesis against the hub's OpenAPI: generated requests (valid and invalid, with the token)
never get a 5xx."""

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from hub import HubConfig, HubService
from tests.hub.conftest import TOKEN
from tests.hub.fakecar import FakeCar
from tests.servers.mosquitto import Mosquitto


class _HubThread:
    """A hub on its own event loop in a thread, shared by every generated test case."""

    def __init__(self, config: HubConfig) -> None:
        self.hub = HubService(config)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await self.hub.start()
            except BaseException as exc:
                self.error = exc
                self.ready.set()
                return
            self.ready.set()
            await self._stop.wait()
            await self.hub.stop()

        self.loop.run_until_complete(main())

    def start(self) -> "_HubThread":
        self.thread.start()
        self.ready.wait(60)
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)


@pytest.fixture(scope="module")
def fuzzed_hub(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubService]:
    uid = uuid.uuid4().hex[:8]
    cfg = HubConfig.from_dict(
        {
            "data_dir": str(tmp_path_factory.mktemp("fuzz") / "hub"),
            "topic_prefix": f"t{uid}",
            "mqtt": {"url": mosquitto.url, "client_id": f"fuzz-{uid}", "publish_timeout_s": 2},
            "api": {"port": 0, "token": TOKEN, "max_upload_mb": 1},
            "shards": {"idle_seal_s": 0.2},
        }
    )
    runner = _HubThread(cfg).start()
    # Something to find: a recorded session (car "car-1", session "s") for the generated ids to hit.
    car = FakeCar(mosquitto.url, "car-1", prefix=cfg.topic_prefix).connect()
    car.record("s", 20)
    car.stop_recording("s")
    car.close()
    runner.hub.sealer.flush(30)
    yield runner.hub
    runner.stop()


def _openapi() -> dict[str, Any]:
    """The OpenAPI document, built from the app itself (no server needed at collection time)."""
    from types import SimpleNamespace

    from hub.api.app import create_app

    app = create_app(SimpleNamespace(settings=HubConfig().api))  # type: ignore[arg-type]
    return app.openapi()


schema = schemathesis.openapi.from_dict(_openapi())


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: Any, fuzzed_hub: HubService) -> None:
    if case.query and "wait" in case.query:  # waiting for a car that is not there only slows the run
        case.query["wait"] = 0
    case.call_and_validate(
        base_url=fuzzed_hub.api_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error],
        timeout=30,
    )


def test_the_schema_covers_every_route(fuzzed_hub: HubService, tmp_path: Path) -> None:
    import httpx

    spec = httpx.get(f"{fuzzed_hub.api_url}/openapi.json").json()
    assert spec == _openapi()  # the document the fuzzer used is the one the hub serves
    paths = set(spec["paths"])
    for expected in (
        "/health",
        "/metrics",
        "/sessions/{car}/{session}/trim",
        "/models",
        "/deployments/{kind}/{target}/rollback",
        "/jobs/{job}",
        "/keys/public.pem",
    ):
        assert expected in paths
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
