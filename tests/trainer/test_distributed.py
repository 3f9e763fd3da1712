"""The same training under torchrun and horovodrun, two processes on loopback."""

import importlib.util
from pathlib import Path

import pytest

from infra.store import LocalStore
from tests.missing import missing
from tests.trainer.conftest import small_config
from trainer.launch import command, launch
from trainer.train import load_checkpoint, weights_digest


def _horovod_or_skip() -> None:
    if importlib.util.find_spec("horovod") is None:
        missing("Horovod is not installed: run script/build-horovod (docs/horovod.md)")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "horovod"])
def test_two_processes_end_with_identical_weights(
    small_store: LocalStore, tmp_path: Path, launcher: str
) -> None:
    if launcher == "horovod":
        _horovod_or_skip()
    config = small_config(small_store, tmp_path / "run", epochs=2, batch_size=16)
    with open(tmp_path / "launcher.log", "w") as log:
        result = launch(config, launcher, workers=2, log=log, timeout_s=240)  # type: ignore[arg-type]
    output = (tmp_path / "launcher.log").read_text()
    assert result.launcher == launcher and result.world == 2, output
    assert len(result.weights_sha256) == 2
    assert result.weights_sha256[0] == result.weights_sha256[1], "ranks diverged"
    # Rank 0's checkpoint holds those very weights.
    model, ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert weights_digest(model) == result.weights_sha256[0]
    assert ckpt["epoch"] == 2
    # Every frame of an epoch was seen once over both ranks (240 train frames → 8 steps of 16 each).
    assert result.train_frames == 240
    assert result.history[-1].metrics["steering_mae"] < 0.5


def test_launch_commands() -> None:
    cfg = Path("run/config.json")
    torchrun = command(cfg, "torchrun", 2)
    assert torchrun[1:4] == ["-m", "torch.distributed.run", "--nnodes"]
    assert torchrun[-3:] == ["-m", "trainer.run", "run/config.json"]
    assert command(cfg, "local", 1)[-3:] == ["-m", "trainer.run", "run/config.json"]
