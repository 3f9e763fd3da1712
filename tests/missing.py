"""What a test does when something it needs is not installed: skip on a developer's machine, fail
under CI (``CI=true``), where a skipped test would hide that the run proved nothing."""

import os
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> NoReturn:
    """Skip (or, under CI, fail) the test with ``message``, which should say how to install it."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def venv_python(venv: Path, what: str, setup: str) -> Path:
    """The python of ``what``'s own environment (its dependencies clash with ours), made by ``setup``."""
    python = venv / "bin" / "python"
    if not python.exists():
        missing(f"{what}'s environment is missing: run {setup} (expected {python})")
    return python
