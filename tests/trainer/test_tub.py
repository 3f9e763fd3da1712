"""DonkeyCar tubs in and out, checked against DonkeyCar 5.3's own TubWriter and Tub reader.

DonkeyCar runs in its own environment (script/donkeycar-env: it pins numpy<2): a tub is written
there by DonkeyCar's code, with records deleted as its UI deletes them, imported here, trained on,
exported back, and read there again by DonkeyCar's ``Tub``.
"""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.cli import app
from infra.store import LocalStore
from schemas.dataset import SessionManifest, session_manifest_key
from schemas.messages import SessionRef
from schemas.payloads import encode_jpeg
from tests.missing import venv_python
from tests.trainer.hub_thread import HubThread
from tests.trainer.synth import road_image
from trainer.data import load_frames
from trainer.interop.sessions import jpeg_size

DONKEY_VENV = Path(os.environ.get("PADDOCK_DONKEYCAR_VENV", Path.home() / ".cache/paddock/donkeycar-venv"))
DELETED = [3, 4, 17]
FRAMES = 40

WRITE_TUB = """
import json, sys
import numpy as np
from PIL import Image
from donkeycar.parts.tub_v2 import TubWriter
src, out = sys.argv[1], sys.argv[2]
frames = json.load(open(src + "/frames.json"))
writer = TubWriter(out, inputs=["cam/image_array", "user/angle", "user/throttle", "user/mode"],
                   types=["image_array", "float", "float", "str"])
for i, f in enumerate(frames):
    image = np.asarray(Image.open(f"{src}/{i}.png"))
    writer.run(image, f["angle"], f["throttle"], "user")
writer.tub.delete_records(json.loads(sys.argv[3]))
writer.close()
"""

READ_TUB = """
import json, sys
import numpy as np
from PIL import Image
from donkeycar.parts.tub_v2 import Tub
tub = Tub(sys.argv[1], read_only=True)
out = []
for record in tub:
    image = np.asarray(Image.open(tub.images_base_path + "/" + record["cam/image_array"]))
    out.append({"angle": record["user/angle"], "throttle": record["user/throttle"],
                "mode": record["user/mode"], "shape": list(image.shape), "index": record["_index"]})
print(json.dumps({"len": len(tub), "records": out}))
"""


@pytest.fixture(scope="module")
def donkey_python() -> Path:
    return venv_python(DONKEY_VENV, "DonkeyCar", "script/donkeycar-env")


def _donkey(python: Path, code: str, *args: str) -> str:
    done = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def donkey_tub(
    donkey_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, float]]]:
    """A tub written by DonkeyCar itself from road images whose bend follows the steering."""
    import cv2

    src = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    frames = []
    for i in range(FRAMES):
        angle = float(np.sin(i / 5.0))
        cv2.imwrite(str(src / f"{i}.png"), cv2.cvtColor(road_image(angle, rng), cv2.COLOR_RGB2BGR))
        frames.append({"angle": angle, "throttle": 0.3 + 0.01 * i})
    (src / "frames.json").write_text(json.dumps(frames))
    tub = tmp_path_factory.mktemp("donkey") / "tub_1_24-05-01"
    _donkey(donkey_python, WRITE_TUB, str(src), str(tub), json.dumps(DELETED))
    return tub, frames


def test_import_a_donkeycar_tub_honours_deleted_records(donkey_tub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tub, frames = donkey_tub
    assert json.loads((tub / "manifest.json").read_text().splitlines()[4])["deleted_indexes"] == DELETED
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app, ["data", "import-tub", str(tub), "--store", str(store), "--car", "donkey-1", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])[str(tub)]
    assert report["deleted"] == len(DELETED) and report["skipped"] == 0
    ((session, count),) = report["sessions"].items()
    assert count == FRAMES - len(DELETED)
    manifest = SessionManifest.from_json(LocalStore(store).get(session_manifest_key("donkey-1", session)))
    assert manifest.state == "sealed" and manifest.frame_count == count
    table = load_frames(LocalStore(store), [SessionRef(car="donkey-1", session=session)])
    assert len(table) == count
    assert 3 not in table.seqs and 17 not in table.seqs
    kept = [i for i in range(FRAMES) if i not in DELETED]
    assert list(table.seqs) == kept
    for row, i in enumerate(kept):
        assert table.actions[row][0] == pytest.approx(frames[i]["angle"], abs=1e-6)
        assert table.actions[row][1] == pytest.approx(frames[i]["throttle"], abs=1e-6)
    assert table.image(0).shape == (120, 160, 3)


def test_export_is_read_by_donkeycars_own_tub(donkey_tub, donkey_python: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tub, frames = donkey_tub
    store = tmp_path / "store"
    assert (
        CliRunner()
        .invoke(app, ["data", "import-tub", str(tub), "--store", str(store), "--car", "donkey-1"])
        .exit_code
        == 0
    )
    (session,) = [p.name for p in (store / "datasets" / "donkey-1").iterdir()]
    out = tmp_path / "exported"
    result = CliRunner().invoke(
        app, ["data", "export-tub", str(out), "--store", str(store), "--session", f"donkey-1/{session}"]
    )
    assert result.exit_code == 0, result.output
    read = json.loads(_donkey(donkey_python, READ_TUB, str(out)).splitlines()[-1])  # after its banner
    kept = [i for i in range(FRAMES) if i not in DELETED]
    assert read["len"] == len(kept) == len(read["records"])
    for rec, i in zip(read["records"], kept, strict=True):
        assert rec["angle"] == pytest.approx(frames[i]["angle"], abs=1e-6)
        assert rec["throttle"] == pytest.approx(frames[i]["throttle"], abs=1e-6)
        assert rec["mode"] == "user" and rec["shape"] == [120, 160, 3]


def test_bad_inputs_are_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "import-tub", str(tmp_path), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "manifest.json: missing" in result.output
    result = runner.invoke(
        app, ["data", "export-tub", str(tmp_path / "o"), "--store", str(tmp_path), "--session", "nope"]
    )
    assert result.exit_code == 2 and "CAR/SESSION" in result.output
    result = runner.invoke(
        app, ["data", "export-tub", str(tmp_path / "o"), "--store", str(tmp_path), "--session", "car-1/s1"]
    )
    assert result.exit_code == 2 and "no session car-1/s1" in result.output


def test_jpeg_size_reads_the_frame_header() -> None:
    jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8))
    assert jpeg_size(jpeg) == (64, 48)
    assert jpeg_size(b"\xff\xd8garbage") is None


def test_a_tub_imported_with_hub_is_listed_and_trained_on_there(  # type: ignore[no-untyped-def]
    donkey_tub, tmp_path: Path, mosquitto: Any
) -> None:
    import httpx

    tub, _ = donkey_tub
    with HubThread(mosquitto.url, tmp_path / "hub") as hub:
        runner = CliRunner()
        auth = ["--hub", hub.url, "--token", hub.token]
        result = runner.invoke(app, ["data", "import-tub", str(tub), "--car", "donkey-1", *auth])
        assert result.exit_code == 0, result.output
        assert "uploaded donkey-1/tub-" in result.output
        listed = httpx.get(f"{hub.url}/sessions", timeout=30).json()
        ((session,),) = [[s for s in listed["sessions"] if s["car"] == "donkey-1"]]
        assert session["state"] == "sealed" and session["frame_count"] == FRAMES - len(DELETED)
        ref = {"car": "donkey-1", "session": session["session"]}
        headers = {"Authorization": f"Bearer {hub.token}"}
        made = httpx.post(
            f"{hub.url}/datasets", json={"name": "tubs", "train": [ref]}, headers=headers, timeout=30
        )
        assert made.status_code == 201, made.text
        # Trained from the hub's dataset and store, exactly as a recorded session is.
        args = ["train", "train", "--dataset", "tubs", "--store", str(hub.config.store_url), *auth]
        args += [
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--formats",
            "onnx",
            "--name",
            "tub-pilot",
            "-a",
            "linear",
        ]
        args += ["--set", "model.width=64", "--set", "model.height=32", "--no-progress"]
        result = runner.invoke(app, [*args, "--work-dir", str(tmp_path / "runs")])
        assert result.exit_code == 0, result.output
        models = httpx.get(f"{hub.url}/models", params={"name": "tub-pilot"}, timeout=30).json()
        assert len(models) == 1 and models[0]["lineage"]["dataset"] == "tubs"
        # The same tub again is a conflict, not a second copy.
        again = runner.invoke(app, ["data", "import-tub", str(tub), "--car", "donkey-1", *auth])
        assert again.exit_code != 0 and "409" in again.output and "exists" in again.output
