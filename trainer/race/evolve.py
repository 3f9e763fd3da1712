"""The genetic algorithm (DEAP): tournament selection, two-point crossover, Gaussian mutation,
elitism and a hall of fame, with per-generation statistics and a checkpoint after every generation.

Evaluation goes through ``toolbox.map``, so the same loop runs serially, on a process pool or on a
Dask cluster (:mod:`trainer.race.dask_map`). The fitness is a pure function of the genes and all the
randomness is DEAP's, drawn from the ``random`` module whose state is swapped in around the
variation step and saved in the checkpoint: a run is a function of its seed, whether it ran in one
go, was killed and resumed, or lost a worker on the way.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from deap import algorithms, base, tools

from trainer.race import checkpoint as ckpt
from trainer.race.line import LineEvaluator, smoothest_genes

MapFunction = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


class LapFitness(base.Fitness):  # type: ignore[misc]
    """One objective: the lap time with penalties, minimised."""

    weights = (-1.0,)


class Individual(list[float]):
    """A genome (lateral offsets in [-1, 1]) with its fitness. A module-level class rather than
    ``deap.creator``'s, so it pickles the same way in every process."""

    def __init__(self, genes: Iterable[float] = ()) -> None:
        super().__init__(float(g) for g in genes)
        self.fitness = LapFitness()


@dataclass(frozen=True, slots=True)
class EvolutionConfig:
    """The genetic algorithm's settings; ``seed`` makes a run repeatable."""

    population: int = 32
    generations: int = 20
    seed: int = 0
    elite: int = 2  # best individuals carried over unchanged
    tournament: int = 3
    crossover_prob: float = 0.6
    mutation_prob: float = 0.8
    mutation_sigma: float = 0.15  # of the gene range [-1, 1]
    mutation_genes: float = 3.0  # genes mutated per mutation, on average
    hall_of_fame: int = 5
    random_share: float = 0.25  # of the first population drawn uniformly (the rest near a smooth line)
    budget_s: float | None = None  # stop after the generation that passes this wall time

    def __post_init__(self) -> None:
        if self.population < 4:
            raise ValueError("EvolutionConfig.population must be at least 4")
        if self.generations < 0:
            raise ValueError("EvolutionConfig.generations must be >= 0")
        if not 0 <= self.elite < self.population:
            raise ValueError("EvolutionConfig.elite must be in [0, population)")
        if not 2 <= self.tournament <= self.population:
            raise ValueError("EvolutionConfig.tournament must be in [2, population]")
        for name in ("crossover_prob", "mutation_prob", "random_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"EvolutionConfig.{name} must be in [0, 1]")
        if not self.mutation_sigma > 0 or not self.mutation_genes > 0 or self.hall_of_fame < 1:
            raise ValueError("EvolutionConfig needs mutation_sigma, mutation_genes > 0 and hall_of_fame >= 1")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError("EvolutionConfig.budget_s must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GenerationStats:
    generation: int
    evaluations: int  # in this generation
    best: float
    mean: float
    std: float
    worst: float
    elapsed_s: float  # since the run began, over all attempts
    evals_per_s: float  # this generation's

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> GenerationStats:
        return cls(**{k: record[k] for k in cls.__slots__})


@dataclass
class EvolutionResult:
    best_genes: list[float]
    best_fitness: float
    hall_of_fame: list[tuple[list[float], float]]
    history: list[GenerationStats]
    generations: int  # completed
    evaluations: int
    elapsed_s: float
    resumed_from: int | None  # the generation a checkpoint resumed from
    stopped: str  # "generations" or "budget"


def fingerprint(evaluator: LineEvaluator, config: EvolutionConfig) -> str:
    """What a checkpoint must match to be resumed (generations and budget may grow on resume)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("generations", "budget_s")}
    text = json.dumps({"line": evaluator.fingerprint(), "evolution": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mutate(individual: Individual, sigma: float, indpb: float) -> tuple[Individual]:
    tools.mutGaussian(individual, mu=0.0, sigma=sigma, indpb=indpb)
    individual[:] = [min(1.0, max(-1.0, g)) for g in individual]
    return (individual,)


def make_toolbox(
    evaluator: LineEvaluator, config: EvolutionConfig, map_fn: MapFunction = map
) -> base.Toolbox:
    toolbox = base.Toolbox()
    toolbox.register("evaluate", evaluator)
    toolbox.register("map", map_fn)
    toolbox.register("select", tools.selTournament, tournsize=config.tournament)
    toolbox.register("mate", tools.cxTwoPoint)
    indpb = min(1.0, config.mutation_genes / evaluator.n_genes)
    toolbox.register("mutate", _mutate, sigma=config.mutation_sigma, indpb=indpb)
    return toolbox


def initial_population(evaluator: LineEvaluator, config: EvolutionConfig) -> list[Individual]:
    """The centre line, a smooth low-curvature line, lines scattered round it, and random lines."""
    rng = np.random.default_rng(config.seed)
    k = evaluator.n_genes
    smooth = smoothest_genes(evaluator)
    genomes = [np.zeros(k), smooth]
    n_random = round(config.random_share * config.population)
    while len(genomes) < config.population - n_random:
        genomes.append(np.clip(smooth + rng.normal(0.0, config.mutation_sigma, k), -1.0, 1.0))
    while len(genomes) < config.population:
        genomes.append(rng.uniform(-1.0, 1.0, k))
    return [Individual(g) for g in genomes[: config.population]]


@contextmanager
def _deap_random(state: list[Any]) -> Iterator[None]:
    """Run DEAP's operators on the run's own random state (``state[0]``), whatever else in the
    process draws from ``random`` meanwhile (a Dask client does)."""
    outside = random.getstate()
    random.setstate(state[0])
    try:
        yield
    finally:
        state[0] = random.getstate()
        random.setstate(outside)


def _evaluate(toolbox: base.Toolbox, individuals: list[Individual]) -> int:
    invalid = [ind for ind in individuals if not ind.fitness.valid]
    for ind, fit in zip(invalid, toolbox.map(toolbox.evaluate, invalid), strict=True):
        ind.fitness.values = tuple(fit)
    return len(invalid)


def _stats() -> tools.Statistics:
    stats = tools.Statistics(key=lambda ind: ind.fitness.values[0])
    stats.register("best", np.min)
    stats.register("mean", np.mean)
    stats.register("std", np.std)
    stats.register("worst", np.max)
    return stats


def _pairs(individuals: Iterable[Individual]) -> list[tuple[list[float], float]]:
    return [(list(ind), float(ind.fitness.values[0])) for ind in individuals]


def _individuals(pairs: list[tuple[list[float], float]]) -> list[Individual]:
    out = []
    for genes, fit in pairs:
        ind = Individual(genes)
        ind.fitness.values = (fit,)
        out.append(ind)
    return out


class Evolution:
    """One run: ``run()`` evolves up to ``config.generations`` generations, checkpointing each one
    to ``checkpoint_path`` (when given) and resuming from it when it is already there."""

    def __init__(
        self,
        evaluator: LineEvaluator,
        config: EvolutionConfig,
        map_fn: MapFunction = map,
        checkpoint_path: Path | None = None,
        on_generation: Callable[[GenerationStats], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.config = config
        self.toolbox = make_toolbox(evaluator, config, map_fn)
        self.checkpoint_path = checkpoint_path
        self.on_generation = on_generation or (lambda _stats: None)
        self.fingerprint = fingerprint(evaluator, config)
        self.stats = _stats()
        self.hall = tools.HallOfFame(config.hall_of_fame)
        self.logbook: list[dict[str, Any]] = []
        self.population: list[Individual] = []
        self.generation = -1
        self.evaluations = 0
        self.elapsed_before = 0.0
        self.resumed_from: int | None = None
        self._random: list[Any] = [random.Random(config.seed).getstate()]

    def _resume(self) -> bool:
        if self.checkpoint_path is None:
            return False
        saved = ckpt.load(self.checkpoint_path, self.fingerprint)
        if saved is None:
            return False
        self.population = _individuals(saved.population)
        self.hall.update(_individuals(saved.hall_of_fame))
        self.logbook = list(saved.logbook)
        self.generation = saved.generation
        self.evaluations = saved.evaluations
        self.elapsed_before = saved.elapsed_s
        self._random = [saved.random_state]
        self.resumed_from = saved.generation
        return True

    def _record(self, evaluations: int, started: float, gen_started: float) -> GenerationStats:
        self.hall.update(self.population)
        now = time.monotonic()
        record = {
            "generation": self.generation,
            "evaluations": evaluations,
            **{k: float(v) for k, v in self.stats.compile(self.population).items()},
            "elapsed_s": self.elapsed_before + now - started,
            "evals_per_s": evaluations / max(now - gen_started, 1e-9),
        }
        self.logbook.append(record)
        self.evaluations += evaluations
        if self.checkpoint_path is not None:
            ckpt.save(
                self.checkpoint_path,
                ckpt.Checkpoint(
                    fingerprint=self.fingerprint,
                    generation=self.generation,
                    population=_pairs(self.population),
                    hall_of_fame=_pairs(self.hall),
                    logbook=self.logbook,
                    random_state=self._random[0],
                    elapsed_s=record["elapsed_s"],
                    evaluations=self.evaluations,
                    meta={"track": self.evaluator.track_name, "config": self.config.to_dict()},
                ),
            )
        stats = GenerationStats.from_record(record)
        self.on_generation(stats)
        return stats

    def _next_generation(self) -> int:
        c = self.config
        with _deap_random(self._random):
            parents = self.toolbox.select(self.population, c.population - c.elite)
            offspring = algorithms.varAnd(parents, self.toolbox, c.crossover_prob, c.mutation_prob)
        evaluations = _evaluate(self.toolbox, offspring)
        elites = [self.toolbox.clone(ind) for ind in tools.selBest(self.population, c.elite)]
        self.population = elites + offspring
        return evaluations

    def run(self) -> EvolutionResult:
        started = time.monotonic()
        if not self._resume():
            self.population = initial_population(self.evaluator, self.config)
            self.generation = 0
            gen_started = time.monotonic()
            self._record(_evaluate(self.toolbox, self.population), started, gen_started)
        else:
            for record in self.logbook:
                self.on_generation(GenerationStats.from_record(record))
        stopped = "generations"
        budget = self.config.budget_s
        while self.generation < self.config.generations:
            if budget is not None and self.elapsed_before + time.monotonic() - started >= budget:
                stopped = "budget"
                break
            gen_started = time.monotonic()
            evaluations = self._next_generation()
            self.generation += 1
            self._record(evaluations, started, gen_started)
        best = self.hall[0]
        return EvolutionResult(
            best_genes=list(best),
            best_fitness=float(best.fitness.values[0]),
            hall_of_fame=_pairs(self.hall),
            history=[GenerationStats.from_record(r) for r in self.logbook],
            generations=self.generation,
            evaluations=self.evaluations,
            elapsed_s=self.elapsed_before + time.monotonic() - started,
            resumed_from=self.resumed_from,
            stopped=stopped,
        )
