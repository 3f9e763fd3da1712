"""The trainer: learn to drive from recorded sessions, evaluate, export, register (docs/trainer.md).

* :mod:`infra.store` — the object store (shared with the hub) · :mod:`trainer.data` — shards as a
  dataset, split by session · :mod:`trainer.augment` — training-only augmentations
* :mod:`trainer.models` — ``mobilenet`` (default), ``linear`` and ``categorical`` with their cards
* :mod:`trainer.train` — :func:`~trainer.train.fit` · :mod:`trainer.distributed` /
  :mod:`trainer.launch` / :mod:`trainer.run` — one process, torchrun, Horovod
* :mod:`trainer.evaluate` — closed loop in the simulator · :mod:`trainer.report` — offline metrics, plots
* :mod:`trainer.export` — ONNX, int8 ONNX, TFLite · :mod:`trainer.hub_client` — registration
* :mod:`trainer.record` — expert laps from the simulator · :mod:`trainer.quickstart` — the demo recipe
* :mod:`trainer.pipeline` — a whole train job · :mod:`trainer.agent` / :mod:`trainer.job` — MQTT jobs
"""
