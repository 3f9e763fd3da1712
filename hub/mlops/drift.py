"""Population stability index (PSI) between a model's training inputs and its live inputs.

``PSI = Σ (live - ref) · ln(live / ref)`` over histogram bins (fractions). The usual reading: below
0.1 nothing changed, 0.1-0.25 a moderate shift, above 0.25 a major one. Empty bins are floored at
:data:`EPSILON` so a bin that is empty on one side gives a large, finite term. It is a dozen lines
of arithmetic on 32 numbers, so it is written here rather than pulled from a statistics library.
It lives in ``schemas.input_stats``: the car measures it too (its feedback capture).
"""

from schemas.input_stats import EPSILON, input_drift, psi

__all__ = ["EPSILON", "input_drift", "psi"]
