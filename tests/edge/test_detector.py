"""The detector slot: a classifier beside the pilot, by the signed hot-swap, and its safety rule.

A simulated car on the oval drives the plain line (the expert that does not avoid) into a box on
the centre line. Without a detector it crashes; with one, deployed on its detector topic over a
real broker, the safety rule stops it before the box, and the detections travel in telemetry and
events.
"""

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import DetectorSection
from edge.detector import Detection, Detector, DetectorStage, InferenceWorker
from firmware.car_body import Body
from schemas.errors import ContractError
from schemas.messages import ModelState, Telemetry, parse_event
from schemas.model_card import ClassesSpec, InputSpec, ModelCard, decode_classes, decode_outputs
from schemas.signing import generate_private_key
from tests.edge.detector_kit import tiny_detector
from tests.edge.harness import Observer, RecordingDaemon, T, clear_retained, sim_car_config, until
from tests.edge.modelkit import onnx_model, signed_envelope
from tests.edge.test_car_metrics import exposition, num, promtool_lint, scrape, value

KEY = generate_private_key()
BOX_AT = 60.0  # % of the oval, on a straight: the camera sees the box from 1.6 m


def obstacle_course(tmp_path: Path, url: str, car: str, **detector: Any) -> Any:
    sim, loop = {"obstacles": [BOX_AT]}, {"start_mode": "stop", "autopilot": "expert"}
    metrics = {"enabled": True, "port": 0}
    return sim_car_config(tmp_path, url, KEY, car=car, sim=sim, loop=loop, detector=detector, metrics=metrics)


def crashes(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if e["type"] == "intervention" and e["reason"] == "sim: crash")


def test_a_classifier_card_has_heads_and_no_steering() -> None:
    spec = InputSpec(width=4, height=2)
    card = ModelCard(architecture="x", kind="classifier", input=spec, classes=[
        ClassesSpec(name="obstacle", classes=["none", "box"])
    ])  # fmt: skip
    probs = {"obstacle": np.array([0.25, 0.75], np.float32)}
    assert decode_classes(card, probs) == {"obstacle": ("box", 0.75)}
    assert decode_outputs(card, probs) == {}
    with pytest.raises(ContractError, match="probability"):
        decode_classes(card, {"obstacle": np.array([3.0, 0.8], np.float32)})
    with pytest.raises(ValueError, match="classifier"):
        ModelCard(architecture="x", kind="classifier", input=spec)
    # A pilot's card says nothing of its kind, so its signed bytes are what they always were.
    assert "kind" not in ModelCard(architecture="x", input=spec, outputs=[{"name": "steering"}]).to_dict()


def test_the_rule_holds_after_confirmed_detections_and_lets_go_after_clear_ones() -> None:
    events: list[dict[str, Any]] = []
    rule = DetectorSection(confirm_ticks=2, clear_ticks=3)
    stage = DetectorStage(rule, Body.__new__(Body), emit=events.append)  # a body without a lidar
    stage.detector = object()  # type: ignore[assignment]  # the rule only asks whether one is installed

    def run(kind: str, p: float = 0.9) -> tuple[float, bool]:
        det = Detection(0, "d:1", {"obstacle": (kind, p), "surface": ("wood", 0.9)}, 1.0)
        stage.last = det
        stage._track(det)
        return stage.guard(True, 0.5)

    assert run("box") == (0.5, False)  # one detection is not enough
    assert run("box") == (0.0, True)
    assert [e["type"] for e in events] == ["detection", "intervention"]
    assert events[1]["source"] == "safety_rule" and "box ahead" in events[1]["reason"]
    assert run("none") == (0.0, True) and run("box", 0.3) == (0.0, True)  # unsure: still clear
    assert run("none") == (0.5, False)  # three runs without it
    assert events[-1]["type"] == "detection" and events[-1]["obstacle"] == "none"
    for e in events:
        parse_event(json.dumps(e | {"ts": 1.0}))
    stage.configure(DetectorSection(action="slow", slow_throttle=0.1, confirm_ticks=1))
    assert run("cone") == (0.1, True)
    assert stage.guard(False, 0.5) == (0.5, False)  # manual driving: the rule stays out


class _HeldDetector(Detector):
    """A detector whose runs wait for ``go`` (the worker's bookkeeping, without a model)."""

    def __init__(self, name: str) -> None:
        self.name, self.go, self.started, self.runs = name, threading.Event(), threading.Event(), 0

    @property
    def ref(self) -> str:
        return self.name

    def detect(self, image: np.ndarray) -> tuple[dict[str, tuple[str, float]], float]:
        self.started.set()
        assert self.go.wait(10)
        self.runs += 1
        return {"obstacle": ("none", 1.0)}, 1.0


def test_the_worker_closes_a_retired_detector_only_once_it_is_done_with_it() -> None:
    closed: list[str] = []
    closed_busy = threading.Event()

    def close_busy(detector: Detector) -> None:
        closed.append(detector.ref)
        closed_busy.set()

    worker = InferenceWorker()
    busy, idle = _HeldDetector("busy:1"), _HeldDetector("idle:1")
    image = np.zeros((4, 4, 3), np.uint8)
    try:
        worker.submit(busy, 0, image)
        assert busy.started.wait(10)
        worker.submit(busy, 1, image)
        worker.submit(busy, 2, image)  # replaces tick 1's frame, not started yet
        assert worker.skipped == 1
        worker.retire(idle, lambda d: closed.append(d.ref))  # not in use: closed now
        worker.retire(busy, close_busy)  # running: closed after its run; its waiting frame dropped
        assert closed == ["idle:1"]
        assert not closed_busy.wait(0.2)  # still running
        busy.go.set()
        assert worker.wait_idle(10) and closed_busy.wait(10)  # closed just after its run ends
        assert closed == ["idle:1", "busy:1"] and busy.runs == 1
        assert [(j.tick, j.classes) for j in worker.take()] == [(0, {"obstacle": ("none", 1.0)})]
    finally:
        busy.go.set()
        worker.stop()


async def test_the_detector_stops_the_car_that_crashes_without_it(mosquitto: Any, tmp_path: Path) -> None:
    detector, card = tiny_detector(obstacles=(15.0, BOX_AT))
    url = mosquitto.url

    # Without a detector the plain line runs into the box.
    car = "det-none"
    course = obstacle_course(tmp_path, url, car)
    async with Observer(url, [f"paddock/v1/cars/{car}/#"]) as obs, RecordingDaemon(course) as daemon:
        daemon.set_mode("autopilot")
        await until(lambda: crashes(obs.events(car)), 40, "a crash into the box")
    await clear_retained(url, [T.car_status(car), T.model_state(car)])

    car = "det-on"
    envelope = signed_envelope(detector, KEY, car=car, name="detector", version="1", model_card=card)
    course = obstacle_course(tmp_path, url, car)
    async with Observer(url, [f"paddock/v1/cars/{car}/#"]) as obs, RecordingDaemon(course) as daemon:
        await until(lambda: daemon.link.connected.is_set())
        # The pilot's slot refuses a classifier; the detector's slot refuses a pilot.
        await obs.publish(T.car_model(car), envelope, retain=True)
        rejected = await until(lambda: obs.events(car, "model_rejected"), what="classifier refused")
        assert "classifier" in rejected[0]["reason"] and "slot" not in rejected[0]
        pilot = signed_envelope(onnx_model(), KEY, car=car, name="pilot", version="1")
        await obs.publish(T.car_detector(car), pilot, retain=True)
        rejected = await until(lambda: obs.events(car, "model_rejected")[1:], what="pilot refused")
        assert rejected[0]["slot"] == "detector" and "pilot" in rejected[0]["reason"]

        await obs.publish(T.car_detector(car), envelope, retain=True)
        swapped = await until(lambda: obs.events(car, "model_swapped"), 30, "detector swapped in")
        assert swapped[0]["slot"] == "detector" and swapped[0]["name"] == "detector"
        daemon.set_mode("autopilot")
        hold = await until(
            lambda: [e for e in obs.events(car, "intervention") if e.get("source") == "safety_rule"],
            40,
            "the safety rule",
        )
        assert "box ahead" in hold[0]["reason"]
        stopped_at = len(daemon.ticks)
        await until(lambda: len(daemon.ticks) > stopped_at + 120, 30, "four more simulated seconds")
        assert daemon.status()["detector"] == "detector:1" and daemon.status()["safety_holds"] >= 1
        assert daemon.metrics is not None and daemon.metrics.port
        scraped = await scrape(daemon.metrics.port)
        assert promtool_lint(await exposition(daemon.metrics.port)) == ""
        body = daemon.ticks[-1].body
        assert body is not None and body.speed < 0.05 and BOX_AT - 10 < (body.progress or 0) < BOX_AT
    assert crashes(obs.events(car)) == 0
    detections = obs.events(car, "detection")
    assert detections and detections[0]["obstacle"] == "box" and detections[0]["model"] == "detector:1"
    assert detections[0]["distance_m"] is not None and detections[0]["distance_m"] < 2.0
    telemetry = [Telemetry.from_dict(t) for t in obs.json(T.telemetry(car))]
    held = [t for t in telemetry if t.safety_hold]
    assert held and held[-1].obstacle == "box" and held[-1].detector == "detector:1"
    assert any(t.detector_ms is not None and t.detector_ms > 0 for t in telemetry)
    assert held[-1].interventions is not None and held[-1].interventions >= 1
    state = ModelState.from_json(obs.messages[T.detector_state(car)][-1].payload)  # type: ignore[arg-type]
    assert state.active == "detector:1"
    assert value(scraped, "paddock_car_obstacle_class", car=car, **{"class": "box"}) == 1
    assert value(scraped, "paddock_car_detector_info", car=car, model="detector:1") == 1
    assert num(scraped, "paddock_car_detector_runs_total", car=car) > 10
    assert num(scraped, "paddock_car_safety_holds_total", car=car) >= 1
    retained = [T.car_model(car), T.car_detector(car), T.detector_state(car)]
    await clear_retained(url, [T.car_status(car), T.model_state(car), *retained])
