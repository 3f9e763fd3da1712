"""Object stores: keys never leave the store; the S3 path works end to end against moto's server."""

import asyncio
import io
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from hub import HubConfig, HubService
from infra.store import LocalStore, NoSuchKey, S3Store, check_key, open_store
from schemas.shards import read_shard
from tests.hub.conftest import TOKEN
from tests.hub.fakecar import FakeCar

S3_KEYS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


@pytest.mark.parametrize(
    "bad", ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a\\b", "a/b\x00", ".hidden", "x" * 2000]
)
def test_keys_outside_the_alphabet_are_rejected(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        check_key(bad)
    with pytest.raises(ValueError):
        LocalStore(tmp_path).put(bad, b"x")


def test_local_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s"))
    store.put("a/b/c.bin", b"123")
    assert store.get("a/b/c.bin") == b"123" and store.size("a/b/c.bin") == 3 and store.exists("a/b/c.bin")
    src = tmp_path / "f"
    src.write_bytes(b"file")
    store.put_file("a/d.bin", src)
    assert list(store.list("a/")) == ["a/b/c.bin", "a/d.bin"]
    store.delete("a/b/c.bin")
    assert not (tmp_path / "s" / "a" / "b").exists()  # empty folders go too
    with pytest.raises(NoSuchKey):
        store.get("a/b/c.bin")
    assert open_store((tmp_path / "s").as_uri()).get("a/d.bin") == b"file"


def _s3(url: str, bucket: str, prefix: str = "") -> S3Store:
    return S3Store(bucket, prefix, endpoint_url=url, **S3_KEYS)


def test_s3_store_against_moto(s3_server) -> None:  # type: ignore[no-untyped-def]
    store = _s3(s3_server.url, f"b-{uuid.uuid4().hex[:8]}", "fleet/one")
    store.check()  # creates the bucket
    store.put("datasets/c/s/x.tar", b"abc")
    assert store.get("datasets/c/s/x.tar") == b"abc"
    assert store.size("datasets/c/s/x.tar") == 3 and store.exists("datasets/c/s/x.tar")
    assert not store.exists("nope")
    with pytest.raises(NoSuchKey):
        store.get("nope")
    with store.open("datasets/c/s/x.tar") as fh:
        assert fh.read() == b"abc"
    assert list(store.list("datasets/")) == ["datasets/c/s/x.tar"]
    store.delete("datasets/c/s/x.tar")
    assert list(store.list("datasets/")) == []
    with pytest.raises(ValueError):
        store.put("../escape", b"x")


async def test_hub_records_to_s3_and_serves_from_it(
    s3_server, mosquitto, make_config: Callable[..., HubConfig]
) -> None:  # type: ignore[no-untyped-def]
    bucket = f"hub-{uuid.uuid4().hex[:8]}"
    cfg = make_config(
        mosquitto.url,
        store={"url": f"s3://{bucket}/paddock", "endpoint_url": s3_server.url, **S3_KEYS},
        shards={"target_mb": 0.05},
    )
    async with HubService(cfg) as hub:
        car = FakeCar(mosquitto.url, "s3-car", prefix=cfg.topic_prefix).connect()
        sent = await asyncio.to_thread(car.record, "lap-1", 120, skip={7})
        car.stop_recording("lap-1")
        await hub.wait_sealed("s3-car", "lap-1")
        car.close()
        async with httpx.AsyncClient(base_url=hub.api_url) as http:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            model = os.urandom(5000)
            card = {
                "architecture": "linear",
                "input": {"width": 160, "height": 120},
                "outputs": [{"name": "steering"}],
            }
            r = await http.post(
                "/models",
                data={"name": "s3pilot", "card": json.dumps(card)},
                files={"artifact": ("m.onnx", model)},
                headers=headers,
            )
            assert r.status_code == 201, r.text
            assert (await http.get("/models/s3pilot/1/artifact", headers=headers)).content == model
            r = await http.post(
                "/sessions/s3-car/lap-1/trim", json={"start": 100, "end": 200}, headers=headers
            )
            assert r.json()["frame_count"] == 99
            r = await http.get("/sessions/s3-car/lap-1/thumbnail")
            assert r.status_code == 200
    # Read the session straight from the bucket, as a trainer would.
    s3 = _s3(s3_server.url, bucket, "paddock")
    manifest = json.loads(s3.get("datasets/s3-car/lap-1/manifest.json"))
    assert manifest["gaps"] == [[7, 7]] and len(manifest["shards"]) > 1
    seqs = []
    for shard in manifest["shards"]:
        seqs += [s.seq for s in read_shard(io.BytesIO(s3.get(f"datasets/s3-car/lap-1/{shard['name']}")))]
    assert seqs == [s for s in sent if s < 100]
    assert s3.get("models/s3pilot/1/model.onnx") == model
    assert list(_s3(s3_server.url, bucket).list("paddock/models/s3pilot/1/")) == [
        "paddock/models/s3pilot/1/card.json",
        "paddock/models/s3pilot/1/model.json",
        "paddock/models/s3pilot/1/model.onnx",
    ]
