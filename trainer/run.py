"""Entry point of every training process: ``python -m trainer.run CONFIG.json``.

Started directly it trains in one process; under ``torchrun`` or ``horovodrun`` each process joins
the distributed run (see :mod:`trainer.distributed`). Rank 0 writes ``result.json`` to the run dir.
"""

from __future__ import annotations

import argparse
import sys

from trainer.distributed import detect
from trainer.train import TrainConfig, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.run", description=__doc__)
    parser.add_argument("config", help="a TrainConfig JSON file")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.load(args.config)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backend = detect()
    try:
        fit(config, backend)
    finally:
        backend.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
