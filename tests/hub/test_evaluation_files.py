"""Evaluation files through the hub: a real evaluate job (the trainer's closed loop with its video)
writes into the hub's store, its result comes over MQTT, and the hub serves the lap video and the
track map with the content type and byte ranges a browser's ``<video>`` needs."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hub import HubConfig, HubService
from schemas.messages import EvaluateParams, JobResult
from tests.edge.modelkit import card, onnx_model
from tests.hub.conftest import TOKEN, eventually
from tests.hub.fakecar import FakeCar
from trainer.evaluate import run_evaluate_job
from trainer.pipeline import TrainerSettings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _register(http: httpx.AsyncClient) -> str:
    r = await http.post(
        "/models",
        data={"name": "pilot", "card": card().model_dump_json()},
        files={"artifact": ("pilot.onnx", onnx_model(steering=0.3, throttle=0.5))},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["version"])


def _evaluate(hub: HubService, version: str, work: Path, job: str) -> JobResult:
    """What a trainer agent does with an evaluate job, against the hub's own store."""
    settings = TrainerSettings(store=hub.config.store_url, work_dir=str(work), progress_bar=False)
    params = EvaluateParams(model_name="pilot", model_version=version, track="oval", laps=1)
    return run_evaluate_job(params, settings, job=job)


def _report(hub: HubService, result: JobResult) -> None:
    trainer = FakeCar(hub.config.mqtt.url, "trainer", prefix=hub.config.topic_prefix).connect(birth=False)
    trainer.publish(hub.topics.job_result("evaluate", result.job), result.to_json())
    trainer.close(death=False)


async def test_the_hub_serves_an_evaluations_lap_video_with_ranges(
    mosquitto: Any, make_config: Callable[..., HubConfig], tmp_path: Path
) -> None:
    async with HubService(make_config(mosquitto.url)) as hub, httpx.AsyncClient(base_url=hub.api_url) as http:
        version = await _register(http)
        result = await asyncio.to_thread(_evaluate, hub, version, tmp_path / "work", "eval-video")
        assert result.artifacts["video"] == "evals/eval-video/run.mp4"
        # a result naming a key outside evals/ (a model, a session) must not make it downloadable
        leaky = result.model_copy(
            update={"job": "eval-leak", "artifacts": {"video": "models/pilot/1/model.onnx"}}
        )
        await asyncio.to_thread(_report, hub, result)
        await asyncio.to_thread(_report, hub, leaky.model_copy(update={"ts": time.time()}))
        await eventually(lambda: len(hub.catalog.evaluations("pilot", version)) == 2, what="evaluations")
        model = (await http.get(f"/models/pilot/{version}")).json()
        by_job = {e["job"]: e for e in model["evaluations"]}
        files = by_job["eval-video"]["files"]
        assert set(files) >= {"video", "map", "simtrace", "report"} and by_job["eval-leak"]["files"] == {}
        video_path = files["video"].removeprefix(hub.api_url)
        stored = hub.store.get("evals/eval-video/run.mp4")

        whole = await http.get(video_path)
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
        assert whole.headers["accept-ranges"] == "bytes" and whole.content == stored
        assert stored[4:8] == b"ftyp" and b"avc1" in stored, "an H.264 MP4 (what browsers play)"
        head = await http.get(video_path, headers={"Range": "bytes=0-99"})
        assert head.status_code == 206 and head.content == stored[:100]
        assert head.headers["content-range"] == f"bytes 0-99/{len(stored)}"
        tail = await http.get(video_path, headers={"Range": "bytes=-64"})
        assert tail.status_code == 206 and tail.content == stored[-64:]
        middle = await http.get(video_path, headers={"Range": f"bytes=1000-{len(stored) + 50}"})
        assert middle.status_code == 206 and middle.content == stored[1000:]
        beyond = await http.get(video_path, headers={"Range": f"bytes={len(stored)}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(stored)}"

        plot = await http.get(files["map"].removeprefix(hub.api_url))
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        assert plot.content.startswith(b"\x89PNG")
        base = f"/models/pilot/{version}/evaluations"
        assert (await http.get(f"{base}/eval-leak/files/video")).status_code == 404
        assert (await http.get(f"{base}/eval-video/files/nothere")).status_code == 404
        assert (await http.get(f"{base}/nojob/files/video")).status_code == 404
        assert (await http.get(f"{base}/eval-video/files/video?token=wrong")).status_code == 401


def test_a_byte_range_streams_from_an_s3_store_too(s3_server: Any) -> None:
    """An S3 store opens a range at its start (a ranged GET): nothing before it is downloaded."""
    import os
    import uuid

    from hub.api.routes.evaluations import _chunks, byte_range
    from tests.hub.test_store import _s3

    store = _s3(s3_server.url, f"b-{uuid.uuid4().hex[:8]}")
    store.check()
    data = os.urandom(700_000)  # more than two of the route's chunks
    store.put("evals/e1/run.mp4", data)
    first, last = byte_range("bytes=300000-650000", store.size("evals/e1/run.mp4")) or (0, 0)
    assert b"".join(_chunks(store.open("evals/e1/run.mp4", first), last - first + 1)) == data[300_000:650_001]
