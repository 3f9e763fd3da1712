"""Race optimisation: a racing line evolved by a DEAP genetic algorithm, its fitness evaluated on a
Dask cluster, checked by driving it in the simulator (docs/race.md)."""
