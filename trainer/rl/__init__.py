"""Reinforcement learning, AWS DeepRacer's way: a model is DeepRacer's three files
(``model_metadata.json``, ``hyperparameters.json``, ``reward_function.py``), trained with
stable-baselines3 in the simulator, evaluated with DeepRacer's metrics and exported to ONNX for the
car. See docs/rl.md.

* :mod:`trainer.rl.files` — the three files: defaults, ``paddock rl new``, validation;
* :mod:`trainer.rl.env` — the training environment (episode rules, observations) and vectorisation;
* :mod:`trainer.rl.networks` — the ``neural_network`` presets as feature extractors;
* :mod:`trainer.rl.train` — PPO / SAC training with budget, termination conditions, checkpoints;
* :mod:`trainer.rl.monitor` — per-iteration metrics, the live view and the plots;
* :mod:`trainer.rl.evaluate` — DeepRacer's evaluation (trials, lap times, off-track penalty, simtrace);
* :mod:`trainer.rl.export` — ONNX with a model card declaring the action space.

Importing this package loads nothing heavy; stable-baselines3 and torch load in the modules that
need them.
"""
