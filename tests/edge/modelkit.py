"""Small real models for the car's tests, built in code: ONNX graphs with onnx.helper (and LiteRT
flatbuffers with the schema LiteRT ships), signed like the hub signs them."""

import time
from typing import Any

import numpy as np
import onnx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper

from schemas.model_card import (
    ClassesSpec,
    InputSpec,
    ModelCard,
    ModelManifest,
    ModelTarget,
    OutputSpec,
    sha256_hex,
)
from schemas.payloads import encode_model


def card(width: int = 160, height: int = 120, *, throttle: bool = True, layout: str = "nchw") -> ModelCard:
    outputs = [OutputSpec(name="steering")]
    if throttle:
        outputs.append(OutputSpec(name="throttle"))
    return ModelCard(
        architecture="test",
        input=InputSpec(width=width, height=height, layout=layout),  # type: ignore[arg-type]
        outputs=outputs,
    )


def onnx_model(
    *,
    width: int = 160,
    height: int = 120,
    steering: float = 0.25,
    throttle: float = 0.4,
    pad_bytes: int = 0,
    declared: tuple[int, int, int, int] | None = None,
    nan: bool = False,
    steering_values: int = 1,
    channel_weights: tuple[float, float, float] = (0.0, 0.0, 0.0),
    features: bool = False,
) -> bytes:
    """steering = steering + image-mean · channel_weights; throttle constant.

    ``pad_bytes`` adds a real MatMul over the flattened image (weights of that size, scaled by
    zero in the result) so a model of a given size costs real inference time; ``nan`` makes the
    steering 0/0; ``declared`` sets the input shape the graph declares; ``steering_values`` > 1
    gives a wrong-shape steering output; ``features`` adds a ``features`` output: the image's three
    channel means (the drift monitor's feature values, as the trainer's models give them).
    """
    shape = list(declared or (1, 3, height, width))
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *shape[1:]])
    nodes = [helper.make_node("ReduceMean", ["image", "axes23"], ["means"], keepdims=0)]
    inits = [
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes23"),
        numpy_helper.from_array(
            np.tile(np.array(channel_weights, np.float32)[:, None], (1, steering_values)), "w"
        ),
        numpy_helper.from_array(np.full((1, steering_values), steering, np.float32), "b"),
        numpy_helper.from_array(np.array([[throttle]], np.float32), "t"),
        numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero"),
    ]
    nodes.append(helper.make_node("MatMul", ["means", "w"], ["mw"]))
    nodes.append(helper.make_node("Add", ["mw", "b"], ["s0"]))
    if pad_bytes:
        k = max(1, -(-pad_bytes // (4 * 3 * shape[2] * shape[3])))
        rng = np.random.default_rng(1)
        big = rng.standard_normal((3 * shape[2] * shape[3], k)).astype(np.float32) * 1e-3
        inits.append(numpy_helper.from_array(big, "big"))
        nodes.append(helper.make_node("Flatten", ["image"], ["flat"], axis=1))
        nodes.append(helper.make_node("MatMul", ["flat", "big"], ["feat"]))
        nodes.append(helper.make_node("ReduceSum", ["feat", "axis1"], ["featm"], keepdims=1))
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
        nodes.append(helper.make_node("Mul", ["featm", "zero"], ["featz"]))
        nodes.append(helper.make_node("Add", ["s0", "featz"], ["s1"]))
        last = "s1"
    else:
        last = "s0"
    if nan:
        nodes.append(helper.make_node("Div", ["zero", "zero"], ["nanv"]))
        nodes.append(helper.make_node("Add", [last, "nanv"], ["steering"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["steering"]))
    nodes.append(helper.make_node("Identity", ["t"], ["throttle0"]))
    inits.append(numpy_helper.from_array(np.zeros((3, 1), np.float32), "zero3"))
    nodes.append(helper.make_node("MatMul", ["means", "zero3"], ["tz"]))
    nodes.append(helper.make_node("Add", ["throttle0", "tz"], ["throttle"]))
    outputs = [
        helper.make_tensor_value_info("steering", TensorProto.FLOAT, ["batch", steering_values]),
        helper.make_tensor_value_info("throttle", TensorProto.FLOAT, ["batch", 1]),
    ]
    if features:
        nodes.append(helper.make_node("Identity", ["means"], ["features"]))
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3]))
    graph = helper.make_graph(nodes, "pilot", [x], outputs, initializer=inits)
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def classifier(
    heads: dict[str, dict[str, float]], width: int = 80, height: int = 60
) -> tuple[bytes, ModelCard]:
    """A classifier that always says the same (``{head: {class: probability}}``, in class order),
    as ONNX, with its card: a detector for tests where what it sees must not change."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, height, width])
    nodes = [helper.make_node("ReduceMean", ["image", "axes23"], ["means"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes23")]
    outputs = []
    for head, probabilities in heads.items():
        n = len(probabilities)
        inits.append(numpy_helper.from_array(np.zeros((3, n), np.float32), f"{head}_zero"))
        constant = np.array([list(probabilities.values())], np.float32)
        inits.append(numpy_helper.from_array(constant, f"{head}_p"))
        nodes.append(helper.make_node("MatMul", ["means", f"{head}_zero"], [f"{head}_z"]))  # the batch
        nodes.append(helper.make_node("Add", [f"{head}_z", f"{head}_p"], [head]))
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, ["batch", n]))
    graph = helper.make_graph(nodes, "classifier", [x], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    card = ModelCard(
        architecture="test",
        kind="classifier",
        input=InputSpec(width=width, height=height),
        classes=[ClassesSpec(name=head, classes=list(p)) for head, p in heads.items()],
    )
    return model.SerializeToString(), card


def manifest(
    data: bytes,
    *,
    name: str = "pilot",
    version: str = "1",
    fmt: str = "onnx",
    model_card: ModelCard | None = None,
    url: str | None = None,
) -> ModelManifest:
    return ModelManifest(
        name=name,
        version=version,
        sha256=sha256_hex(data),
        size=len(data),
        format=fmt,  # type: ignore[arg-type]
        card=model_card or card(),
        created=time.time(),
        url=url,
    )


_last_sequence = 0


def next_sequence() -> int:
    """Above every earlier one, in this process and (from the clock, in µs) in earlier ones."""
    global _last_sequence
    _last_sequence = max(_last_sequence + 1, time.time_ns() // 1000)
    return _last_sequence


def signed_envelope(
    data: bytes,
    key: Ed25519PrivateKey | None,
    *,
    car: str | None = "car-1",
    group: str | None = None,
    sequence: int | None = None,
    ttl_s: float = 3600.0,
    extra: dict[str, Any] | None = None,
    **kwargs: Any,
) -> bytes:
    """An envelope signed as the hub signs it, for ``car`` (or ``group``), with the next sequence;
    ``extra`` adds fields to the signed manifest, as a newer hub might."""
    m = manifest(data, **kwargs)
    if key is not None:
        target = ModelTarget(kind="group", id=group) if group else ModelTarget(kind="car", id=car or "")
        m = m.model_copy(
            update={
                "target": target,
                "sequence": sequence if sequence is not None else next_sequence(),
                "expires": time.time() + ttl_s,
            }
        )
        if extra:
            m = _WithExtra.model_validate(m.model_dump() | extra)
    return encode_model(m, b"" if kwargs.get("url") else data, key)


class _WithExtra(ModelManifest):
    """A manifest that keeps (and signs) fields this version does not know."""

    model_config = ModelManifest.model_config | {"extra": "allow"}


def tflite_model(
    *,
    width: int = 160,
    height: int = 120,
    steering: float = 0.25,
    throttle: float = 0.4,
    channel_weights: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> bytes:
    """A LiteRT flatbuffer: NHWC image → MEAN over H, W → two FULLY_CONNECTED heads.

    steering = steering + mean(image) · channel_weights; throttle constant. Built with the schema
    module LiteRT ships, no TensorFlow needed.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def buffer(array: np.ndarray | None) -> Any:
        b = s.BufferT()
        b.data = None if array is None else np.frombuffer(array.tobytes(), dtype=np.uint8)
        return b

    buffers = [buffer(None)]  # buffer 0 is the conventional empty one

    def tensor(
        name: str, shape: list[int], data: np.ndarray | None = None, dtype: int = s.TensorType.FLOAT32
    ) -> Any:
        t = s.TensorT()
        t.name = name
        t.shape = np.array(shape, dtype=np.int32)
        t.type = dtype
        buffers.append(buffer(data))
        t.buffer = len(buffers) - 1
        return t

    tensors = [
        tensor("image", [1, height, width, 3]),
        tensor("axes", [2], np.array([1, 2], np.int32), s.TensorType.INT32),
        tensor("means", [1, 3]),
        tensor("w_steering", [1, 3], np.array([channel_weights], np.float32)),
        tensor("b_steering", [1], np.array([steering], np.float32)),
        tensor("steering", [1, 1]),
        tensor("w_throttle", [1, 3], np.zeros((1, 3), np.float32)),
        tensor("b_throttle", [1], np.array([throttle], np.float32)),
        tensor("throttle", [1, 1]),
    ]
    codes = []
    for op in (s.BuiltinOperator.MEAN, s.BuiltinOperator.FULLY_CONNECTED):
        code = s.OperatorCodeT()
        code.builtinCode = op
        code.deprecatedBuiltinCode = op
        code.version = 1
        codes.append(code)

    def operator(code: int, inputs: list[int], outputs: list[int], options_type: int, options: Any) -> Any:
        o = s.OperatorT()
        o.opcodeIndex = code
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        return o

    reducer = s.ReducerOptionsT()
    reducer.keepDims = False
    fc = s.FullyConnectedOptionsT()
    ops = [
        operator(0, [0, 1], [2], s.BuiltinOptions.ReducerOptions, reducer),
        operator(1, [2, 3, 4], [5], s.BuiltinOptions.FullyConnectedOptions, fc),
        operator(1, [2, 6, 7], [8], s.BuiltinOptions.FullyConnectedOptions, fc),
    ]
    graph = s.SubGraphT()
    graph.tensors = tensors
    graph.inputs = np.array([0], dtype=np.int32)
    graph.outputs = np.array([5, 8], dtype=np.int32)
    graph.operators = ops
    graph.name = "pilot"
    model = s.ModelT()
    model.version = 3
    model.operatorCodes = codes
    model.subgraphs = [graph]
    model.buffers = buffers
    model.description = "paddock test pilot"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
