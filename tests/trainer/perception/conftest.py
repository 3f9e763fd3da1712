"""A small captured dataset, shared by the perception tests (captured once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.sim.capture import CaptureConfig, capture


@pytest.fixture(scope="session")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("perception-data")
    capture(root, "oval", CaptureConfig(sessions=4, frames=40, shots=0.5), seed=3)
    return root
