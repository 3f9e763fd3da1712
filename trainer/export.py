"""Export a trained model for the car: ONNX (float), ONNX int8 (static QDQ) and TFLite.

* **ONNX** — one self-contained file (``external_data=False``), a dynamic batch axis, the input
  named as the card says (``image``), one output per card output (``steering``, ``throttle``) and
  the card's ``features`` output last (for the drift monitor; trainer.models.FEATURE_SIZE values);
  the card is also stored in the file's metadata (``paddock.card``). Checked against torch on real
  frames: the largest difference must stay within ``1e-4``.
* **ONNX int8** — static quantization in QDQ format (per-channel int8 weights, uint8 activations)
  calibrated on recorded frames. Dynamic quantization is not offered: it quantizes only matrix
  multiplications and leaves convolutions in float, which makes CNNs slower on ONNX Runtime.
* **TFLite** — through ``litert-torch`` (the ``tflite`` extra), with the same input and output
  names, batch 1; checked with ``ai-edge-litert``'s interpreter.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from schemas.model_card import ModelCard, sha256_hex
from trainer.models import FEATURE_TENSOR, PilotModel

log = logging.getLogger(__name__)
ONNX_OPSET = 18
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An export failed or its output does not match the torch model."""


class ExportedFile(BaseModel):
    format: str = Field(description="onnx, onnx-int8 or tflite")
    path: str
    sha256: str
    size: int
    max_abs_diff: float | None = Field(default=None, description="largest output difference vs torch")
    action_mae: dict[str, float] = Field(default_factory=dict, description="decoded action error vs torch")


class ExportResult(BaseModel):
    card: ModelCard
    files: dict[str, ExportedFile]
    errors: dict[str, str] = Field(default_factory=dict)


def _file(fmt: str, path: Path, **extra: Any) -> ExportedFile:
    data = path.read_bytes()
    return ExportedFile(format=fmt, path=str(path), sha256=sha256_hex(data), size=len(data), **extra)


def export_names(model: PilotModel) -> list[str]:
    """The exported model's outputs, in order: the card's outputs, then the feature values."""
    return [*model.output_names, FEATURE_TENSOR]


class _Exported(torch.nn.Module):
    """What the exported file computes: the outputs and the feature values."""

    def __init__(self, model: PilotModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.with_features(image)


class _Named(_Exported):
    """The same with outputs as a dict, so converters name them like the card."""

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return dict(zip(export_names(self.model), self.model.with_features(image), strict=True))


def _torch_outputs(model: PilotModel, x: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    """The outputs and the feature values, as the exported file gives them."""
    model.eval()
    with torch.no_grad():
        return [o.numpy() for o in model.with_features(torch.from_numpy(x))]


def _max_diff(a: Sequence[NDArray[np.float32]], b: Sequence[NDArray[np.float32]]) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


def _action_mae(
    model: PilotModel, ref: Sequence[NDArray[np.float32]], got: Sequence[NDArray[np.float32]]
) -> dict[str, float]:
    n = len(model.output_names)  # the feature values after them drive nothing
    a = model.decode([torch.from_numpy(np.asarray(r)) for r in ref[:n]]).numpy()
    b = model.decode([torch.from_numpy(np.asarray(g)) for g in got[:n]]).numpy()
    return {
        spec.name: float(np.mean(np.abs(a[:, i] - b[:, i]))) for i, spec in enumerate(model.output_specs())
    }


# --- ONNX ----------------------------------------------------------------------------------------
def onnx_session(path: str | os.PathLike[str], threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, x: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    name = session.get_inputs()[0].name
    return [np.asarray(o) for o in session.run(None, {name: x})]


def export_onnx(model: PilotModel, path: str | os.PathLike[str], card: ModelCard | None = None) -> Path:
    """Write ``model`` as one ONNX file with a dynamic batch axis and the card in its metadata."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    sample = torch.zeros(2, *model.spec.shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter warns about torchvision operators (not installed, not used) and a deprecation
    # inside torch itself; neither is actionable here, and they bury a job's real log lines.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        torch.onnx.export(
            _Exported(model).eval(),
            (sample,),
            str(path),
            input_names=[model.spec.name],
            output_names=export_names(model),
            dynamic_shapes=({0: batch},),
            opset_version=ONNX_OPSET,
            external_data=False,
            verbose=False,
        )
    proto = onnx.load(str(path))
    card = card or model.card()
    entry = proto.metadata_props.add()
    entry.key, entry.value = "paddock.card", card.model_dump_json()
    proto.producer_name = "paddock"
    onnx.save(proto, str(path))
    leftovers = [p for p in path.parent.glob(path.name + ".data")]
    if leftovers:
        raise ExportError(f"the ONNX export wrote external data {leftovers[0]}; expected one file")
    return path


def check_onnx(model: PilotModel, path: str | os.PathLike[str], x: NDArray[np.float32]) -> float:
    """Largest output difference between ONNX Runtime and torch on ``x`` (one batch)."""
    return _max_diff(run_onnx(onnx_session(path), x), _torch_outputs(model, x))


class _Calibration:
    """Feeds calibration batches to onnxruntime's static quantizer."""

    def __init__(self, name: str, samples: NDArray[np.float32], batch: int = 16) -> None:
        self._batches = [samples[i : i + batch] for i in range(0, len(samples), batch)]
        self._name = name
        self._i = 0

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {self._name: self._batches[self._i - 1]}

    def rewind(self) -> None:
        self._i = 0


def quantize_int8(
    float_path: str | os.PathLike[str], out_path: str | os.PathLike[str], calibration: NDArray[np.float32]
) -> Path:
    """Static int8 quantization in QDQ format, calibrated on ``calibration`` (preprocessed frames)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ExportError("int8 quantization needs calibration frames")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        session = onnx_session(prepared)
        name = session.get_inputs()[0].name
        del session
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(name, calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return out_path


# --- TFLite --------------------------------------------------------------------------------------
def export_tflite(model: PilotModel, path: str | os.PathLike[str], timeout_s: float = 600) -> Path:
    """Convert with litert-torch: input ``image`` (batch 1), outputs named like the card, in a
    child process (:func:`tflite_in_child`)."""
    state = {
        "architecture": model.architecture,
        "options": model.options.model_dump(mode="json"),
        "model": model.state_dict(),
    }
    return tflite_in_child(["trainer.export", "tflite"], state, Path(path), timeout_s, "TFLite conversion")


def tflite_in_child(
    module: Sequence[str], state: dict[str, Any], path: Path, timeout_s: float, what: str
) -> Path:
    """Save ``state`` (a model's weights and how to build it) and run ``python -m MODULE… STATE.pt
    PATH``, which converts it to ``path``: litert-torch loads JAX, whose threads must not live in a
    process that later forks (loader workers, launchers), and it prints its progress freely.
    ``what`` names the conversion in the :class:`ExportError` a failure raises."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("litert_torch") is None:
        raise ExportError("TFLite export needs the tflite extra (litert-torch); see docs/trainer.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pt"
        torch.save(state, weights)
        proc = subprocess.run(
            [sys.executable, "-m", *module, str(weights), str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if proc.returncode != 0 or not path.exists():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ExportError(f"{what} failed (status {proc.returncode}): {tail}")
    return path


def _convert_tflite(weights: Path, out: Path) -> None:
    """The child process of :func:`export_tflite`."""
    import litert_torch

    from trainer.models import build_model

    state = torch.load(weights, map_location="cpu", weights_only=False)
    model = build_model(state["architecture"], state["options"])
    model.load_state_dict(state["model"])
    model.eval()
    sample = torch.zeros(1, *model.spec.shape)
    edge = litert_torch.convert(_Named(model).eval(), sample_kwargs={model.spec.name: sample})
    edge.export(str(out))


def tflite_runner(path: str | os.PathLike[str], threads: int = 1) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    return interpreter.get_signature_runner()


def run_tflite(
    runner: Any, input_name: str, names: Sequence[str], x: NDArray[np.float32]
) -> list[NDArray[np.float32]]:
    """Run a batch one sample at a time (the TFLite model has batch 1)."""
    outs: list[list[NDArray[np.float32]]] = [[] for _ in names]
    for i in range(len(x)):
        result = runner(**{input_name: x[i : i + 1]})
        for j, name in enumerate(names):
            outs[j].append(np.asarray(result[name]))
    return [np.concatenate(o) for o in outs]


def check_tflite(model: PilotModel, path: str | os.PathLike[str], x: NDArray[np.float32]) -> float:
    got = run_tflite(tflite_runner(path), model.spec.name, export_names(model), x)
    return _max_diff(got, _torch_outputs(model, x))


# --- everything ----------------------------------------------------------------------------------
def export_all(
    model: PilotModel,
    out_dir: str | os.PathLike[str],
    samples: NDArray[np.float32],
    *,
    card: ModelCard | None = None,
    formats: Sequence[str] = ("onnx", "onnx-int8", "tflite"),
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Export ``model`` to ``out_dir`` in each format and check it on ``samples`` (preprocessed frames).

    The float formats must match torch within ``tolerance`` or :class:`ExportError` is raised; the
    int8 model reports its error against torch (``action_mae``) instead. A format whose tooling is
    missing (TFLite without litert-torch) is recorded in ``errors`` rather than failing the others.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = card or model.card()
    (out / "card.json").write_text(card.model_dump_json(indent=2))
    check = samples[: min(len(samples), 32)]
    ref = _torch_outputs(model, check)
    files: dict[str, ExportedFile] = {}
    errors: dict[str, str] = {}
    onnx_path = out / "model.onnx"
    if "onnx" in formats or "onnx-int8" in formats:
        export_onnx(model, onnx_path, card)
        diff = _max_diff(run_onnx(onnx_session(onnx_path), check), ref)
        if diff > tolerance:
            raise ExportError(f"{onnx_path}: ONNX differs from torch by {diff:.3g} (> {tolerance:g})")
        files["onnx"] = _file("onnx", onnx_path, max_abs_diff=diff)
    if "onnx-int8" in formats:
        int8_path = quantize_int8(onnx_path, out / "model.int8.onnx", samples[:256])
        got = run_onnx(onnx_session(int8_path), check)
        files["onnx-int8"] = _file(
            "onnx-int8", int8_path, max_abs_diff=_max_diff(got, ref), action_mae=_action_mae(model, ref, got)
        )
    if "tflite" in formats:
        try:
            tfl_path = export_tflite(model, out / "model.tflite")
        except ExportError as exc:
            errors["tflite"] = str(exc)
        else:
            got = run_tflite(tflite_runner(tfl_path), model.spec.name, export_names(model), check)
            diff = _max_diff(got, ref)
            if diff > tolerance:
                raise ExportError(f"{tfl_path}: TFLite differs from torch by {diff:.3g} (> {tolerance:g})")
            files["tflite"] = _file("tflite", tfl_path, max_abs_diff=diff)
    if "onnx" not in formats and onnx_path.exists():
        onnx_path.unlink()
    result = ExportResult(card=card, files=files, errors=errors)
    (out / "export.json").write_text(json.dumps(result.model_dump(mode="json"), indent=2))
    return result


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "tflite":
        raise SystemExit("usage: python -m trainer.export tflite WEIGHTS.pt OUT.tflite")
    _convert_tflite(Path(sys.argv[2]), Path(sys.argv[3]))
