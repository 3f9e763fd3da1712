"""The evolution: elitism, statistics, checkpoints, and a run killed and resumed."""

import itertools
import signal
from pathlib import Path

import numpy as np
import pytest

from firmware.sim import get_track
from tests.trainer.race.conftest import RUN_ARGS, Cli, Reference, result_genes
from trainer.race.checkpoint import CheckpointError
from trainer.race.dask_map import PoolMap, SerialMap
from trainer.race.evolve import Evolution, EvolutionConfig, GenerationStats
from trainer.race.line import LineEvaluator


@pytest.fixture(scope="module")
def evaluator() -> LineEvaluator:
    return LineEvaluator(get_track("technical"))


def test_the_best_never_gets_worse_and_statistics_are_kept(evaluator: LineEvaluator) -> None:
    seen: list[GenerationStats] = []
    result = Evolution(
        evaluator, EvolutionConfig(population=16, generations=8), on_generation=seen.append
    ).run()
    bests = [s.best for s in seen]
    assert [s.generation for s in seen] == list(range(9))
    assert all(b2 <= b1 for b1, b2 in itertools.pairwise(bests))  # elitism
    assert bests[-1] < bests[0] or bests[-1] == pytest.approx(min(bests))
    assert all(s.worst >= s.mean >= s.best and s.std >= 0 for s in seen)
    assert result.best_fitness == bests[-1] == result.hall_of_fame[0][1]
    centre = evaluator(np.zeros(evaluator.n_genes))[0]
    assert result.best_fitness < centre
    assert result.evaluations == sum(s.evaluations for s in seen)


def test_the_same_seed_gives_the_same_line_and_another_seed_another(evaluator: LineEvaluator) -> None:
    def run(seed: int) -> tuple[list[float], list[float]]:
        result = Evolution(evaluator, EvolutionConfig(population=12, generations=4, seed=seed)).run()
        return result.best_genes, [h.mean for h in result.history]

    assert run(1) == run(1)
    assert run(1)[1] != run(2)[1]


def test_a_resumed_run_ends_where_an_undisturbed_one_ends(evaluator: LineEvaluator, tmp_path: Path) -> None:
    config = EvolutionConfig(population=12, generations=6, seed=3)
    whole = Evolution(evaluator, config).run()
    path = tmp_path / "checkpoint.pkl"
    first = Evolution(
        evaluator, EvolutionConfig(population=12, generations=2, seed=3), checkpoint_path=path
    ).run()
    assert first.generations == 2
    resumed = Evolution(evaluator, config, checkpoint_path=path).run()
    assert resumed.resumed_from == 2
    assert resumed.hall_of_fame == whole.hall_of_fame
    assert [h.best for h in resumed.history] == [h.best for h in whole.history]


def test_a_checkpoint_of_another_run_is_refused(evaluator: LineEvaluator, tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pkl"
    Evolution(evaluator, EvolutionConfig(population=8, generations=1, seed=1), checkpoint_path=path).run()
    with pytest.raises(CheckpointError, match="another run"):
        Evolution(evaluator, EvolutionConfig(population=8, generations=2, seed=2), checkpoint_path=path).run()
    path.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Evolution(evaluator, EvolutionConfig(population=8, generations=2, seed=1), checkpoint_path=path).run()


def test_a_budget_stops_the_run_after_a_generation(evaluator: LineEvaluator) -> None:
    result = Evolution(evaluator, EvolutionConfig(population=8, generations=10_000, budget_s=1.0)).run()
    assert result.stopped == "budget"
    assert result.generations < 10_000 and result.elapsed_s >= 1.0  # however busy the machine is
    assert len(result.history) == result.generations + 1


def test_a_process_pool_gives_the_serial_result(evaluator: LineEvaluator) -> None:
    config = EvolutionConfig(population=12, generations=3, seed=5)
    pool = PoolMap(2)
    try:
        pooled = Evolution(evaluator, config, pool).run()
    finally:
        pool.close()
    assert pooled.hall_of_fame == Evolution(evaluator, config, SerialMap()).run().hall_of_fame


def test_a_killed_run_resumes_where_it_stopped(reference_run: Reference, tmp_path: Path) -> None:
    args = [*RUN_ARGS, "--workers", "0", "--out", str(tmp_path)]
    first = Cli(args)
    first.wait_for("generation   1:")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    assert (tmp_path / "checkpoint.pkl").exists()
    summary = Cli(args).finish()
    assert summary["resumed_from"] is not None and summary["resumed_from"] >= 1
    assert summary["generations"] == 3
    assert result_genes(summary) == reference_run.genes
    assert summary["best_lap"] == reference_run.best_lap
