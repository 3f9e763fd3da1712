"""A small replay-fitness run (each line driven in the simulator, so a generation takes a while)
shared by the tests that interrupt runs: they must end exactly where an undisturbed run ends."""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from firmware.sim import get_track
from trainer.race.evolve import EvolutionConfig
from trainer.race.line import LineConfig
from trainer.race.result import RunSettings, optimize

TRACK, POPULATION, GENERATIONS, SEED = "oval", 8, 3, 7
RUN_ARGS = [
    "--track",
    TRACK,
    "--population",
    str(POPULATION),
    "--generations",
    str(GENERATIONS),
    "--seed",
    str(SEED),
    "--fitness",
    "replay",
    "--json",
]


@dataclass
class Reference:
    genes: list[float]
    best_lap: float
    hall_of_fame: list[tuple[list[float], float]] = field(repr=False)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The undisturbed run, in this process."""
    result = optimize(
        get_track(TRACK),
        LineConfig(),
        EvolutionConfig(population=POPULATION, generations=GENERATIONS, seed=SEED),
        RunSettings(workers=0, fitness="replay"),
        tmp_path_factory.mktemp("reference"),
    )
    assert result.best_lap is not None
    return Reference(result.genes, round(result.best_lap, 3), result.evolution.hall_of_fame)


class Cli:
    """``paddock race optimize`` in a subprocess, its stderr read line by line."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
        self.proc = subprocess.Popen(
            # The race command alone: `paddock`'s other commands import torch (seconds of start-up).
            [sys.executable, "-m", "deploy.commands.race", "optimize", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        stream: IO[str] | None = self.proc.stderr
        assert stream is not None
        while time.monotonic() < deadline:
            line = stream.readline()
            if not line:
                raise AssertionError(f"the run ended before {text!r}:\n{''.join(self.lines)}")
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(self.lines)}")

    def finish(self, timeout: float = 240.0) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, "".join(self.lines) + err
        summary: dict[str, Any] = json.loads(out)
        return summary


def result_genes(summary: dict[str, Any]) -> list[float]:
    data = json.loads(Path(summary["result"]).read_text())
    genes: list[float] = data["genes"]
    return genes
