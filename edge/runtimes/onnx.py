"""ONNX Runtime (CPU): the default autopilot runtime."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge.runtimes import LoadedModel, ModelLoadError, Runtime, RuntimeUnavailable, check_input_shape
from schemas.model_card import ModelCard
from schemas.release import install_hint


class OnnxModel(LoadedModel):
    runtime = "onnxruntime"

    def __init__(self, session: Any, input_name: str, outputs: list[str]) -> None:
        self.session = session
        self.input_name = input_name
        self.outputs = outputs

    def run(self, sample: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        values = self.session.run(self.outputs, {self.input_name: sample[None, ...]})
        return {name: np.asarray(v)[0] for name, v in zip(self.outputs, values, strict=True)}

    def close(self) -> None:
        self.session = None


class OnnxRuntime(Runtime):
    name = "onnx"
    formats = ("onnx",)

    def preload(self) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise RuntimeUnavailable(f"ONNX models need onnxruntime: {install_hint('car')}") from exc

    def load(self, model: bytes, card: ModelCard, threads: int = 1) -> LoadedModel:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable(f"ONNX models need onnxruntime: {install_hint('car')}") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"ONNX Runtime cannot load the model: {_first_line(exc)}") from None
        inputs = {i.name: i for i in session.get_inputs()}
        if card.input.name not in inputs:
            raise ModelLoadError(f"model has no input {card.input.name!r} (it has {sorted(inputs)})")
        inp = inputs[card.input.name]
        if inp.type != "tensor(float)":
            raise ModelLoadError(f"model input {inp.name!r} is {inp.type}, expected tensor(float)")
        check_input_shape(list(inp.shape), card, "onnx")
        names = {o.name for o in session.get_outputs()}
        wanted = card.output_tensors
        missing = [t for t in wanted if t not in names]
        if missing:
            raise ModelLoadError(f"model has no output {missing[0]!r} (it has {sorted(names)})")
        features = card.features.tensor if card.features is not None else None
        # The feature output only feeds the drift monitor: a model without it still drives.
        extra = [features] if features is not None and features in names else []
        return OnnxModel(session, inp.name, wanted + extra)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
