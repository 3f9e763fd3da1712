"""LiteRT (TensorFlow Lite) models: ``ai-edge-litert``, or the older ``tflite_runtime``.

Quantised models (uint8/int8 input or outputs) are quantised and dequantised with the tensors'
own scale and zero point, so the card's normalisation stays the float one the trainer used.
"""

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge.runtimes import LoadedModel, ModelLoadError, Runtime, RuntimeUnavailable, check_input_shape
from schemas.model_card import ModelCard
from schemas.release import install_hint


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"TFLite models need LiteRT (ai-edge-litert): {install_hint('litert')}, "
            "or tflite-runtime on older systems"
        ) from exc


def _signature_outputs(interpreter: Any) -> dict[str, dict[str, Any]]:
    """Output details by signature name (``serving_default``), where the model has a signature."""
    try:
        runner = interpreter.get_signature_runner()
        return dict(runner.get_output_details())
    except (ValueError, AttributeError, KeyError):
        return {}


def _match(name: str, wanted: str) -> bool:
    return name == wanted or name.split(":")[0] == wanted


def _output(
    tensor: str, signature: dict[str, dict[str, Any]], details: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The output detail of ``tensor`` (None: the model has no such output)."""
    if tensor in signature:  # litert-torch names a dict's outputs in the signature only
        return signature[tensor]
    return next((d for d in details if _match(d["name"], tensor)), None)


class LiteRtModel(LoadedModel):
    runtime = "litert"

    def __init__(self, interpreter: Any, input_detail: dict[str, Any], outputs: dict[str, dict[str, Any]]):
        self.interpreter = interpreter
        self.input = input_detail
        self.outputs = outputs

    def run(self, sample: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        x = sample[None, ...]
        dtype = self.input["dtype"]
        if dtype != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        result: dict[str, NDArray[np.float32]] = {}
        for name, detail in self.outputs.items():
            y = self.interpreter.get_tensor(detail["index"])
            if detail["dtype"] != np.float32:
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            result[name] = np.asarray(y, dtype=np.float32)[0]
        return result

    def close(self) -> None:
        self.interpreter = None


class LiteRtRuntime(Runtime):
    name = "tflite"
    formats = ("tflite",)

    def preload(self) -> None:
        _interpreter_class()

    def load(self, model: bytes, card: ModelCard, threads: int = 1) -> LoadedModel:
        interpreter_cls = _interpreter_class()
        try:
            interpreter = interpreter_cls(model_content=bytes(model), num_threads=threads)
            interpreter.allocate_tensors()
        except Exception as exc:
            raise ModelLoadError(f"LiteRT cannot load the model: {str(exc).strip()[:300]}") from None
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelLoadError(f"model has {len(inputs)} inputs, expected one image input")
        inp = inputs[0]
        check_input_shape([int(d) for d in inp["shape"]], card, "tflite")
        details = interpreter.get_output_details()
        outputs: dict[str, dict[str, Any]] = {}
        signature = _signature_outputs(interpreter)
        for tensor in card.output_tensors:
            detail = _output(tensor, signature, details)
            if detail is None:
                names = sorted(d["name"] for d in details)
                raise ModelLoadError(f"model has no output {tensor!r} (it has {names})")
            outputs[tensor] = detail
        if card.features is not None:  # only for the drift monitor: a model without it still drives
            detail = _output(card.features.tensor, signature, details)
            if detail is not None:
                outputs[card.features.tensor] = detail
        return LiteRtModel(interpreter, inp, outputs)
