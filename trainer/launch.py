"""Start a training run: in this process, under ``torchrun`` or under ``horovodrun``.

Every process of a distributed run executes the same entry point, ``python -m trainer.run
CONFIG.json``, which finds out from its environment how it was launched (:mod:`trainer.distributed`).
So a run can also be started by hand on several machines, e.g.::

    torchrun --nnodes 2 --nproc_per_node 2 --rdzv_endpoint host:29400 -m trainer.run run/config.json
    horovodrun -np 4 -H a:2,b:2 --gloo python -m trainer.run run/config.json
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from trainer.distributed import Launcher
from trainer.train import TrainConfig, TrainResult, default_threads, fit


class LaunchError(RuntimeError):
    """The launcher or one of its processes failed."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def horovodrun_path() -> str:
    """``horovodrun`` beside this Python (the virtual environment), else on ``PATH``."""
    beside = Path(sys.executable).with_name("horovodrun")
    if beside.exists():
        return str(beside)
    found = shutil.which("horovodrun")
    if not found:
        raise LaunchError("horovodrun not found: build Horovod with script/build-horovod (docs/horovod.md)")
    return found


def command(config_path: Path, launcher: Launcher, workers: int, hosts: str | None = None) -> list[str]:
    """The command line that starts ``workers`` processes of ``python -m trainer.run CONFIG``."""
    entry = [sys.executable, "-m", "trainer.run", str(config_path)]
    if launcher == "torchrun":
        if hosts:
            raise LaunchError("for torchrun on several machines, start it on each (see trainer.launch)")
        return [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", "1", "--nproc_per_node", str(workers),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
            "-m", "trainer.run", str(config_path),
        ]  # fmt: skip
    if launcher == "horovod":
        return [
            horovodrun_path(),
            "-np",
            str(workers),
            "-H",
            hosts or f"localhost:{workers}",
            "--gloo",
            *entry,
        ]
    return entry


def launch(
    config: TrainConfig,
    launcher: Launcher = "local",
    workers: int = 1,
    *,
    hosts: str | None = None,
    log: IO[str] | None = None,
    timeout_s: float | None = None,
) -> TrainResult:
    """Train with ``workers`` processes; return rank 0's result.

    ``local`` with one worker trains in this process. Otherwise the config is written to
    ``{run_dir}/config.json`` and the launcher started; its output goes to ``log`` (default: ours).
    """
    if workers < 1:
        raise LaunchError("workers must be >= 1")
    if launcher == "local" and workers == 1:
        return fit(config)
    if launcher == "local":
        launcher = "torchrun"
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    config_path.write_text(config.model_dump_json(indent=2))
    result_path = run_dir / "result.json"
    result_path.unlink(missing_ok=True)
    cmd = command(config_path, launcher, workers, hosts)
    env = dict(os.environ)
    # Each process takes its share of the cores unless the config says otherwise.
    env.setdefault("OMP_NUM_THREADS", str(config.threads or default_threads(workers)))
    env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{launcher} did not finish within {timeout_s} s") from None
    if proc.returncode != 0:
        raise LaunchError(f"{launcher} exited with status {proc.returncode}: {' '.join(cmd)}")
    if not result_path.exists():
        raise LaunchError(f"{launcher} finished but wrote no {result_path}")
    return TrainResult.load(result_path)
