"""Fixtures for hub tests: a configuration per test (own data dir, topic prefix and MQTT client id,
so tests sharing one Mosquitto never see each other's retained or queued messages)."""

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub.config import HubConfig

TOKEN = "test-token"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., HubConfig]:
    def make(broker_url: str, data_dir: Path | None = None, **overrides: Any) -> HubConfig:
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

    return make


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


async def eventually(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:  # noqa: ASYNC109
    """``wait_until`` for async tests: polls without blocking the event loop (the hub's API runs on it)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.05)


def read_session(store_root: Path, car: str, session: str) -> tuple[dict[str, Any], list[Any]]:
    """A session's manifest and every sample of its shards, read back with the trainer's reader."""
    import json

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
