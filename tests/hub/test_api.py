"""The REST API against a running hub and a real broker: auth, models, deployments (signed,
retained, verified by a late subscriber), sessions, datasets, jobs, commands."""

import asyncio
import base64
import hashlib
import io
import json
import os
import queue
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest

from hub import HubConfig, HubService
from schemas.envelope import decode
from schemas.messages import JobProgress, JobResult, ModelRef, parse_command, parse_job
from schemas.model_card import InputSpec, ModelCard, OutputSpec
from schemas.mqtt_url import BrokerUrl
from schemas.payloads import decode_model
from schemas.shards import read_shard
from schemas.signing import KeyRing, SignatureError, load_public_key, verify_header
from tests.hub.conftest import TOKEN, eventually
from tests.hub.fakecar import FakeCar, make_jpeg
from tests.servers.clients import retained_payload

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CARD = ModelCard(
    architecture="linear",
    input=InputSpec(width=160, height=120),
    outputs=[OutputSpec(name="steering"), OutputSpec(name="throttle")],
)


class Sub:
    """A paho subscriber that collects messages in a queue."""

    def __init__(self, url: str, topic: str, qos: int = 1) -> None:
        b = BrokerUrl.parse(url)
        self.q: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:12]}")
        self.c.on_message = lambda _c, _u, m: self.q.put(m)
        self.c.connect(b.host, b.port)
        self.c.subscribe(topic, qos=qos)
        self.c.loop_start()

    def get(self, timeout: float = 10.0) -> paho.MQTTMessage | None:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
async def hub(mosquitto, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:  # type: ignore[no-untyped-def]
    async with HubService(make_config(mosquitto.url, deployments={"inline_max_mb": 0.01})) as h:
        yield h


@pytest.fixture
async def http(hub: HubService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as client:
        yield client


async def record(hub: HubService, car_id: str, session: str, n: int, jpeg: bytes | None = None) -> FakeCar:
    car = FakeCar(hub.config.mqtt.url, car_id, prefix=hub.config.topic_prefix, jpeg=jpeg).connect()
    await asyncio.to_thread(car.record, session, n)
    car.stop_recording(session, frames=n)
    await hub.wait_sealed(car_id, session)
    return car


async def register(http: httpx.AsyncClient, data: bytes, **form: Any) -> httpx.Response:
    fields = {"name": "pilot", "card": CARD.model_dump_json()} | {
        k: v for k, v in form.items() if v is not None
    }
    filename = fields.pop("filename", "model.onnx")
    return await http.post("/models", data=fields, files={"artifact": (filename, data)}, headers=AUTH)


async def test_every_mutating_route_needs_the_token(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    mutating = [
        (method, path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("post", "put", "patch", "delete")
    ]
    assert len(mutating) >= 12
    for method, path in mutating:
        url = path.format(
            car="c1", session="s1", name="mode", version="1", kind="car", target="c1", job="j1", canary="c1"
        )
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await http.request(method.upper(), url, headers=headers, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
    for path in [p for p, ops in spec["paths"].items() if "get" in ops and "{" not in p]:
        r = await http.get(path)
        assert r.status_code == 200, (path, r.text)


async def test_models_register_list_get_download(hub: HubService, http: httpx.AsyncClient) -> None:
    data = os.urandom(3000)
    lineage = {"run": "r-7", "job": "train-1", "metrics": {"val_loss": 0.12}}
    r = await register(http, data, lineage=json.dumps(lineage), description="first")
    assert r.status_code == 201, r.text
    m = r.json()
    assert (m["name"], m["version"], m["format"]) == ("pilot", "1", "onnx")
    assert m["sha256"] == hashlib.sha256(data).hexdigest() and m["size"] == 3000
    assert m["lineage"]["metrics"] == {"val_loss": 0.12}
    r = await register(http, b"NOTATFLITEFILE", filename="x.bin", format="tflite")
    assert r.status_code == 422 and "TFLite" in r.json()["detail"]
    r = await register(http, b"\x1c\x00\x00\x00TFL3" + os.urandom(100), filename="m.tflite")
    assert r.status_code == 201 and r.json()["version"] == "2" and r.json()["format"] == "tflite"
    r = await register(http, data, version="1")
    assert r.status_code == 409
    r = await register(http, data, card='{"architecture": "x"}')
    assert r.status_code == 422 and "ModelCard" in r.json()["detail"]
    r = await register(http, data, lineage='{"dataset": "nope"}')
    assert r.status_code == 422 and "unknown dataset" in r.json()["detail"]
    r = await register(http, b"", filename="e.onnx")
    assert r.status_code == 422
    r = await register(http, data, name="../etc")
    assert r.status_code == 422
    listed = (await http.get("/models", params={"name": "pilot"})).json()
    assert [x["version"] for x in listed] == ["1", "2"]
    r = await http.get("/models/pilot/1")
    assert r.json()["description"] == "first" and r.json()["evaluations"] == []
    r = await http.get(m["download_url"].replace(hub.public_url, ""), headers=AUTH)
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-paddock-sha256"] == m["sha256"]
    assert (await http.get("/models/pilot/9/artifact", headers=AUTH)).status_code == 404
    assert (await http.get("/models/pilot/1/artifact")).status_code == 401  # the data needs a token
    assert hub.store.get("models/pilot/1/model.onnx") == data
    assert json.loads(hub.store.get("models/pilot/1/card.json")) == CARD.to_dict()


async def test_deployments_are_signed_retained_and_verify(
    broker_url: str, make_config: Callable[..., HubConfig]
) -> None:
    cfg = make_config(broker_url, deployments={"inline_max_mb": 0.004})  # ~4 KB inline limit
    async with HubService(cfg) as hub, httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        small, big = os.urandom(2000), os.urandom(20_000)
        assert (await register(http, small)).status_code == 201
        assert (await register(http, big)).status_code == 201
        pem = (await http.get("/keys/public.pem")).content
        ring = KeyRing([load_public_key(pem)])
        assert (await http.get("/keys")).json()["key_id"] == hub.key_id
        r = await http.post(
            "/deployments", json={"model": {"name": "pilot", "version": "1"}, "car": "car-a"}, headers=AUTH
        )
        assert r.status_code == 201 and r.json()["published"] is True, r.text
        # A car that connects afterwards gets the retained envelope and verifies it.
        data = await asyncio.to_thread(retained_payload, broker_url, hub.topics.car_model("car-a"))
        assert data is not None
        manifest, payload = decode_model(data)
        assert verify_header(decode(data).header, ring)[0] == manifest
        assert payload == small and manifest.url is None and manifest.ref == "pilot:1"
        assert manifest.target is not None and manifest.target.id == "car-a" and manifest.sequence == 1
        assert manifest.expires is not None and manifest.expires > time.time() + 86400
        assert manifest.card == CARD
        # Too big to go inline: the signed manifest carries the hub's download URL.
        r = await http.post(
            "/deployments",
            json={"model": {"name": "pilot", "version": "2"}, "group": "fleet-a"},
            headers=AUTH,
        )
        assert r.status_code == 201
        data = await asyncio.to_thread(retained_payload, broker_url, hub.topics.group_model("fleet-a"))
        assert data is not None
        manifest, payload = decode_model(data)
        assert verify_header(decode(data).header, ring)[0] == manifest
        assert manifest.target is not None and manifest.target.kind == "group"
        assert payload == b"", (manifest, len(payload))
        assert manifest.url is not None and manifest.url.startswith(
            f"{hub.public_url}/models/pilot/2/artifact?grant="
        )
        downloaded = (await http.get(manifest.url)).content
        assert hashlib.sha256(downloaded).hexdigest() == manifest.sha256 and downloaded == big
        # A tampered manifest fails verification.
        header = decode(data).header
        forged = manifest.model_copy(update={"url": "http://evil/x"}).to_json()
        with pytest.raises(SignatureError):
            verify_header(header | {"manifest": base64.b64encode(forged).decode()}, ring)
        # Roll back, clear, roll back the clear.
        await http.post(
            "/deployments", json={"model": {"name": "pilot", "version": "2"}, "car": "car-a"}, headers=AUTH
        )
        r = await http.post("/deployments/car/car-a/rollback", headers=AUTH)
        assert r.status_code == 200 and r.json()["current"] == {"name": "pilot", "version": "1"}
        data = await asyncio.to_thread(retained_payload, broker_url, hub.topics.car_model("car-a"))
        restored = decode_model(data)[0] if data else None
        # a rollback is signed anew: the car's sequence check lets it through
        assert restored is not None and restored.version == "1" and restored.action == "rollback"
        assert restored.sequence == 3
        r = await http.delete("/deployments/car/car-a", headers=AUTH)
        assert r.status_code == 200 and r.json()["current"] is None
        cleared = await asyncio.to_thread(retained_payload, broker_url, hub.topics.car_model("car-a"), 1.0)
        assert cleared is None
        r = await http.post("/deployments/car/car-a/rollback", headers=AUTH)
        assert r.json()["current"] == {"name": "pilot", "version": "1"}
        history = (await http.get("/deployments/car/car-a")).json()["history"]
        assert [h["action"] for h in history] == ["deploy", "deploy", "rollback", "clear", "rollback"]
        assert all(h["published"] for h in history)
        r = await http.post(
            "/deployments", json={"model": {"name": "pilot", "version": "9"}, "car": "car-a"}, headers=AUTH
        )
        assert r.status_code == 404
        r = await http.post(
            "/deployments",
            json={"model": {"name": "pilot", "version": "1"}, "car": "a", "group": "b"},
            headers=AUTH,
        )
        assert r.status_code == 422
        r = await http.post("/deployments/car/nobody/rollback", headers=AUTH)
        assert r.status_code == 404
        targets = {(d["target_kind"], d["target"]) for d in (await http.get("/deployments")).json()}
        assert targets == {("car", "car-a"), ("group", "fleet-a")}
        model = (await http.get("/models/pilot/1")).json()
        assert len(model["deployments"]) == 3
        # clean the broker for the next test run on the shared Mosquitto
        await http.delete("/deployments/group/fleet-a", headers=AUTH)
        await http.delete("/deployments/car/car-a", headers=AUTH)


async def test_sessions_trim_thumbnail_export_delete(hub: HubService, http: httpx.AsyncClient) -> None:
    jpeg = make_jpeg(4000, seed=3)
    car = await record(hub, "car-s", "run-a", 100, jpeg=jpeg)
    car.close()
    r = await http.get("/sessions", params={"car": "car-s"})
    assert r.json()["total"] == 1 and r.json()["sessions"][0]["frame_count"] == 100
    r = await http.post("/sessions/car-s/run-a/trim", json={"start": 20, "end": 29}, headers=AUTH)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["frame_count"] == 90 and s["gaps"] == [] and s["trimmed"] == [[20, 29]]
    assert (s["seq_first"], s["seq_last"]) == (0, 99)
    r = await http.post("/sessions/car-s/run-a/trim", json={"start": 9, "end": 3}, headers=AUTH)
    assert r.status_code == 422
    r = await http.get("/sessions/car-s/run-a/thumbnail", params={"seq": 50, "size": 32})
    assert (
        r.status_code == 200
        and r.headers["content-type"] == "image/jpeg"
        and r.headers["x-paddock-seq"] == "50"
    )
    from PIL import Image

    with Image.open(io.BytesIO(r.content)) as img:
        assert max(img.size) <= 32
    assert (await http.get("/sessions/car-s/run-a/thumbnail", params={"seq": 25})).status_code == 404
    assert (await http.get("/sessions/car-s/run-a/thumbnail")).status_code == 200
    r = await http.get("/sessions/car-s/run-a/export", headers=AUTH)
    assert r.status_code == 200
    seqs = []
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = tar.getnames()
        assert names[0] == "datasets/car-s/run-a/manifest.json"
        for name in names[1:]:
            fh = tar.extractfile(name)
            assert fh is not None
            seqs += [x.seq for x in read_shard(io.BytesIO(fh.read()))]
    assert seqs == [i for i in range(100) if not 20 <= i <= 29]
    r = await http.post(
        "/datasets", json={"name": "ds-1", "sessions": [{"car": "car-s", "session": "run-a"}]}, headers=AUTH
    )
    assert r.status_code == 201
    assert (await http.delete("/sessions/car-s/run-a", headers=AUTH)).status_code == 409
    assert (
        await http.delete("/sessions/car-s/run-a", params={"force": True}, headers=AUTH)
    ).status_code == 204
    assert (await http.get("/sessions/car-s/run-a")).status_code == 404
    assert list(hub.store.list("datasets/car-s/")) == []
    assert (await http.delete("/sessions/car-s/run-a", headers=AUTH)).status_code == 404


async def test_datasets(hub: HubService, http: httpx.AsyncClient) -> None:
    for i in range(5):
        (await record(hub, "car-d", f"s{i}", 5)).close()
    refs = [{"car": "car-d", "session": f"s{i}"} for i in range(5)]
    r = await http.post(
        "/datasets", json={"name": "laps", "sessions": refs, "val_fraction": 0.4, "seed": 1}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    assert len(ds["val"]) == 2 and len(ds["train"]) == 3
    assert {x["session"] for x in ds["train"] + ds["val"]} == {f"s{i}" for i in range(5)}
    again = await http.post(
        "/datasets", json={"name": "laps2", "sessions": refs, "val_fraction": 0.4, "seed": 1}, headers=AUTH
    )
    assert (again.json()["train"], again.json()["val"]) == (ds["train"], ds["val"])  # deterministic
    assert (
        await http.post("/datasets", json={"name": "laps", "sessions": refs}, headers=AUTH)
    ).status_code == 409
    r = await http.post("/datasets", json={"name": "x", "train": refs[:2], "val": refs[1:3]}, headers=AUTH)
    assert r.status_code == 422 and "both train and val" in r.json()["detail"]
    r = await http.post(
        "/datasets", json={"name": "y", "sessions": [{"car": "car-d", "session": "nope"}]}, headers=AUTH
    )
    assert r.status_code == 422 and "unknown sessions" in r.json()["detail"]
    r = await http.post("/datasets", json={"name": "../z", "sessions": refs}, headers=AUTH)
    assert r.status_code == 422
    assert (await http.get("/datasets/laps")).json()["val"] == ds["val"]
    assert json.loads(hub.store.get("datasets/_sets/laps/manifest.json"))["train"] == ds["train"]
    assert {d["name"] for d in (await http.get("/datasets")).json()} == {"laps", "laps2"}
    assert (await http.delete("/datasets/laps2", headers=AUTH)).status_code == 204
    assert (await http.get("/datasets/laps2")).status_code == 404


async def test_jobs_are_published_and_progress_is_tracked(hub: HubService, http: httpx.AsyncClient) -> None:
    (await record(hub, "car-j", "s0", 5)).close()
    await http.post(
        "/datasets", json={"name": "dj", "sessions": [{"car": "car-j", "session": "s0"}]}, headers=AUTH
    )
    url = hub.config.mqtt.url
    sub = await asyncio.to_thread(Sub, url, hub.topics.job_request("train"))
    try:
        await asyncio.sleep(0.2)
        r = await http.post(
            "/jobs", json={"kind": "train", "params": {"dataset": "dj", "epochs": 2}}, headers=AUTH
        )
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["state"] == "queued" and job["published"]
        msg = await asyncio.to_thread(sub.get)
        assert msg is not None
        request = parse_job(msg.payload)
        assert request.job == job["job"] and request.kind == "train" and request.params.dataset == "dj"  # type: ignore[union-attr]
    finally:
        sub.close()
    trainer = FakeCar(url, "trainer", prefix=hub.config.topic_prefix).connect(birth=False)
    t = hub.topics
    for epoch in (1, 2):
        p = JobProgress(
            job=job["job"],
            kind="train",
            state="running",
            epoch=epoch,
            epochs=2,
            loss=1 / epoch,
            ts=time.time(),
        )
        trainer.publish(t.job_progress("train", job["job"]), p.to_json())
    r = await register(http, os.urandom(100), lineage=json.dumps({"dataset": "dj", "job": job["job"]}))
    version = r.json()["version"]
    result = JobResult(
        job=job["job"],
        kind="train",
        status="succeeded",
        model=ModelRef(name="pilot", version=version),
        metrics={"loss": 0.5},
        ts=time.time(),
    )
    trainer.publish(t.job_result("train", job["job"]), result.to_json())
    done = await eventually(
        lambda: (j := hub.catalog.get_job(job["job"])) and j["state"] == "succeeded" and j
    )
    assert done["result"]["model"] == {"name": "pilot", "version": version}
    r = await http.get(f"/jobs/{job['job']}")
    assert [h["epoch"] for h in r.json()["history"]] == [1, 2]
    # An evaluation job's result becomes an evaluation of the model.
    r = await http.post(
        "/jobs",
        json={
            "kind": "evaluate",
            "params": {"model_name": "pilot", "model_version": version, "track": "oval"},
        },
        headers=AUTH,
    )
    ev = r.json()["job"]
    trainer.publish(
        t.job_result("evaluate", ev),
        JobResult(
            job=ev, kind="evaluate", status="succeeded", metrics={"lap_time_s": 11.5}, ts=time.time()
        ).to_json(),
    )
    await eventually(lambda: hub.catalog.evaluations("pilot", version), what="evaluation recorded")
    model = (await http.get(f"/models/pilot/{version}")).json()
    assert model["evaluations"][0]["metrics"] == {"lap_time_s": 11.5}
    assert model["lineage"]["job"] == job["job"]
    trainer.close(death=False)
    r = await http.post("/jobs", json={"kind": "train", "params": {"dataset": "missing"}}, headers=AUTH)
    assert r.status_code == 422 and "unknown dataset" in r.json()["detail"]
    r = await http.post(
        "/jobs",
        json={"kind": "evaluate", "params": {"model_name": "x", "model_version": "1", "track": "t"}},
        headers=AUTH,
    )
    assert r.status_code == 422
    r = await http.post(
        "/jobs", json={"kind": "train", "params": {"epochs": 0, "dataset": "dj"}}, headers=AUTH
    )
    assert r.status_code == 422
    kinds = {j["kind"] for j in (await http.get("/jobs")).json()}
    assert kinds == {"train", "evaluate"}


async def test_commands_reach_the_car_and_its_response_comes_back(
    hub: HubService, http: httpx.AsyncClient
) -> None:
    url = hub.config.mqtt.url
    t = hub.topics
    car = FakeCar(url, "car-c", prefix=hub.config.topic_prefix).connect()

    def respond(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        cmd = parse_command("mode", msg.payload)
        body = {
            "status": "ok",
            "transaction": cmd.transaction,
            "data": {"mode": "autopilot"},
            "ts": time.time(),
        }
        car.client.publish(t.command_response("car-c", "mode"), json.dumps(body), qos=1)

    car.client.on_message = respond
    car.client.subscribe(t.command("car-c", "mode"), qos=1)
    await asyncio.sleep(0.3)
    r = await http.post(
        "/cars/car-c/commands/mode", json={"mode": "autopilot"}, params={"wait": 5}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (
        out["published"]
        and out["response"]["status"] == "ok"
        and out["response"]["transaction"] == out["transaction"]
    )
    r = await http.post("/cars/car-c/commands/mode", json={"mode": "warp"}, headers=AUTH)
    assert r.status_code == 422
    r = await http.post("/cars/car-c/commands/selfdestruct", json={}, headers=AUTH)
    assert r.status_code == 422
    r = await http.post("/fleet/estop", json={"active": True, "reason": "test"}, headers=AUTH)
    assert r.status_code == 200
    data = await asyncio.to_thread(retained_payload, url, t.fleet_estop())
    assert data is not None and json.loads(data)["active"] is True
    await http.post("/fleet/estop", json={"active": False}, headers=AUTH)
    car.close()


async def test_ids_cannot_reach_outside_the_store(hub: HubService) -> None:
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(hub.api_url)

    def status(path: str) -> int:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)  # sends the path as written
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()

    for path in [
        "/sessions/..%2F..%2Fetc/passwd",
        "/sessions/car/..",
        "/sessions/car/%2E%2E/export",
        "/sessions/CAR/s1",
        "/models/..%2F..%2Fetc/1/artifact",
        "/models/pilot/..%2Fx/artifact",
        "/models/pilot/../../../etc/passwd",
        "/datasets/.hidden",
        "/sessions/car/s1/thumbnail?seq=-1",
    ]:
        code = await asyncio.to_thread(status, path)
        assert 400 <= code < 500, (path, code)


async def test_health_metrics_and_fleet(hub: HubService, http: httpx.AsyncClient) -> None:
    (await record(hub, "car-h", "s0", 10)).close()
    health = (await http.get("/health")).json()
    assert health["status"] == "ok" and health["mqtt"]["connected"] and health["spool"]["ok"]
    text = (await http.get("/metrics")).text
    assert 'paddock_hub_frames_persisted_total{car="car-h"} 10.0' in text
    assert 'paddock_hub_frames_missing{car="car-h"} 0.0' in text
    assert "paddock_hub_sink_written_total" in text
    fleet = (await http.get("/fleet")).json()
    assert fleet["frames_sealed"] >= 10 and fleet["sessions"] >= 1
    cars = {c["car"]: c for c in (await http.get("/cars")).json()}
    assert cars["car-h"]["ingest"]["frames_sealed"] == 10
    r = await http.post("/ingest/flush", headers=AUTH)
    assert r.status_code == 200 and r.json()["sealed"] is True
