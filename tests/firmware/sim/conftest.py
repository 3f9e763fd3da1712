"""Shared helpers for the simulator tests: a small track whose geometry is known by hand."""

import numpy as np
import pytest

from firmware.sim.track import Track

# A 4 m × 2 m rectangle driven counter-clockwise from the origin, 1 m wide (borders 0.5 m either
# side of the centre line), with waypoints at the corners and the middle of each side.
RECT_CENTER = [(0, 0), (2, 0), (4, 0), (4, 1), (4, 2), (2, 2), (0, 2), (0, 1), (0, 0)]
RECT_INNER = [
    (0.5, 0.5),
    (2, 0.5),
    (3.5, 0.5),
    (3.5, 1),
    (3.5, 1.5),
    (2, 1.5),
    (0.5, 1.5),
    (0.5, 1),
    (0.5, 0.5),
]
RECT_OUTER = [(-0.5, -0.5), (2, -0.5), (4.5, -0.5), (4.5, 1), (4.5, 2.5), (2, 2.5), (-0.5, 2.5), (-0.5, 1)]
RECT_OUTER.append(RECT_OUTER[0])


def rectangle_rows() -> np.ndarray:
    return np.hstack([np.array(RECT_CENTER, float), np.array(RECT_INNER, float), np.array(RECT_OUTER, float)])


@pytest.fixture
def rectangle() -> Track:
    return Track("rectangle", rectangle_rows())
