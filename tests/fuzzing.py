"""Hypothesis strategies for hostile MQTT traffic: topics under what the hub and the car subscribe to,
and payloads from junk bytes and deep nesting to frames whose fields are out of range or mistyped."""

import json
import time
from typing import Any

from hypothesis import strategies as st

from schemas.envelope import encode
from schemas.topics import COMMAND_NAMES

CARS = ("fz-1", "fz-2")
INVALID_IDS = ("", "UPPER", "a" * 40, "car/x", "+", "#", "ü")
CAR_LEAVES = ("frames", "status", "telemetry", "events", "model/state", "cmd/mode/response", "junk")
JOB_KINDS = ("train", "evaluate", "optimize", "rl", "unknown")

car_ids = st.sampled_from(CARS) | st.sampled_from(INVALID_IDS)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)

FRAME_FIELDS = ("seq", "t_capture_ns", "steering", "throttle", "speed", "mode", "session", "car", "model")


@st.composite
def frame_headers(draw: st.DrawFn, car: str) -> dict[str, Any]:
    """A frame record that is almost right: one or more fields replaced by something hostile."""
    header: dict[str, Any] = {
        "car": car,
        "session": "fuzz",
        "seq": draw(st.integers(0, 10_000)),
        "t_capture_ns": time.time_ns(),
        "steering": 0.1,
        "throttle": 0.2,
        "mode": "manual",
    }
    for name in draw(st.lists(st.sampled_from(FRAME_FIELDS), max_size=3, unique=True)):
        header[name] = draw(json_values | st.sampled_from([2**63, -1, 1e308, -1e308, "4", 5.0, [], {}, True]))
    return header


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def payloads(car: str = "fz-1") -> st.SearchStrategy[bytes]:
    nesting = st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n)
    envelopes = st.builds(
        lambda header, body: encode(header, body),
        frame_headers(car) | st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        st.binary(max_size=64) | st.just(b"\xff\xd8\xff\xe0junk"),
    )
    return st.one_of(
        st.binary(max_size=512),
        json_values.map(_dumps),
        nesting,
        envelopes,
        st.binary(min_size=4, max_size=64).map(lambda b: b"PDK1" + b),
    )


@st.composite
def hub_messages(draw: st.DrawFn, root: str) -> tuple[str, bytes]:
    """A topic the hub subscribes to (or nearly) and a payload for it."""
    if draw(st.integers(0, 4)) == 0:
        kind, job = draw(st.sampled_from(JOB_KINDS)), draw(st.sampled_from(("j-1", "j-2", "bad id")))
        leaf = draw(st.sampled_from(("progress", "result", "progress/gpu-9", "result/x/y")))
        return f"{root}/jobs/{kind}/{job}/{leaf}", draw(payloads())
    car = draw(car_ids)
    return f"{root}/cars/{car}/{draw(st.sampled_from(CAR_LEAVES))}", draw(payloads(car))


@st.composite
def car_commands(draw: st.DrawFn) -> tuple[str, bytes]:
    """A command name the car answers and a payload that is often not a valid command."""
    name = draw(st.sampled_from(COMMAND_NAMES))
    fields = ("transaction", "mode", "values", "steering", "throttle", "session", "active", "deadman_ms", "x")
    body = draw(st.dictionaries(st.sampled_from(fields), json_values, max_size=4))
    return name, draw(st.just(_dumps(body)) | payloads())
