"""``paddock serve``: a real uvicorn on loopback answering images with steering and throttle, the same
numbers as ONNX Runtime called directly, batched under concurrent load, described by OpenAPI."""

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnx
import pytest

from deploy.broker import free_port
from schemas.model_card import decode_outputs, preprocess
from tests.edge import modelkit
from tests.servers import wait_for_port
from trainer.export import onnx_session
from trainer.serve import decode_image


def write_model(path: Path) -> Path:
    """A real ONNX graph whose steering depends on the image's colour, its card in the metadata."""
    model = onnx.load_from_string(modelkit.onnx_model(channel_weights=(0.5, -0.3, 0.2), throttle=0.4))
    entry = model.metadata_props.add()
    entry.key, entry.value = "paddock.card", modelkit.card().model_dump_json()
    path.write_bytes(model.SerializeToString())
    return path


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (160, 120)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = colour
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    model = write_model(tmp_path_factory.mktemp("serve") / "pilot.onnx")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.commands.serve",
            str(model),
            "--port",
            str(port),
            "--max-wait-ms",
            "30",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port("127.0.0.1", port, 60, proc)
        yield f"http://127.0.0.1:{port}", model
    finally:
        proc.terminate()
        proc.wait(10)


def direct(model: Path, image_png: bytes) -> dict[str, float]:
    session = onnx_session(model)
    card = modelkit.card()
    rgb = decode_image(image_png)
    outs = session.run(None, {session.get_inputs()[0].name: preprocess(rgb, card.input)[None]})
    return decode_outputs(card, dict(zip([o.name for o in session.get_outputs()], outs, strict=True)))


def test_concurrent_requests_are_batched_and_answered_like_onnx_runtime(server: tuple[str, Path]) -> None:
    url, model = server
    images = [jpeg((i * 10 % 256, 255 - i * 7 % 256, i * 3 % 256)) for i in range(32)]
    with httpx.Client(timeout=30) as client:

        def ask(body: bytes) -> dict[str, float]:
            r = client.post(f"{url}/predict", content=body, headers={"content-type": "image/png"})
            r.raise_for_status()
            data: dict[str, float] = r.json()
            return data

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, images))
        stats = client.get(f"{url}/stats").json()
    for body, answer in zip(images, answers, strict=True):
        want = direct(model, body)
        assert answer["steering"] == pytest.approx(want["steering"], abs=1e-6)
        assert answer["throttle"] == pytest.approx(want["throttle"], abs=1e-6)
    assert len({round(a["steering"], 5) for a in answers}) > 20  # different images, different answers
    assert stats["requests"] >= 32 and stats["mean_batch"] > 1.0
    assert max(a["batch"] for a in answers) > 1


def test_card_openapi_and_bad_requests(server: tuple[str, Path]) -> None:
    url, _ = server
    with httpx.Client(timeout=30) as client:
        card = client.get(f"{url}/card").json()
        assert card["card"]["input"]["width"] == 160 and card["file"] == "pilot.onnx"
        spec = client.get(f"{url}/openapi.json").json()
        assert "image/png" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
        bad = client.post(f"{url}/predict", content=b"not an image", headers={"content-type": "image/jpeg"})
        assert bad.status_code == 400 and "not a JPEG or PNG" in bad.json()["detail"]
        wrong = client.post(f"{url}/predict", json={"image": "x"})
        assert wrong.status_code == 415
        big = client.post(
            f"{url}/predict", content=jpeg((1, 2, 3), (640, 480)), headers={"content-type": "image/png"}
        )
        assert big.status_code == 200  # any size: resized as the card says


def test_a_file_that_is_not_a_model_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bogus = tmp_path / "x.onnx"
    bogus.write_bytes(b"nope")
    res = subprocess.run(
        [sys.executable, "-m", "deploy.commands.serve", str(bogus)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr
