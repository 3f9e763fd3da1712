"""A generation on disk, so a killed run resumes where it stopped.

The checkpoint is plain data (genes and fitness values as lists, the logbook as dicts, the random
generator's state), pickled and written atomically (a temporary file, fsync, rename): a run killed
at any instant leaves the previous generation's checkpoint or the new one, never half of either.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.files import write_atomic

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed (another run's, or unreadable)."""


@dataclass
class Checkpoint:
    fingerprint: str  # track + line config + evolution config: a checkpoint resumes only its own run
    generation: int  # the last generation evaluated
    population: list[tuple[list[float], float]]  # (genes, fitness)
    hall_of_fame: list[tuple[list[float], float]]
    logbook: list[dict[str, Any]]
    random_state: Any  # random.getstate(): DEAP's operators draw from the `random` module
    elapsed_s: float = 0.0  # wall time spent over all the attempts
    evaluations: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def save(path: Path, checkpoint: Checkpoint) -> None:
    write_atomic(path, pickle.dumps({"format": FORMAT, "checkpoint": checkpoint.__dict__}, protocol=4))


def load(path: Path, fingerprint: str) -> Checkpoint | None:
    """The checkpoint at ``path`` (``None`` if there is none); refuses another run's."""
    if not path.exists():
        return None
    try:
        # Our own file in our own output directory, written by save() above.
        raw = pickle.loads(path.read_bytes())
        if raw.get("format") != FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {raw.get('format')!r}, expected {FORMAT}")
        checkpoint = Checkpoint(**raw["checkpoint"])
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if checkpoint.fingerprint != fingerprint:
        raise CheckpointError(
            f"{path}: the checkpoint belongs to another run (another track, seed or setting); "
            "use another --out directory or --restart"
        )
    return checkpoint
