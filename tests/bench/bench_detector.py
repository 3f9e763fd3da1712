"""The detector on the car: collisions with and without its safety rule, and the control loop's
lateness with the pilot alone and with pilot and detector together, in one run.

* **Collisions**: the whole daemon on a simulated body (lockstep clock, 30 Hz, 4× real time), a
  behavioural-cloning pilot (tests/edge/trained.py: a small CNN cloned from the expert on the plain
  oval, which never saw an obstacle) on an obstacle course (boxes on the centre line at 15 % and
  60 %), for ``COURSE_S`` simulated seconds: once without a detector, once with the detector
  (tests/edge/detector_kit.py, trained on the course's look) and its safety rule. Collisions are
  the simulator's crash events.
* **Loop timing**: the same daemon at 30 Hz on the realtime clock (as on a car), connected to a
  broker, recording (frames and lidar scans), with the trainer's DonkeyCar-style linear pilot;
  lateness p50 / p99 / max, missed ticks and the tick's own duration, for the pilot alone, the
  pilot plus the detector on every tick with its inference on the tick (``detector.worker =
  false``) and on its worker thread (the default); each under default scheduling and with the
  control thread real-time (``loop.realtime_priority = 10``, as the car's unit allows).

    python -m pytest tests/bench/bench_detector.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python -m tests.bench.bench_detector [--tflite]

``--tflite`` (and the pytest form) also converts a detector to TFLite and checks it in the car's
LiteRT runtime against ONNX.
"""

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from schemas.envelope import decode
from schemas.model_card import ModelManifest
from schemas.signing import generate_private_key
from tests.bench.bench_edge_loop import Broker, linear_pilot_envelope
from tests.edge.detector_kit import tiny_detector
from tests.edge.harness import RecordingDaemon, car_config, sim_car_config, until
from tests.edge.modelkit import signed_envelope
from tests.edge.trained import CARD, tiny_pilot

KEY = generate_private_key()
BOXES = [15.0, 60.0]
COURSE_S = 40.0
TIMING_S = 10.0


def _detector_envelope(car: str) -> bytes:
    data, card = tiny_detector(obstacles=tuple(BOXES))
    return signed_envelope(data, KEY, car=car, name="detector", version="1", model_card=card)


async def _course(url: str, tmp: Path, with_detector: bool) -> dict[str, Any]:
    car = "bench-course-det" if with_detector else "bench-course"
    detector = _detector_envelope(car) if with_detector else None
    course = {"sim": {"obstacles": BOXES}, "loop": {"start_mode": "stop"}, "publish": {"telemetry_hz": 5}}
    cfg = sim_car_config(tmp, url, KEY, car=car, **course)
    pilot = signed_envelope(tiny_pilot(), KEY, car=car, name="bc", version="1", model_card=CARD)
    async with RecordingDaemon(cfg) as daemon:
        assert await daemon.offer_model(pilot)
        if detector is not None:
            assert await daemon.detectors.process(detector, time.monotonic_ns())
        daemon.set_mode("autopilot")
        ticks = len(daemon.ticks) + round(COURSE_S * 30)
        await until(lambda: len(daemon.ticks) >= ticks, 10 * COURSE_S, "the course's ticks")
        events = list(daemon.local_events)
        last = daemon.ticks[-1].body
        status = daemon.status()
    crashes = sum(1 for e in events if e["type"] == "intervention" and e["reason"] == "sim: crash")
    holds = [e for e in events if e.get("source") == "safety_rule"]
    return {
        "detector": detector is not None,
        "collisions": crashes,
        "holds": len(holds),
        "first_hold": holds[0]["reason"] if holds else "",
        "laps": sum(1 for e in events if e["type"] == "lap"),
        "progress": last.progress if last else None,
        "lap": last.lap if last else None,
        "detector_runs": status.get("detector_runs", 0),
    }


async def _timing(url: str, tmp: Path, detector_mode: str | None, rt: bool) -> dict[str, Any]:
    """``detector_mode``: None (pilot alone), ``"tick"`` or ``"worker"``."""
    name = f"bench-timing-{detector_mode or 'pilot'}{'-rt' if rt else ''}"
    pilot = _signed_linear_pilot(name)
    detector = _detector_envelope(name) if detector_mode else None
    loop: dict[str, Any] = {"hz": 30, "start_mode": "autopilot"} | ({"realtime_priority": 10} if rt else {})
    cfg = car_config(
        tmp,
        url,
        KEY,
        car=name,
        camera={"kind": "sim"},
        actuators={"kind": "sim"},
        sim={"track": "oval", "clock": "realtime"},
        loop=loop,
        publish={"telemetry_hz": 5},
        detector={"worker": detector_mode == "worker"},
    )
    async with RecordingDaemon(cfg) as car:
        assert await car.offer_model(pilot)
        if detector is not None:
            assert await car.detectors.process(detector, time.monotonic_ns())
        car.start_recording()
        await asyncio.sleep(1.0)
        timer = car.loop.timer
        missed0 = timer.missed
        timer._late.clear()  # this window only
        first = len(car.ticks)
        await asyncio.sleep(TIMING_S)
        ticks = car.ticks[first:]
        timing = timer.stats()
        car.stop_recording()
    inference = [t.inference_ms for t in ticks if t.inference_ms is not None]
    detections = {id(t.detection): t.detection for t in ticks if t.detection is not None}
    det_ms = [d.inference_ms for d in detections.values()]
    return {
        "models": f"pilot + detector ({detector_mode})" if detector_mode else "pilot",
        "sched": "fifo 10" if rt else "default",
        "ticks": len(ticks),
        "p50": timing.late_p50_ms,
        "p99": timing.late_p99_ms,
        "max": timing.late_max_ms,
        "missed": timer.missed - missed0,
        "pilot_ms": sum(inference) / len(inference),
        "detector_ms": sum(det_ms) / len(det_ms) if det_ms else None,
        "detector_runs": len(det_ms),
    }


def _signed_linear_pilot(car: str) -> bytes:
    env = decode(linear_pilot_envelope())
    m = ModelManifest.from_dict(env.header)
    return signed_envelope(env.payload, KEY, car=car, name=m.name, version=m.version, model_card=m.card)


def tflite_parity() -> dict[str, Any]:
    """The detector as TFLite (litert-torch, in a child process: about 100 s on a loaded two-core
    machine, so it is measured here rather than in CI) run by the car's LiteRT runtime, against the
    same network as ONNX in the car's ONNX Runtime."""
    import numpy as np
    import torch

    from edge.runtimes import runtime_for
    from schemas.model_card import decode_classes, preprocess
    from trainer.perception.export import detector_model_card, export_onnx, export_tflite
    from trainer.perception.models import NetOptions, PerceptionNet

    torch.manual_seed(0)
    model = PerceptionNet(NetOptions(width_multiplier=0.5, hidden=16)).eval()
    card = detector_model_card(model)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        tflite = export_tflite(model, Path(tmp) / "detector.tflite").read_bytes()
        seconds = time.perf_counter() - started
        onnx = export_onnx(model, Path(tmp) / "detector.onnx").read_bytes()
    lite, ref = runtime_for("tflite").load(tflite, card), runtime_for("onnx").load(onnx, card)
    rng = np.random.default_rng(0)
    diff = 0.0
    for _ in range(8):
        sample = preprocess(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), card.input)
        a, b = lite.run(sample), ref.run(sample)
        assert decode_classes(card, a).keys() == {"obstacle", "surface"}
        diff = max(diff, *(float(np.abs(a[t] - b[t]).max()) for t in ("obstacle", "surface")))
    print(
        f"\ndetector.tflite: {len(tflite)} bytes, converted in {seconds:.0f} s; "
        f"largest probability difference to ONNX over 8 frames: {diff:.2e}"
    )
    return {"bytes": len(tflite), "max_diff": diff}


def run() -> dict[str, list[dict[str, Any]]]:
    with Broker() as url, tempfile.TemporaryDirectory() as tmp:
        course = [asyncio.run(_course(url, Path(tmp), d)) for d in (False, True)]
        _print_course(course)
        modes = (None, "tick", "worker")
        timing = [asyncio.run(_timing(url, Path(tmp), m, rt)) for rt in (False, True) for m in modes]
        _print_timing(timing)
    return {"course": course, "timing": timing}


def _print_course(course: list[dict[str, Any]]) -> None:
    print()
    print(f"obstacle course: oval, boxes at {BOXES} % on the centre line, BC pilot, {COURSE_S:.0f} sim s")
    print(
        f"{'detector':<10} {'collisions':>10} {'rule holds':>10} {'laps':>5} {'stopped at':>12}  first hold"
    )
    for r in course:
        where = f"lap {r['lap']} {r['progress']:.1f}%"
        print(
            f"{'on' if r['detector'] else 'off':<10} {r['collisions']:>10} {r['holds']:>10} {r['laps']:>5}"
            f" {where:>12}  {r['first_hold']}"
        )


def _print_timing(timing: list[dict[str, Any]]) -> None:
    print()
    print(f"control loop at 30 Hz, realtime sim body, recording, {TIMING_S:.0f} s each; lateness in ms")
    print(
        f"{'models':<27} {'sched':<8} {'ticks':>6} {'p50':>7} {'p99':>7} {'max':>7} {'missed':>6}"
        f" {'pilot ms':>8} {'det ms':>7}"
    )
    for r in timing:
        det = f"{r['detector_ms']:.2f}" if r["detector_ms"] is not None else "-"
        print(
            f"{r['models']:<27} {r['sched']:<8} {r['ticks']:>6} {r['p50']:>7.3f} {r['p99']:>7.3f}"
            f" {r['max']:>7.3f} {r['missed']:>6} {r['pilot_ms']:>8.2f} {det:>7}"
        )


def test_bench_detector() -> None:
    assert tflite_parity()["max_diff"] < 1e-4
    results = run()
    without, with_rule = results["course"]
    assert without["collisions"] > 0 and with_rule["detector_runs"] > 0
    assert all(r["ticks"] > 0 for r in results["timing"])


if __name__ == "__main__":
    if "--tflite" in sys.argv:
        tflite_parity()
    run()
