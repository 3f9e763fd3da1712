"""``map`` functions for DEAP's toolbox: on a Dask cluster, on a local process pool, or in process.

Each is called like the built-in ``map(fn, items)`` and returns the results in order. The items
(genomes) are cut into chunks, one task each; an evaluator with ``evaluate_batch`` (the fast line
evaluator) scores a whole chunk in one vectorised call.

On Dask a worker that dies takes its running tasks with it; the scheduler hands them to the workers
left (``allowed-failures`` times), and ``retries`` covers a task that raised. The fitness is a pure
function, so a recomputed chunk gives the same numbers: a lost worker costs time, not the run.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np

Fitness = tuple[float, ...]


def evaluate_chunk(fn: Callable[[Any], Any], chunk: Sequence[Sequence[float]]) -> list[Fitness]:
    """Score one chunk of genomes (runs on a worker)."""
    batch = getattr(fn, "evaluate_batch", None)
    if batch is not None:
        return [(float(v),) for v in batch(np.asarray(chunk, dtype=np.float64))]
    return [tuple(fn(np.asarray(genes, dtype=np.float64))) for genes in chunk]


def _chunks(items: list[list[float]], n: int) -> list[list[list[float]]]:
    size = max(1, -(-len(items) // max(1, n)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _flatten(parts: Iterable[list[Fitness]]) -> list[Fitness]:
    return list(itertools.chain.from_iterable(parts))


class SerialMap:
    """Evaluate in this process (chunked like the others, so results are identical)."""

    workers = 1

    def __call__(self, fn: Callable[[Any], Any], items: Iterable[Sequence[float]]) -> list[Fitness]:
        return evaluate_chunk(fn, [list(map(float, x)) for x in items])

    def close(self) -> None:
        pass


class PoolMap:
    """A local process pool (``concurrent.futures``), for comparison with Dask on one machine."""

    def __init__(self, workers: int, chunks_per_worker: int = 2, executor: Executor | None = None) -> None:
        self.workers = workers
        self.chunks_per_worker = chunks_per_worker
        self._executor = executor or ProcessPoolExecutor(max_workers=workers)

    def __call__(self, fn: Callable[[Any], Any], items: Iterable[Sequence[float]]) -> list[Fitness]:
        chunks = _chunks([list(map(float, x)) for x in items], self.workers * self.chunks_per_worker)
        return _flatten(self._executor.map(evaluate_chunk, itertools.repeat(fn), chunks))

    def close(self) -> None:
        self._executor.shutdown(cancel_futures=True)


def _connect(scheduler: str, workers: int | None, timeout_s: float) -> Any:
    """A client of ``scheduler`` once ``workers`` workers are there; ValueError, one line, if not."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=timeout_s)  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    if workers:
        try:
            client.wait_for_workers(workers, timeout=timeout_s)
        except TimeoutError:
            there = len(client.scheduler_info(n_workers=-1)["workers"])
            client.close()  # type: ignore[no-untyped-call]
            raise ValueError(
                f"{there} of {workers} Dask workers joined {scheduler} within {timeout_s:.0f} s: start "
                f"`dask worker {scheduler}` on more machines, or ask for fewer --workers"
            ) from None
    return client


class DaskMap:
    """Map over a Dask distributed cluster: ``scheduler`` is ``tcp://HOST:8786`` for machines on the
    LAN that run ``dask worker``; without one a :class:`distributed.LocalCluster` of ``workers``
    single-threaded processes is started (and stopped by :meth:`close`)."""

    def __init__(
        self,
        scheduler: str | None = None,
        workers: int | None = None,
        chunks_per_worker: int = 2,
        retries: int = 3,
        timeout_s: float = 60.0,
    ) -> None:
        from distributed import Client, LocalCluster

        self._cluster: LocalCluster | None = None
        if scheduler is None:
            n = workers or max(1, os.cpu_count() or 1)
            self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self._cluster, timeout=timeout_s)  # type: ignore[no-untyped-call]
        else:
            self.client = _connect(scheduler, workers, timeout_s)
        self.chunks_per_worker = chunks_per_worker
        self.retries = retries
        self.lost_workers = 0  # seen leaving during a map
        self._round = 0

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def __call__(self, fn: Callable[[Any], Any], items: Iterable[Sequence[float]]) -> list[Fitness]:
        genomes = [list(map(float, x)) for x in items]
        if not genomes:
            return []
        before = set(self.client.scheduler_info(n_workers=-1)["workers"])
        chunks = _chunks(genomes, max(1, len(before)) * self.chunks_per_worker)
        self._round += 1
        tag = f"race-eval-{uuid.uuid4().hex[:8]}-{self._round}"
        futures = self.client.map(
            evaluate_chunk,
            [fn] * len(chunks),
            chunks,
            key=[f"{tag}-{i}" for i in range(len(chunks))],
            retries=self.retries,
            pure=False,
        )
        try:
            results = self.client.gather(futures)  # type: ignore[no-untyped-call]
        finally:
            after = set(self.client.scheduler_info(n_workers=-1)["workers"])
            self.lost_workers += len(before - after)
        return _flatten(results)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
        if self._cluster is not None:
            self._cluster.close()
