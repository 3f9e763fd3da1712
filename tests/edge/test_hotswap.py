"""Model verification, cache and hot-swap pipeline, without a broker (the MQTT path is in
test_daemon_mqtt.py)."""

import asyncio
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edge.config import LoopSection
from edge.hotswap import ModelCache, ModelManager, ModelRejected, load_and_test, verify_envelope
from edge.loop import ControlLoop
from edge.runtimes import preload
from edge.trust import SequenceStore, TrustPolicy
from firmware.car_body import Body
from schemas.envelope import encode
from schemas.signing import KeyRing, generate_private_key
from tests.edge.bodies import bench_body
from tests.edge.modelkit import manifest, onnx_model, signed_envelope

KEY = generate_private_key()
MB = 1 << 20


def trust(allow_unsigned: bool = False, keys: list[Any] | None = None) -> TrustPolicy:
    ring = KeyRing([KEY.public_key()] if keys is None else keys)
    return TrustPolicy(ring, "car-1", "fleet-a", allow_unsigned=allow_unsigned)


def test_verification_reasons() -> None:
    good = onnx_model()
    v = verify_envelope(signed_envelope(good, KEY), trust(), "car", MB)
    assert v.data == good and not v.unsigned
    cases = {
        "unsigned": (signed_envelope(good, None), "is not signed"),
        "other key": (signed_envelope(good, generate_private_key()), "unknown key"),
        "truncated": (signed_envelope(good, KEY)[:-40], "truncated or padded"),
        "tampered": (signed_envelope(good, KEY)[:-10] + b"\x00" * 10, "sha256 does not match"),
        "garbage": (b"hello", "not a model envelope"),
        "bad manifest": (encode({"name": "x"}, good), "invalid ModelManifest"),
    }
    for name, (payload, reason) in cases.items():
        with pytest.raises(ModelRejected, match=reason):
            verify_envelope(payload, trust(), "car", MB)
        assert name
    with pytest.raises(ModelRejected, match="more than the limit"):
        verify_envelope(signed_envelope(onnx_model(pad_bytes=300_000), KEY), trust(), "car", 200_000)
    # the development setting accepts unsigned models, but never a bad signature
    assert verify_envelope(signed_envelope(good, None), trust(True), "car", MB).unsigned
    with pytest.raises(ModelRejected, match="unknown key"):
        verify_envelope(signed_envelope(good, generate_private_key()), trust(True), "car", MB)
    with pytest.raises(ModelRejected, match=r"unknown key .* \(trusted: none\)"):
        verify_envelope(signed_envelope(good, KEY), trust(keys=[]), "car", MB)


def test_smoke_test_rejects_broken_models() -> None:
    def load(data: bytes, **kw: Any) -> Any:
        return load_and_test(
            manifest(data), data, threads=1, warmup_runs=2, frame=None, **({"max_latency_ms": 100} | kw)
        )

    assert load(onnx_model()).latency_ms < 100
    with pytest.raises(ModelRejected, match="not finite"):
        load(onnx_model(nan=True))
    with pytest.raises(ModelRejected, match="has 3 values, expected 1"):
        load(onnx_model(steering_values=3))
    with pytest.raises(ModelRejected, match="does not match the card"):
        load(onnx_model(declared=(1, 3, 60, 80)))
    with pytest.raises(ModelRejected, match="far outside"):
        load(onnx_model(steering=40.0))
    with pytest.raises(ModelRejected, match="too slow"):
        load(onnx_model(pad_bytes=4 * MB), max_latency_ms=0.01)


@pytest.fixture
def running_loop() -> Iterator[tuple[ControlLoop, Body]]:
    preload(["onnx"])  # as the daemon does before its loop starts
    body, _ = bench_body()
    body.connect()
    loop = ControlLoop(body, LoopSection(hz=50, start_mode="autopilot"))
    loop.start()
    yield loop, body
    loop.stop()
    loop.close_pilots()
    body.disconnect()


def manager(loop: ControlLoop, cache_dir: Path, events: list[dict[str, Any]], **kw: Any) -> ModelManager:
    return ModelManager(
        loop,
        ModelCache(cache_dir, keep=2),
        trust=TrustPolicy(
            KeyRing([KEY.public_key()]),
            "car-1",
            "fleet-a",
            sequences=SequenceStore(cache_dir.parent / "seq.json"),
        ),
        max_bytes=16 * MB,
        threads=1,
        warmup_runs=2,
        max_latency_ms=50,
        download_timeout_s=5,
        latest_frame=lambda: None,
        on_event=events.append,
        on_state=lambda s: events.append({"type": "state", **s.to_dict()}),
        **kw,
    )


async def wait_for(predicate: Any, limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 - polling state another thread changes
            await asyncio.sleep(0.01)


async def test_car_assignment_wins_over_group_and_cache_boots(
    running_loop: tuple[ControlLoop, Body], tmp_path: Path
) -> None:
    loop, _ = running_loop
    events: list[dict[str, Any]] = []
    mgr = manager(loop, tmp_path / "models", events)
    task = asyncio.create_task(mgr.run())
    try:
        group = signed_envelope(onnx_model(steering=-0.4), KEY, group="fleet-a", name="fleet", version="3")
        own = signed_envelope(onnx_model(steering=0.3), KEY, name="mine", version="9")
        mgr.offer("group", group)
        await wait_for(lambda: mgr.active is not None and mgr.active.name == "fleet")
        await wait_for(lambda: loop.last is not None and loop.last.steering == pytest.approx(-0.4))
        mgr.offer("car", own)
        await wait_for(lambda: mgr.active is not None and mgr.active.name == "mine")
        mgr.offer(
            "group",
            signed_envelope(onnx_model(steering=-0.1), KEY, group="fleet-a", name="fleet", version="4"),
        )
        await asyncio.sleep(0.3)
        assert mgr.active is not None and mgr.active.ref == "mine:9"  # the car's own still wins
        mgr.offer("car", b"")  # own assignment cleared: the group's applies again
        await wait_for(lambda: mgr.active is not None and mgr.active.ref == "fleet:4")
        swapped = [e for e in events if e["type"] == "model_swapped"]
        assert [e["name"] + ":" + e["version"] for e in swapped] == ["fleet:3", "mine:9", "fleet:4"]
        assert all(e["swap_ms"] >= e["load_ms"] > 0 for e in swapped)
        assert swapped[1]["previous"] == "fleet:3"
        assert events[-1]["type"] == "state" and events[-1]["active"] == "fleet:4"
    finally:
        task.cancel()
    # the cache keeps the last good model (and prunes beyond `keep`); a new manager boots from it
    cache = ModelCache(tmp_path / "models")
    assert cache.active() == mgr.active.sha256
    assert len(list((tmp_path / "models").glob("*.onnx"))) == 2
    events2: list[dict[str, Any]] = []
    mgr2 = manager(loop, tmp_path / "models", events2)
    assert await mgr2.load_cached()
    assert mgr2.active is not None and mgr2.active.ref == "fleet:4"
    assert not [e for e in events2 if e["type"] == "model_swapped"]  # boot is not a swap


async def test_rejections_keep_the_old_model_driving(
    running_loop: tuple[ControlLoop, Body], tmp_path: Path
) -> None:
    loop, _ = running_loop
    events: list[dict[str, Any]] = []
    mgr = manager(loop, tmp_path / "models", events)
    assert await mgr.process(signed_envelope(onnx_model(steering=0.2), KEY), 0)
    bad = [
        signed_envelope(onnx_model(nan=True), KEY, version="nan"),
        signed_envelope(onnx_model(), None, version="unsigned"),
    ]
    for payload in bad:
        assert not await mgr.process(payload, 0)
        assert not await mgr.process(payload, 0)  # the same envelope again is not re-processed
    rejected = [e for e in events if e["type"] == "model_rejected"]
    assert len(rejected) == 2
    assert "not finite" in rejected[0]["reason"] and rejected[0]["version"] == "nan"
    assert "not signed" in rejected[1]["reason"]
    assert mgr.active is not None and mgr.active.version == "1"
    assert mgr.state().last_error == rejected[1]["reason"]
    await asyncio.sleep(0.1)
    assert loop.last is not None and loop.last.steering == pytest.approx(0.2)
    # the same model again is ignored quietly
    assert not await mgr.process(signed_envelope(onnx_model(steering=0.2), KEY), 0)
    assert len([e for e in events if e["type"] == "model_swapped"]) == 1


class _Handler(http.server.BaseHTTPRequestHandler):
    blobs: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        data = self.blobs.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


async def test_large_models_come_from_the_manifest_url(
    running_loop: tuple[ControlLoop, Body], tmp_path: Path
) -> None:
    loop, _ = running_loop
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        data = onnx_model(steering=0.33, pad_bytes=2 * MB)
        _Handler.blobs = {"/models/big/2/model.onnx": data, "/models/short/1/model.onnx": data[:1000]}
        events: list[dict[str, Any]] = []
        mgr = manager(loop, tmp_path / "models", events)
        env = signed_envelope(data, KEY, name="big", version="2", url=f"{base}/models/big/2/model.onnx")
        assert len(env) < 4096  # the envelope carries only the manifest
        assert await mgr.process(env, 0)
        assert mgr.active is not None and mgr.active.ref == "big:2"
        short = signed_envelope(data, KEY, name="short", version="1", url=f"{base}/models/short/1/model.onnx")
        assert not await mgr.process(short, 0)
        missing = signed_envelope(data, KEY, name="gone", version="1", url=f"{base}/nothing")
        assert not await mgr.process(missing, 0)
        reasons = [e["reason"] for e in events if e["type"] == "model_rejected"]
        assert "truncated or padded: 1000 bytes" in reasons[0]
        assert "download from" in reasons[1] and "404" in reasons[1]
    finally:
        server.shutdown()
        thread.join()
