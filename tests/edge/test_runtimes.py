import numpy as np
import pytest

from edge.pilots import ModelPilot
from edge.runtimes import LoadedModel, ModelLoadError, RuntimeUnavailable, available_runtimes, runtime_for
from edge.runtimes.litert import LiteRtRuntime
from edge.runtimes.onnx import OnnxRuntime
from firmware.camera import Frame
from schemas.model_card import preprocess
from tests.edge.modelkit import card, manifest, onnx_model, tflite_model


def _image(value: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    img = np.zeros((120, 160, 3), np.uint8)
    img[:] = value
    return img


def test_registry_picks_a_runtime_by_format() -> None:
    assert {"onnx", "tflite"} <= set(available_runtimes())
    assert isinstance(runtime_for("onnx"), OnnxRuntime)
    assert isinstance(runtime_for("tflite"), LiteRtRuntime)
    with pytest.raises(RuntimeUnavailable, match="no runtime for model format 'pt'"):
        runtime_for("pt")


def test_onnx_pilot_preprocesses_with_the_card_and_decodes_outputs() -> None:
    data = onnx_model(steering=0.1, throttle=0.3, channel_weights=(0.5, 0.0, 0.0))
    m = manifest(data)
    pilot = ModelPilot(m, OnnxRuntime().load(data, m.card))
    decision = pilot.act(Frame(_image(), t_capture_ns=0, index=0))
    # red channel mean is 1.0 after the card's normalisation (pixel / 255)
    assert decision.steering == pytest.approx(0.1 + 0.5 * 1.0, abs=1e-5)
    assert decision.throttle == pytest.approx(0.3)
    assert decision.inference_ms is not None and decision.inference_ms >= 0
    values, _ = pilot.infer(_image((0, 0, 0)))
    assert values == pytest.approx({"steering": 0.1, "throttle": 0.3})
    sample = preprocess(_image(), m.card.input)
    assert sample.shape == (3, 120, 160)


class _Counted(LoadedModel):
    """A loaded model that counts its runs."""

    def __init__(self, model: LoadedModel) -> None:
        self.model, self.runs = model, 0

    def run(self, sample: np.ndarray) -> dict[str, np.ndarray]:
        self.runs += 1
        return self.model.run(sample)


def test_a_tick_on_the_same_frame_takes_the_decision_made_on_it() -> None:
    data = onnx_model(steering=0.1, channel_weights=(0.5, 0.0, 0.0))
    m = manifest(data)
    model = _Counted(OnnxRuntime().load(data, m.card))
    pilot = ModelPilot(m, model)
    first = pilot.act(Frame(_image(), t_capture_ns=0, index=7))
    again = pilot.act(Frame(_image(), t_capture_ns=0, index=7))
    assert model.runs == 1 and first.inference_ms is not None and again.inference_ms is None
    assert (again.steering, again.throttle) == (first.steering, first.throttle)
    black = pilot.act(Frame(_image((0, 0, 0)), t_capture_ns=1, index=8))  # a new frame: a new run
    assert model.runs == 2 and black.steering == pytest.approx(0.1, abs=1e-5)


def test_litert_gives_the_same_answer_for_an_nhwc_card() -> None:
    data = tflite_model(steering=-0.2, throttle=0.35, channel_weights=(0.0, 0.8, 0.0))
    m = manifest(data, fmt="tflite", model_card=card(layout="nhwc"))
    pilot = ModelPilot(m, LiteRtRuntime().load(data, m.card, threads=1))
    values, _ = pilot.infer(_image((0, 255, 0)))
    assert values == pytest.approx({"steering": -0.2 + 0.8, "throttle": 0.35}, abs=1e-5)


def test_models_that_do_not_fit_their_card_are_refused() -> None:
    rt = OnnxRuntime()
    with pytest.raises(ModelLoadError, match=r"input shape \['batch', 3, 60, 80\] does not match"):
        rt.load(onnx_model(declared=(1, 3, 60, 80)), card())
    with pytest.raises(ModelLoadError, match="cannot load"):
        rt.load(b"\x08\x01garbage", card())
    wrong_name = card().model_copy(update={"input": card().input.model_copy(update={"name": "pixels"})})
    with pytest.raises(ModelLoadError, match="no input 'pixels'"):
        rt.load(onnx_model(), wrong_name)
    with pytest.raises(ModelLoadError, match="does not match"):
        LiteRtRuntime().load(tflite_model(), card(layout="nchw"))
    with pytest.raises(ModelLoadError, match="LiteRT cannot load"):
        LiteRtRuntime().load(b"not a flatbuffer at all", card(layout="nhwc"))
