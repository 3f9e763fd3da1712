"""Host side of script/arm64-check: drive the car daemon inside an arm64 root with each runtime.

For each runtime (ONNX Runtime, LiteRT) it starts a private Mosquitto on the host, publishes a
signed model built in code (tests/edge/modelkit.py) retained on the car's model topic, runs
``paddock car run --sim`` inside the root (qemu-aarch64) for ``--seconds`` in autopilot, and counts
what came back: telemetry messages, the loop's tick period, inference time, the model state. It
fails on a daemon that exits non-zero, logs a traceback or an error, or never drives the model.

    python tests/bench/arm64_drive.py --root build/arm64-root --seconds 30
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from schemas.topics import Topics
from tests.edge import modelkit
from tests.servers.mosquitto import Mosquitto

CAR = "arm-1"
T = Topics()


def drive(
    root: Path,
    runtime: str,
    seconds: float,
    key: Ed25519PrivateKey,
    workdir: Path,
    hz: float,
    smoke_latency_ms: float | None,
) -> dict[str, Any]:
    broker = Mosquitto(workdir / f"mosquitto-{runtime}")
    broker.start()
    seen: dict[str, Any] = {"telemetry": [], "state": None}
    client = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        if msg.topic == T.telemetry(CAR):
            seen["telemetry"].append(json.loads(msg.payload))
        elif msg.topic == T.model_state(CAR):
            seen["state"] = json.loads(msg.payload)

    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe([(T.telemetry(CAR), 0), (T.model_state(CAR), 1)])
    client.loop_start()
    data, fmt = (modelkit.onnx_model(), "onnx") if runtime == "onnx" else (modelkit.tflite_model(), "tflite")
    card = modelkit.card(layout="nchw" if fmt == "onnx" else "nhwc")
    envelope = modelkit.signed_envelope(data, key, car=CAR, fmt=fmt, name=f"arm-{fmt}", model_card=card)
    client.publish(T.car_model(CAR), envelope, qos=1, retain=True).wait_for_publish(10)
    cmd = [
        "chroot",
        str(root),
        "/opt/paddock/venv/bin/paddock",
        "car",
        "run",
        "--sim",
        "--track",
        "oval",
        "--car-id",
        CAR,
        "--broker",
        f"mqtt://127.0.0.1:{broker.port}",
        "--state-dir",
        f"/tmp/state-{runtime}",
        "--public-key",
        "/tmp/hub.pub",
        "--set",
        f'models.preload_runtimes=["{runtime}"]',
        "--set",
        f"loop.hz={hz:g}",
    ]
    if smoke_latency_ms:
        cmd += ["--set", f"models.smoke_latency_ms={smoke_latency_ms:g}"]
    t0 = time.monotonic()
    car = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(car.stdout or []), daemon=True)
    reader.start()
    active_at = _wait_active(seen, car, 600)
    client.publish(T.command(CAR, "mode"), json.dumps({"mode": "autopilot"}), qos=1)
    time.sleep(seconds)
    car.terminate()
    code = car.wait(120)
    reader.join(10)
    client.loop_stop()
    broker.stop()
    driving = [m for m in seen["telemetry"] if m.get("mode") == "autopilot" and m.get("model")]
    return {
        "runtime": runtime,
        "loop_hz": hz,
        "smoke_latency_ms": smoke_latency_ms,
        "exit": code,
        "start_to_model_s": round(active_at - t0, 1) if active_at else None,
        "model_state": seen["state"],
        "telemetry": len(seen["telemetry"]),
        "autopilot_telemetry": len(driving),
        "ticks": _ticks(driving, seconds),
        "inference_ms_median": _median(
            [m["inference_ms"] for m in driving if m.get("inference_ms") is not None]
        ),
        "loop_period_ms_median": _median([m["loop_period_ms"] for m in driving if m.get("loop_period_ms")]),
        "missed_ticks": driving[-1].get("missed_ticks") if driving else None,
        "errors": [
            line.rstrip() for line in log if "Traceback" in line or " ERROR " in line or "CRITICAL" in line
        ],
        "log_tail": [line.rstrip() for line in log[-8:]],
    }


def _wait_active(seen: dict[str, Any], car: subprocess.Popen[str], timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and car.poll() is None:
        state = seen["state"]
        if state and state.get("active"):
            return time.monotonic()
        if state and state.get("last_error"):
            return None  # rejected: reported with the state
        time.sleep(0.5)
    return None


def _ticks(driving: list[dict[str, Any]], seconds: float) -> int | None:
    periods = [m["loop_period_ms"] for m in driving if m.get("loop_period_ms")]
    return round(seconds * 1000 / _median(periods)) if periods else None  # type: ignore[operator]


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runtimes", default="onnx,tflite")
    # qemu runs arm64 code 5-10x slower than a Pi 4 would, so the check drives at 10 Hz, and raises
    # the smoke test's latency budget (default 80% of a tick, 80 ms at 10 Hz) past what emulated
    # inference takes (LiteRT 49-73 ms, ONNX Runtime 37-70 ms here, more when the host is busy).
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument(
        "--smoke-latency-ms", type=float, default=250.0, help="models.smoke_latency_ms (0: the car's default)"
    )
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (args.root / "tmp" / "hub.pub").write_bytes(pem)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in args.runtimes.split(","):
            result = drive(
                args.root, runtime, args.seconds, key, Path(tmp), args.hz, args.smoke_latency_ms or None
            )
            print(json.dumps(result, indent=2), flush=True)
            ok = result["exit"] == 0 and not result["errors"] and result["autopilot_telemetry"] > 0
            print(f"{runtime}: {'ok' if ok else 'FAILED'}", flush=True)
            failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
