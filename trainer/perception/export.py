"""Export the detector for the car: ONNX (float), ONNX int8 and TFLite, each checked on test frames.

The ONNX file takes ``image`` (``[batch, 3, 60, 80]``, RGB in [-1, 1]) and returns one softmax
output per task (``obstacle``, ``surface``); its metadata carries ``paddock.detector`` (tasks,
classes, input size) so the car can decode it. The int8 file is :func:`trainer.export.quantize_int8`'s
static QDQ quantization, calibrated on training frames. Each file's accuracy on the test frames is
measured against the float model's, so a quantization that hurts is seen, not shipped blind.
``detector.tflite`` (batch 1, the same input and output names) comes from ``litert-torch`` in a
child process, as the pilot's does (:func:`trainer.export.export_tflite`), where the ``tflite``
extra is installed; ``detector.card.json`` is the card the car deploys every file with.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schemas.model_card import ClassesSpec, InputSpec, ModelCard, Normalisation
from trainer.export import onnx_session, quantize_int8, run_onnx, tflite_in_child
from trainer.perception import TASKS
from trainer.perception.dataset import PerceptionTable
from trainer.perception.models import ExportWrapper, NetOptions, PerceptionNet
from trainer.perception.train import to_input

ONNX_OPSET = 18


def detector_card(model: PerceptionNet) -> dict[str, Any]:
    o = model.options
    return {
        "kind": "classifier",
        "input": {
            "name": "image",
            "height": o.height,
            "width": o.width,
            "colour": "rgb",
            "scale": 1 / 127.5,
            "offset": -1.0,
        },
        "outputs": [{"name": task, "classes": list(TASKS[task])} for task in model.tasks],
    }


def detector_model_card(model: PerceptionNet, training: dict[str, Any] | None = None) -> ModelCard:
    """The card a detector is deployed with: kind ``classifier``, one head per task, the input
    as :func:`trainer.perception.train.to_input` makes it (the whole frame, resized, in [-1, 1])."""
    o = model.options
    return ModelCard(
        architecture="perception-mobilenet",
        kind="classifier",
        input=InputSpec(
            width=o.width,
            height=o.height,
            colour="rgb",
            normalisation=Normalisation(scale=1 / 127.5, mean=[1.0], std=[1.0]),
        ),
        classes=[ClassesSpec(name=task, classes=list(TASKS[task])) for task in model.tasks],
        description="obstacle-ahead and surface classifier (paddock perceive)",
        training=training or {},
    )


def export_onnx(model: PerceptionNet, path: Path) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    o = model.options
    batch = torch.export.Dim("batch", min=1, max=4096)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(
            ExportWrapper(model).eval(),
            (torch.zeros(2, 3, o.height, o.width),),
            str(path),
            input_names=["image"],
            output_names=list(model.tasks),
            dynamic_shapes=({0: batch},),
            opset_version=ONNX_OPSET,
            external_data=False,
            verbose=False,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "paddock.detector", json.dumps(detector_card(model))
    proto.producer_name = "paddock"
    onnx.save(proto, str(path))
    return path


class _NamedHeads(torch.nn.Module):
    """The network with its softmax outputs in a dict, so LiteRT names them like the card."""

    def __init__(self, net: PerceptionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(image)
        return {t: torch.softmax(out[t], dim=1) for t in self.net.tasks}


def export_tflite(model: PerceptionNet, path: Path, timeout_s: float = 600) -> Path:
    """``detector.tflite`` by litert-torch, converted in a child process (it loads JAX)."""
    state = {"net": model.options.model_dump(), "state": model.state_dict()}
    return tflite_in_child(
        ["trainer.perception.export"], state, path, timeout_s, "TFLite conversion of the detector"
    )


def _convert_tflite(weights: Path, out: Path) -> None:
    """The child process of :func:`export_tflite`."""
    import litert_torch

    data = torch.load(weights, map_location="cpu", weights_only=True)
    model = PerceptionNet(NetOptions.model_validate(data["net"]))
    model.load_state_dict(data["state"])
    model.eval()
    o = model.options
    sample = torch.zeros(1, 3, o.height, o.width)
    litert_torch.convert(_NamedHeads(model).eval(), sample_kwargs={"image": sample}).export(str(out))


def tflite_accuracy(path: Path, tasks: list[str], table: PerceptionTable) -> dict[str, float]:
    from trainer.export import run_tflite, tflite_runner

    outs = run_tflite(tflite_runner(path), "image", tasks, to_input(table.images).numpy())
    return _labelled_accuracy(tasks, outs, table)


def _accuracy(session: Any, tasks: list[str], table: PerceptionTable) -> dict[str, float]:
    x = to_input(table.images).numpy()
    outs = [
        np.concatenate(p)
        for p in zip(*(run_onnx(session, x[i : i + 256]) for i in range(0, len(x), 256)), strict=True)
    ]
    return _labelled_accuracy(tasks, outs, table)


def _labelled_accuracy(tasks: list[str], outs: list[Any], table: PerceptionTable) -> dict[str, float]:
    """Accuracy per task over the frames labelled for it (an ambiguous obstacle label is -1)."""
    accuracy = {}
    for task, probs in zip(tasks, outs, strict=True):
        y = table.labels[task]
        keep = y >= 0
        accuracy[task] = (
            float((np.asarray(probs).argmax(axis=1)[keep] == y[keep]).mean()) if keep.any() else 0.0
        )
    return accuracy


def export_detector(
    model: PerceptionNet,
    out_dir: Path,
    calibration: PerceptionTable,
    test: PerceptionTable,
    tflite: bool = False,
) -> dict[str, Any]:
    """``detector.onnx``, ``detector.int8.onnx`` (and with ``tflite``, ``detector.tflite``) in
    ``out_dir``, with their test accuracy."""
    float_path = export_onnx(model, out_dir / "detector.onnx")
    pick = np.random.default_rng(0).permutation(len(calibration))[:256]
    int8_path = quantize_int8(
        float_path, out_dir / "detector.int8.onnx", to_input(calibration.images[pick]).numpy()
    )
    tasks = list(model.tasks)
    files = {}
    for name, path in (("onnx", float_path), ("onnx-int8", int8_path)):
        files[name] = {
            "path": path.name,
            "bytes": path.stat().st_size,
            "test_accuracy": _accuracy(onnx_session(path), tasks, test),
        }
    if tflite:
        path = export_tflite(model, out_dir / "detector.tflite")
        files["tflite"] = {
            "path": path.name,
            "bytes": path.stat().st_size,
            "test_accuracy": tflite_accuracy(path, tasks, test),
        }
    (out_dir / "detector.json").write_text(json.dumps(detector_card(model) | {"files": files}, indent=1))
    card = detector_model_card(model, {"test_accuracy": files["onnx"]["test_accuracy"]})
    (out_dir / "detector.card.json").write_bytes(card.to_json())
    return files


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m trainer.perception.export DETECTOR.pt OUT.tflite")
    _convert_tflite(Path(sys.argv[1]), Path(sys.argv[2]))
