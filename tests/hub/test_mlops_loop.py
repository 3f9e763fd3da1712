"""The closed MLOps loop, reduced from tests/bench/bench_mlops_loop.py (fewer expert frames, fewer
epochs, a shorter canary window): Mosquitto, a real hub, a real trainer agent and two simulated
cars. After the lights change, with no human action: drift, the cars' feedback captures, a train
job on the model's dataset plus the feedback, the trainer's model registered with why it ran and
smoke-tested, the gate, a canary promoted; then a bad candidate deployed to the canary group is
refused by the gate and, forced, rolled back."""

from pathlib import Path
from typing import Any

import pytest

from tests.bench.bench_mlops_loop import Scale, scenario

REDUCED = Scale(record_s=6.0, epochs=3, feedback_frames=100, window_s=20.0, train_timeout_s=600.0)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a real training: minutes on a busy machine
async def test_the_loop_retrains_on_the_new_frames_and_promotes_with_no_human_action(
    mosquitto: Any, tmp_path: Path
) -> None:
    tl = await scenario(mosquitto.url, tmp_path, REDUCED)
    steps = {step: figures for _, step, figures in tl.rows}
    assert "laps-with-feedback" in steps["train job queued"]
    assert "mlops: " in steps["train job queued"] and "new feedback frames" in steps["train job queued"]
    assert "lineage: mlops: " in steps["candidate registered"]
    assert steps["smoke test (trainer agent)"].startswith("passed")
    assert "canary promoted" in steps, tl.rows
    assert "completion 0.0% < current" in steps["POST /deployments: 409"]
    assert "canary rolled_back" in steps
    [group] = [f for t, s, f in tl.rows if s == "group stays on"]
    candidate = steps["candidate registered"].split()[0]
    assert group == candidate, (group, candidate)
