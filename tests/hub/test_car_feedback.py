"""Feedback the car captures while not recording: a real Mosquitto, a real hub and a simulated car
(test-pattern camera, a constant pilot). A human takeover keeps the frames from ``before_s`` before
to ``after_s`` after it; they reach the hub loss-free as a session of their own, the feedback
collector takes them with the car's reason, and a second takeover inside ``min_interval_s`` is only
counted."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import HubConfig, HubService
from tests.edge.harness import ConstantPilot, RecordingDaemon, car_config, until
from tests.hub.conftest import TOKEN, read_session

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAR = "car-fb"
BEFORE_S, AFTER_S = 1.0, 0.6


def feedback_car(tmp_path: Path, hub: HubService) -> RecordingDaemon:
    config = car_config(
        tmp_path,
        hub.config.mqtt.url,
        car=CAR,
        broker={"prefix": hub.config.topic_prefix},
        loop={"hz": 50, "start_mode": "autopilot", "autopilot": "const"},
        camera={"kind": "test_pattern", "fps": 20},
        publish={"telemetry_hz": 5, "preview_hz": 2},
        feedback={"enabled": True, "before_s": BEFORE_S, "after_s": AFTER_S, "min_interval_s": 30},
    )
    return RecordingDaemon(config, pilots={"const": ConstantPilot(0.1, 0.2)})


@pytest.mark.parametrize("outage", [False, True], ids=["online", "broker-away"])
async def test_a_takeover_while_not_recording_reaches_the_feedback_dataset(
    tmp_path: Path, mosquitto_factory: Any, make_config: Callable[..., HubConfig], outage: bool
) -> None:
    broker = mosquitto_factory()
    broker.start()
    hub = HubService(make_config(broker.url, mlops={"feedback_scan_s": 3600}))
    car = feedback_car(tmp_path, hub)
    async with hub, car, httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        await until(lambda: car.link.connected.is_set(), 10, "the car online")
        await asyncio.sleep(BEFORE_S + 0.5)  # the ring fills
        assert not car.recorder.recording
        if outage:  # the capture is taken and spooled while the broker is away
            broker.stop()
            await until(lambda: not car.link.connected.is_set(), 10, "the car offline")
        car.drive(0.5, 0.3)
        car.set_mode("manual")
        await until(lambda: car.feedback.captures == 1, 10, "the capture to close")
        if outage:
            await until(lambda: car.feedback.pending == 0, 10, "the capture spooled")
            assert car.spool.pending_records >= car.feedback.frames_sent > 0
            broker.start()  # same port and persistence
        car.set_mode("autopilot")
        await until(lambda: car.ticks[-1].mode == "autopilot", 5, "the autopilot back")
        car.set_mode("manual")  # a second takeover inside min_interval_s: counted, not sent
        stopped = await until(
            lambda: [e for e in car.local_events if e["type"] == "recording_stopped"], 10, "the capture sent"
        )
        session = stopped[0]["session"]
        manifest = await hub.wait_sealed(CAR, session, timeout=20)
        await until(lambda: car.feedback.suppressed == 1, 5, "the second takeover counted")
        sent = car.feedback.frames_sent
        ticks = [t for t in car.ticks if t.new_frame and t.frame is not None]

        r = await http.post("/feedback/collect", headers=AUTH)
        assert r.status_code == 200, r.text
        dataset = (await http.get("/feedback")).json()
        assert dataset["train"] == [{"car": CAR, "session": session}]  # the capture itself, not a copy
        listed = (await http.get(f"/sessions/{CAR}/{session}")).json()
        assert (await http.get(f"/sessions/{CAR}/{session}-feedback")).status_code == 404
        rows = (await http.get("/sessions", params={"car": CAR})).json()["sessions"]
        sessions = [s["session"] for s in rows]
        assert sessions.count(session) == 1 and not [s for s in sessions if s.endswith("-feedback")]
        r = await http.post("/feedback/collect", headers=AUTH)  # read again: nothing new, no copy
        assert r.json()["sessions"] == [] and (await http.get("/feedback")).json() == dataset

    assert session.startswith("feedback-intervention-") and stopped[0]["frames"] == sent
    assert car.feedback.captures == 1 and len(stopped) == 1
    # ~1 s before and ~0.6 s after at 20 fps, every frame once, consecutive seqs and camera frames
    assert (BEFORE_S + AFTER_S) * 20 * 0.6 <= sent <= (BEFORE_S + AFTER_S) * 20 * 1.3, sent
    assert manifest.frame_count == sent and listed["frame_count"] == sent
    first, last = manifest.seq_first, manifest.seq_last
    assert first is not None and last is not None
    assert manifest.gaps == [] and last - first + 1 == sent
    stored, samples = read_session(hub.config.data_dir / "store", CAR, session)
    assert stored["frame_count"] == sent and [i["name"] for i in stored["shards"]] == [
        i.name for i in manifest.shards
    ]
    seqs = [s.seq for s in samples]
    assert seqs == list(range(first, last + 1))
    indices = [s.record["frame_index"] for s in samples]
    assert indices == list(range(indices[0], indices[0] + sent))
    modes = [s.record["mode"] for s in samples]
    takeover = modes.index("manual")
    assert set(modes[:takeover]) == {"autopilot"} and set(modes[takeover:]) == {"manual"}
    by_index = {t.frame.index: t for t in ticks if t.frame is not None}
    span_before = (by_index[indices[takeover]].t_ns - by_index[indices[0]].t_ns) / 1e9
    span_after = (by_index[indices[-1]].t_ns - by_index[indices[takeover]].t_ns) / 1e9
    assert BEFORE_S - 0.2 <= span_before <= BEFORE_S + 0.1, span_before
    assert AFTER_S - 0.2 <= span_after <= AFTER_S + 0.1, span_after
    assert {s.record["feedback"] for s in samples} == {"car: intervention: human takeover"}
    assert {s.record["feedback_model"] for s in samples} == {"const"}
    labels = [s.record["label"] for s in samples[takeover:]]  # the human's action is the label
    assert labels == [
        {"steering": s.record["steering"], "throttle": s.record["throttle"]} for s in samples[takeover:]
    ]
    assert {"steering": 0.5, "throttle": 0.3} in labels
    assert all("label" not in s.record for s in samples[:takeover])
