"""Distributed evaluation on a real Dask scheduler and workers (subprocesses on loopback): the same
result as in process, a worker killed in the middle of a generation costs a retry, not the run, and
a scheduler with too few workers is one clear error."""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.dask import DaskScheduler, DaskWorker
from tests.trainer.race.conftest import RUN_ARGS, Cli, Reference, result_genes
from trainer.race.dask_map import DaskMap


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[DaskScheduler, list[DaskWorker]]]:
    scheduler = DaskScheduler(tmp_path / "scheduler").start()
    assert isinstance(scheduler, DaskScheduler)
    workers = [DaskWorker(tmp_path / f"worker-{i}", scheduler, f"w{i}") for i in range(2)]
    try:
        for w in workers:
            w.start()
        yield scheduler, workers
    finally:
        for w in workers:
            w.stop()
        scheduler.stop()


def test_a_worker_killed_mid_generation_costs_a_retry_not_the_run(
    cluster: tuple[DaskScheduler, list[DaskWorker]], reference_run: Reference, tmp_path: Path
) -> None:
    scheduler, workers = cluster
    run = Cli([*RUN_ARGS, "--scheduler", scheduler.address, "--workers", "2", "--out", str(tmp_path / "out")])
    run.wait_for("generation   1:")
    workers[0].stop(signal.SIGKILL)  # generation 2 is being evaluated on both workers
    summary = run.finish()
    assert summary["workers"] == 2
    assert summary["lost_workers"] == 1  # it left while a generation was in flight
    assert summary["generations"] == 3
    assert result_genes(summary) == reference_run.genes
    assert summary["best_lap"] == reference_run.best_lap


def test_too_few_workers_at_the_scheduler_is_one_clear_error(tmp_path: Path) -> None:
    scheduler = DaskScheduler(tmp_path / "scheduler").start()
    assert isinstance(scheduler, DaskScheduler)
    worker = DaskWorker(tmp_path / "worker", scheduler, "w0")
    try:
        worker.start()
        with pytest.raises(ValueError, match=r"^1 of 2 Dask workers joined tcp://.* within 3 s: start"):
            DaskMap(scheduler.address, workers=2, timeout_s=3)
    finally:
        worker.stop()
        scheduler.stop()
