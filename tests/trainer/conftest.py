"""Fixtures of the trainer's tests: small synthetic datasets in the hub's layout."""

from pathlib import Path

import pytest

from infra.store import LocalStore
from tests.trainer.synth import write_session
from trainer.models import ModelOptions
from trainer.train import TrainConfig

# A small input keeps the tests fast; the mapping to learn is the same.
SMALL = ModelOptions(width=64, height=32)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """Three sessions of 120 synthetic frames each (shards of 50), written once per test session."""
    store = LocalStore(tmp_path_factory.mktemp("store"))
    for i in range(3):
        write_session(store, "car-1", f"sess-{i}", 120, seed=i)
    return store


def small_config(store: LocalStore, run_dir: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "store": store.url,
        "run_dir": str(run_dir),
        "model": SMALL,
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 2e-3,
        "progress_bar": False,
        "threads": 1,
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)
