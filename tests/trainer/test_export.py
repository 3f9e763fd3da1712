"""Export parity: ONNX (float, one file, dynamic batch), int8 QDQ, and TFLite run by ai-edge-litert."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from infra.store import LocalStore
from schemas.model_card import ModelCard, decode_outputs
from tests.missing import missing
from tests.trainer.conftest import SMALL
from trainer.data import list_sessions, load_frames, preprocessed_samples
from trainer.export import (
    PARITY_TOLERANCE,
    check_onnx,
    check_tflite,
    export_all,
    export_onnx,
    onnx_session,
    run_onnx,
    run_tflite,
    tflite_runner,
)
from trainer.models import build_model


@pytest.fixture(scope="module")
def frames(small_store: LocalStore) -> np.ndarray:
    table = load_frames(small_store, list_sessions(small_store)[:1])
    return preprocessed_samples(table, SMALL.input_spec(), 40)


def _model(architecture: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(architecture, SMALL).eval()


@pytest.mark.parametrize("architecture", ["linear", "categorical", "mobilenet"])
def test_onnx_is_one_file_with_a_dynamic_batch_and_matches_torch(
    tmp_path: Path, frames: np.ndarray, architecture: str
) -> None:
    import onnx

    model = _model(architecture)
    path = export_onnx(model, tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no external .data file
    session = onnx_session(path)
    assert session.get_inputs()[0].name == "image"
    assert [o.name for o in session.get_outputs()] == [*model.output_names, "features"]
    for batch in (1, 7, len(frames)):
        out = run_onnx(session, frames[:batch])
        assert out[0].shape[0] == batch
    assert check_onnx(model, path, frames) <= PARITY_TOLERANCE
    # The card travels inside the file and decodes the outputs like the car does.
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    card = ModelCard.model_validate_json(meta["paddock.card"])
    assert card == model.card()
    outputs = run_onnx(session, frames[:1])
    actions = decode_outputs(card, {o.name: v for o, v in zip(session.get_outputs(), outputs, strict=True)})
    with torch.no_grad():
        expected = model.decode(model(torch.from_numpy(frames[:1])))[0].tolist()
    assert [actions[s.name] for s in card.outputs] == pytest.approx(expected, abs=1e-5)
    # The feature values for the drift monitor: the card's size, torch's values.
    assert card.features is not None and card.features.tensor == "features"
    assert outputs[-1].shape == (1, card.features.size)
    with torch.no_grad():
        want = model.feature_values(torch.from_numpy(frames[:1])).numpy()
    assert np.abs(outputs[-1] - want).max() <= PARITY_TOLERANCE and np.abs(want).max() > 0


def test_int8_is_static_qdq_and_close_to_float(tmp_path: Path, frames: np.ndarray) -> None:
    import onnx

    model = _model("linear")
    result = export_all(model, tmp_path, frames, formats=("onnx", "onnx-int8"))
    int8 = result.files["onnx-int8"]
    ops = {n.op_type for n in onnx.load(int8.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}  # not dynamic quantization
    assert int8.size < result.files["onnx"].size / 2
    assert int8.action_mae["steering"] < 0.05, int8.action_mae
    assert result.files["onnx"].max_abs_diff is not None
    assert result.files["onnx"].max_abs_diff <= PARITY_TOLERANCE


def _tflite_or_skip() -> None:
    absent = [m for m in ("litert_torch", "ai_edge_litert") if importlib.util.find_spec(m) is None]
    if absent:
        missing(f"TFLite export needs the tflite extra ({', '.join(absent)} missing)")


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["linear", "categorical"])
def test_tflite_runs_in_ai_edge_litert_like_torch(
    tmp_path: Path, frames: np.ndarray, architecture: str
) -> None:
    _tflite_or_skip()
    model = _model(architecture)
    result = export_all(model, tmp_path, frames, formats=("tflite",))
    assert not result.errors and sorted(result.files) == ["tflite"]
    path = result.files["tflite"].path
    runner = tflite_runner(path)
    got = run_tflite(runner, "image", [*model.output_names, "features"], frames[:5])
    want = model.with_features(torch.from_numpy(frames[:5]))
    assert [g.shape for g in got] == [(5, o.shape[1]) for o in want]
    assert check_tflite(model, path, frames) <= PARITY_TOLERANCE
