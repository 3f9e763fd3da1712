"""Fixtures for hub tests: a configuration per test (own data dir, topic prefix and MQTT client id,
so tests sharing one Mosquitto never see each other's retained or queued messages)."""

import functools
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hub.config import HubConfig

if TYPE_CHECKING:
    import httpx

    from edge.config import CarConfig
    from hub import HubService

TOKEN = "test-token"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def hub_test_config(
    tmp_path: Path, broker_url: str, data_dir: Path | None = None, **overrides: Any
) -> HubConfig:
    """A hub of its own under ``tmp_path`` (data dir, topic prefix, client id) on ``broker_url``,
    sealing quickly; ``overrides`` change single keys of sections (``shards={"session_close_s": 3}``)."""
    uid = uuid.uuid4().hex[:8]
    base: dict[str, Any] = {
        "data_dir": str(data_dir or tmp_path / f"hub-{uid}"),
        "topic_prefix": f"t{uid}",
        "mqtt": {"url": broker_url, "client_id": f"hub-{uid}", "connect_wait_s": 10},
        "api": {"port": 0, "token": TOKEN},
        "shards": {"idle_seal_s": 0.3, "session_close_s": 30},
        "sinks": {"sqlite": {"flush_interval_s": 0.1}},
    }
    return HubConfig.from_dict(_merge(base, overrides))


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., HubConfig]:
    """:func:`hub_test_config` under the test's ``tmp_path``."""
    return functools.partial(hub_test_config, tmp_path)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def eventually(
    predicate: Callable[[], Any],
    timeout: float = 20.0,  # noqa: ASYNC109
    what: str = "",
    interval: float = 0.05,
) -> Any:
    """``wait_until`` for async tests: polls without blocking the event loop (the hub's API runs on it).
    ``predicate`` may be a coroutine function (a check that asks the hub's API)."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


async def register_model(
    http: "httpx.AsyncClient", name: str, artifact: bytes, card: str, lineage: dict[str, Any]
) -> str:
    """Register ``artifact`` (with its card's JSON) as a new version of ``name`` by POST /models."""
    form = {"name": name, "card": card, "lineage": json.dumps(lineage)}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = await http.post("/models", data=form, files={"artifact": ("m.onnx", artifact)}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["version"])


def signed_sim_car(tmp_path: Path, hub: "HubService", car: str, **sections: Any) -> "CarConfig":
    """A simulated car (tests/edge/harness.py's sim_car_config) on ``hub``'s broker and topic prefix
    that takes only models signed by the hub's key."""
    from tests.edge.harness import sim_car_config

    pub = tmp_path / "hub.pub"
    pub.write_text(hub.public_key_pem)
    models = {"public_key": str(pub), "allow_unsigned": False, "preload_runtimes": ["onnx"]}
    broker = {"prefix": hub.config.topic_prefix}
    return sim_car_config(tmp_path, hub.config.mqtt.url, car=car, broker=broker, models=models, **sections)


def read_session(store_root: Path, car: str, session: str) -> tuple[dict[str, Any], list[Any]]:
    """A session's manifest and every sample of its shards, read back with the trainer's reader."""
    from schemas.dataset import session_manifest_key, session_prefix
    from schemas.shards import ReadStats, read_shard

    manifest = json.loads((store_root / session_manifest_key(car, session)).read_text())
    samples = []
    for shard in manifest["shards"]:
        stats = ReadStats()
        with (store_root / session_prefix(car, session) / shard["name"]).open("rb") as fh:
            samples.extend(read_shard(fh, stats))
        assert stats.skipped == 0, stats.reasons
    return manifest, samples
