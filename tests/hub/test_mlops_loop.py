"""The closed MLOps loop, reduced from tests/bench/bench_mlops_loop.py (fewer expert frames, fewer
epochs, a shorter canary window): Mosquitto, a real hub, a real trainer agent and two simulated
cars. After the lights change, with no human action: drift, the cars' feedback captures, a train
job on the model's dataset plus the feedback, the trainer's model registered with why it ran and
smoke-tested, the gate, a canary that the hub decides on the candidate's own driving; then a bad
candidate deployed to the canary group is refused by the gate and, forced, rolled back."""

from pathlib import Path
from typing import Any

import pytest

from tests.bench.bench_mlops_loop import Scale, scenario

REDUCED = Scale(record_s=6.0, epochs=4, feedback_frames=100, window_s=20.0, train_timeout_s=600.0)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a real training: minutes on a busy machine
async def test_the_loop_retrains_on_the_new_frames_and_decides_with_no_human_action(
    mosquitto: Any, tmp_path: Path
) -> None:
    tl = await scenario(mosquitto.url, tmp_path, REDUCED)
    steps = [step for _, step, _ in tl.rows]
    figures = dict((step, f) for _, step, f in tl.rows)
    assert "laps-with-feedback" in figures["train job queued"]
    assert "mlops: " in figures["train job queued"] and "new feedback frames" in figures["train job queued"]
    assert "lineage: mlops: " in figures["candidate registered"]
    assert figures["smoke test (trainer agent)"].startswith("passed")
    # A model trained this little on this little may still leave the dimmed track: the canary
    # then rolls it back, as it must. Either way the hub decided on its own, and the group follows.
    assert "gate passed, canary started" in steps, tl.rows
    retrained = steps[steps.index("gate passed, canary started") + 1]
    assert retrained in ("canary promoted", "canary rolled_back"), tl.rows
    assert "completion 0.0% < current" in figures["POST /deployments: 409"]
    assert steps[steps.index("forced: canary started") + 1] == "canary rolled_back"
    candidate = figures["candidate registered"].split()[0]
    group = figures["group stays on"]
    assert (group == candidate) == (retrained == "canary promoted"), (group, candidate, retrained)
    # Whichever way it went, the hub judged the candidate's own driving: the canary car took the
    # model (no refusal, which would also roll it back) and drove it beside the group's car.
    first, forced = tl.decisions
    assert first.model == candidate and first.decided_by == "hub" and first.refused == {}, first
    [drove] = [f for f in first.canary_figures if f.model == candidate]
    assert drove.minutes > 0 and first.baseline_figures, first
    assert (first.reasons == []) == (first.state == "promoted"), first.reasons
    assert forced.forced and forced.decided_by == "hub" and forced.refused == {}, forced
    assert any("off-track" in reason for reason in forced.reasons), forced.reasons
