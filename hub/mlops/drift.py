"""Population stability index (PSI) between a model's training inputs and its live inputs.

``PSI = Σ (live - ref) · ln(live / ref)`` over histogram bins (fractions). The usual reading: below
0.1 nothing changed, 0.1-0.25 a moderate shift, above 0.25 a major one. Empty bins are floored at
:data:`EPSILON` so a bin that is empty on one side gives a large, finite term. It is a dozen lines
of arithmetic on 32 numbers, so it is written here rather than pulled from a statistics library.
"""

import math
from collections.abc import Sequence

from schemas.input_stats import BINS, InputStats

EPSILON = 1e-4


def psi(reference: Sequence[float], live: Sequence[float]) -> float:
    """The PSI of two histograms of the same bins (each normalised to fractions here)."""
    if len(reference) != len(live) or not reference:
        raise ValueError(f"histograms of {len(reference)} and {len(live)} bins")
    ref_total, live_total = sum(reference) or 1.0, sum(live) or 1.0
    score = 0.0
    for r, x in zip(reference, live, strict=True):
        r, x = max(r / ref_total, EPSILON), max(x / live_total, EPSILON)
        score += (x - r) * math.log(x / r)
    return score


def input_drift(reference: InputStats, live: InputStats) -> float:
    """The largest PSI over brightness and the three colour channels."""
    scores = [psi(reference.brightness_hist, live.brightness_hist)]
    for c in range(3):
        part = slice(c * BINS, (c + 1) * BINS)
        scores.append(psi(reference.colour_hist[part], live.colour_hist[part]))
    return max(scores)
