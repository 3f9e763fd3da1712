"""The feedback capture on the control thread's side, with a real spool: which moments open a
capture, what a capture holds, the rate limit, and nothing while recording."""

from pathlib import Path
from typing import Any

import numpy as np

from edge.config import FeedbackSection
from edge.feedback import FeedbackCapture
from edge.loop import TickResult
from edge.pilots import Decision
from edge.recorder import FrameSeq
from edge.spool import ForwardSpool
from firmware.camera import Frame
from schemas.payloads import decode_frame

TICK_NS = 50_000_000  # 20 Hz, one new frame a tick


def tick(i: int, confidence: float | None = 0.9, mode: Any = "autopilot") -> TickResult:
    frame = Frame(np.zeros((8, 8, 3), np.uint8), i * TICK_NS, i)
    return TickResult(
        tick=i, t_ns=i * TICK_NS, mode=mode, requested_mode=mode, estop=False, steering=0.1, throttle=0.2,
        pilot="m:1", inference_ms=1.0, frame=frame, new_frame=True, reason=None, body=None,
        decision=Decision(0.1, 0.2, 1.0, confidence=confidence),
    )  # fmt: skip


def capture(tmp_path: Path, **cfg: Any) -> tuple[FeedbackCapture, list[dict[str, Any]]]:
    done: list[dict[str, Any]] = []
    spool = ForwardSpool(tmp_path / "spool", 16 * 1024 * 1024)
    config = FeedbackSection.model_validate(
        {"enabled": True, "before_s": 0.5, "after_s": 0.25, "min_interval_s": 2.0} | cfg
    )
    fb = FeedbackCapture("car-1", lambda: config, FrameSeq(), spool, on_done=done.append)
    fb.start()
    return fb, done


def spooled(fb: FeedbackCapture) -> list[Any]:
    from edge.spool import FIRST, Position

    return [decode_frame(r.data)[0] for r in fb.spool.read(Position(0, FIRST), 1000)]


def test_low_confidence_keeps_before_and_after_once_per_interval(tmp_path: Path) -> None:
    fb, done = capture(tmp_path)
    for i in range(40):  # 2 s; low confidence at 1.0 s and (rate-limited) at 1.5 s
        fb.on_tick(tick(i, confidence=0.1 if i in (20, 30) else 0.9), recording=False)
    fb.stop()
    records = spooled(fb)
    # the ring: ticks 10..20 (0.5 s before, the low one included), then 0.25 s after: 21..25
    assert [r.frame_index for r in records] == list(range(10, 26))
    assert [r.seq for r in records] == list(range(16))
    assert {r.session for r in records} == {done[0]["session"]} and done[0]["frames"] == 16
    assert done[0]["session"].startswith("feedback-low-confidence-")
    assert records[0].feedback_reason == "confidence 0.10 < 0.30" and not records[0].recorded
    assert fb.captures == 1 and fb.suppressed == 1 and len(done) == 1


def test_off_track_event_and_nothing_while_recording(tmp_path: Path) -> None:
    fb, done = capture(tmp_path, events=["off_track"])
    for i in range(20):
        fb.on_tick(tick(i, confidence=0.0), recording=i < 5)  # low confidence is not listened to
        if i == 2:
            fb.on_event({"type": "off_track"})  # while recording: the recorded session has it
    fb.on_event({"type": "intervention", "reason": "human takeover"})  # not in events
    assert fb.captures == 0 and fb.suppressed == 0
    fb.on_event({"type": "off_track"})
    for i in range(20, 30):
        fb.on_tick(tick(i), recording=False)
    fb.stop()
    records = spooled(fb)
    assert [r.frame_index for r in records] == list(range(9, 25))  # 0.5 s of ring (5..19 minus old)
    assert {r.feedback_event for r in records} == {"off_track"} and len(done) == 1


def test_a_moment_from_another_thread_is_taken_at_the_next_tick(tmp_path: Path) -> None:
    fb, done = capture(tmp_path, after_s=0.0)
    for i in range(5):
        fb.on_tick(tick(i), recording=False)
    fb.request("drifted_input", "input PSI 0.80 > 0.25")  # the telemetry task's check
    fb.on_tick(tick(5), recording=False)
    fb.on_tick(tick(6), recording=False)
    fb.stop()
    records = spooled(fb)
    assert [r.frame_index for r in records] == [0, 1, 2, 3, 4, 5]
    assert done[0]["session"].startswith("feedback-drifted-input-")
    assert {r.feedback_reason for r in records} == {"input PSI 0.80 > 0.25"}


async def _drifted_capture(
    broker_url: str, tmp_path: Path, car_id: str, model: bytes, card: Any, **moments: Any
) -> tuple[Any, list[dict[str, Any]]]:
    """A car on autopilot with ``model`` and its ``card``, capturing drifted-input moments: the
    car and its ``recording_stopped`` events once the first capture ended."""
    from tests.edge.harness import RecordingDaemon, car_config, until
    from tests.edge.modelkit import signed_envelope

    feedback = {"enabled": True, "before_s": 0.5, "after_s": 0.2, "events": ["drifted_input"], **moments}
    cfg = car_config(
        tmp_path, broker_url, car=car_id, loop={"start_mode": "autopilot"},
        publish={"telemetry_hz": 20}, feedback=feedback,
    )  # fmt: skip
    car = RecordingDaemon(cfg)
    async with car:
        assert await car.offer_model(signed_envelope(model, None, model_card=card))
        stopped = await until(
            lambda: [e for e in car.local_events if e["type"] == "recording_stopped"], 10, "a capture"
        )
    return car, stopped


async def test_inputs_unlike_the_model_cards_are_a_drifted_input_moment(
    broker_url: str, tmp_path: Path
) -> None:
    """A model whose card says it was trained on black images, driving on the test pattern."""
    from edge.hotswap import ModelManager
    from schemas.input_stats import BINS, InputStats
    from tests.edge.modelkit import card, onnx_model

    black = InputStats(
        frames=100, brightness_mean=0.0, brightness_hist=[1.0] + [0.0] * (BINS - 1),
        colour_hist=([1.0] + [0.0] * (BINS - 1)) * 3,
    )  # fmt: skip
    trained_on_black = card().model_copy(update={"input_stats": black})
    car, stopped = await _drifted_capture(broker_url, tmp_path, "car-drift", onnx_model(), trained_on_black)
    assert isinstance(car._models, ModelManager) and car._models.active is not None
    assert stopped[0]["session"].startswith("feedback-drifted-input-"), stopped
    assert stopped[0]["reason"].startswith("feedback: drifted_input: input PSI ") and stopped[0]["frames"] > 0


async def test_features_unlike_the_model_cards_are_a_drifted_input_moment(
    broker_url: str, tmp_path: Path
) -> None:
    """A model whose card says its features were far from what it sees, the pixels aside."""
    from schemas.input_stats import BINS, FeatureStats, InputStats
    from schemas.model_card import FeaturesSpec
    from tests.edge.modelkit import card, onnx_model

    elsewhere = InputStats(
        frames=100, brightness_mean=0.5, brightness_hist=[1.0 / BINS] * BINS,
        colour_hist=[1.0 / BINS] * 3 * BINS,
        features=FeatureStats(samples=100, mean=[5.0] * 3, std=[0.1] * 3),
    )  # fmt: skip
    with_features = card().model_copy(update={"features": FeaturesSpec(size=3), "input_stats": elsewhere})
    model = onnx_model(features=True)
    car, stopped = await _drifted_capture(
        broker_url, tmp_path, "car-fdrift", model, with_features, drift_psi=10
    )
    assert car.feature_drift is not None and car.feature_drift > 1 and car.input_drift is not None
    assert car.input_drift < 10
    assert stopped[0]["reason"].startswith("feedback: drifted_input: feature drift "), stopped
