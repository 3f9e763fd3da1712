"""A DonkeyCar tub, written by DonkeyCar itself, imported, trained on, and driven in the simulator.

1. The simulator's expert drives the oval (with disturbances, so the data shows recoveries); its
   camera frames and actions go to DonkeyCar 5.3's own ``TubWriter`` (script/donkeycar-env), which
   writes a tub v2; the first records are deleted the way DonkeyCar's tub tools delete them.
2. ``paddock data import-tub`` turns the tub into a session; ``paddock train train`` learns from it
   and drives the trained model in the simulator (``--evaluate-track``).

    python tests/bench/bench_tub_train.py [--frames 1500] [--epochs 8] [--out tub-demo]

Prints the import report and the lap results; the trainer's report lands in OUT/runs.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DONKEY_VENV = Path(os.environ.get("PADDOCK_DONKEYCAR_VENV", Path.home() / ".cache/paddock/donkeycar-venv"))
WRITE = """
import json, sys
import numpy as np
from donkeycar.parts.tub_v2 import TubWriter
images = np.load(sys.argv[1])
actions = json.load(open(sys.argv[2]))
w = TubWriter(sys.argv[3], inputs=["cam/image_array", "user/angle", "user/throttle", "user/mode"],
              types=["image_array", "float", "float", "str"])
for image, (angle, throttle) in zip(images, actions):
    w.run(image, angle, throttle, "user")
w.tub.delete_records(list(range(int(sys.argv[4]))))
w.close()
print("donkeycar wrote", len(actions), "records,", len(w.tub), "live")
"""


def expert_frames(frames: int, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    from tests.edge.trained import expert_drive

    images, actions = [], []
    for world, steering, throttle in expert_drive("oval", frames, seed):
        images.append(world.render())
        actions.append((float(steering), float(throttle)))
    return np.stack(images), actions


def run(cmd: list[str]) -> str:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(f"$ {' '.join(cmd)}  ({time.monotonic() - t0:.0f} s, exit {done.returncode})")
    print(done.stdout[-3000:])
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(done.returncode)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--deleted", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("tub-demo"))
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    images, actions = expert_frames(args.frames)
    np.save(out / "images.npy", images)
    (out / "actions.json").write_text(json.dumps(actions))
    tub = out / "tub_1_donkeycar"
    donkey = str(DONKEY_VENV / "bin" / "python")
    run(
        [donkey, "-c", WRITE, str(out / "images.npy"), str(out / "actions.json"), str(tub), str(args.deleted)]
    )
    paddock = [sys.executable, "-m", "deploy.cli"]
    store = str(out / "store")
    report = run([*paddock, "data", "import-tub", str(tub), "--store", store, "--car", "donkey-1"])
    session = report.split(":")[0].split("/")[1]
    run(
        [
            *paddock,
            "train",
            "train",
            "--store",
            store,
            "--session",
            f"donkey-1/{session}",
            "--architecture",
            "linear",
            "--epochs",
            str(args.epochs),
            "--formats",
            "onnx",
            "--evaluate-track",
            "oval",
            "--evaluate-laps",
            "2",
            "--work-dir",
            str(out / "runs"),
            "--no-progress",
        ]
    )


if __name__ == "__main__":
    main()
