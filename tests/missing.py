"""What a test does when something it needs is not installed: skip on a developer's machine, fail
under CI (``CI=true``), where a skipped test would hide that the run proved nothing."""

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> NoReturn:
    """Skip (or, under CI, fail) the test with ``message``, which should say how to install it."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
