"""Perception: obstacle-ahead and surface classifiers trained on captured, labelled sessions.

* :mod:`.dataset` — captured sessions (``paddock sim capture``, or recordings with labels) as
  small images and class labels, split into train / validation / test by session;
* :mod:`.validate` — the data report and the checks a dataset must pass before training;
* :mod:`.models` — a MobileNet-style network with one classification head per task;
* :mod:`.train` — training with augmentation, checkpoints and early stopping;
* :mod:`.search` — an Optuna search with a bounded number of trials and pruning;
* :mod:`.metrics` — accuracy, per-class precision / recall / F1, confusion matrix, ROC and PR
  curves and the worst mistakes, written into the run's report directory;
* :mod:`.tracking` — MLflow: parameters, per-epoch metrics, artefacts, model and registry.

See docs/perception.md.
"""

OBSTACLE_CLASSES = ("none", "box", "cone", "wall", "car")
SURFACE_CLASSES = ("asphalt", "wood", "carpet", "tile", "offtrack")
TASKS: dict[str, tuple[str, ...]] = {"obstacle": OBSTACLE_CLASSES, "surface": SURFACE_CLASSES}
