"""Head-to-head races and the points where paddock's episodes match deepracer-simapp's code:
the numbers come from its ``markov/agent_ctrl/constants.py`` (RELATIVE_POSITION_OF_FRONT_OF_CAR
0.14 m, DEFAULT_RESET_BEHIND_DIST 1 m, CLOSEST_OBJ_GAP 1 m, MAX_ANGLE 30°, MAX_SPEED 4 m/s), its
racecar URDF (rear wheel joints 0.081663 m behind the car's origin) and its camera's 15 Hz."""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware.sim.gym_env import DeepRacerEnv
from firmware.sim.obstacles import place_obstacles
from trainer.rl.env import EnvSettings, TrainingEnv
from trainer.rl.evaluate import EvalConfig, evaluate
from trainer.rl.files import default_metadata, new_model

DISCRETE = default_metadata("discrete")
STRAIGHT_SLOW = 4  # (0°, 0.5 m/s)
DT = 1.0 / 15.0


def _h2h(**kw: object) -> TrainingEnv:
    kw.setdefault("metadata", DISCRETE)
    return TrainingEnv(EnvSettings(track="oval", race_type="head_to_head", **kw))  # type: ignore[arg-type]


def test_head_to_head_bots_drive_and_fill_the_object_params() -> None:
    env = _h2h(bot_cars=2)
    _, info = env.reset(seed=0, options={"start_progress": 50.0})
    first = info["params"]["objects_location"]
    assert len(first) == 2 and info["params"]["objects_speed"] == [0.2, 0.2]
    for _ in range(15):
        _, _, _, _, info = env.step(STRAIGHT_SLOW)
    params = info["params"]
    track = env.inner.world.track
    moved = [
        (track.project(*b).s - track.project(*a).s) % track.length
        for a, b in zip(first, params["objects_location"], strict=True)
    ]
    assert moved == pytest.approx([0.2, 0.2], abs=0.01)  # one second at DeepRacer's 0.2 m/s
    headings = [track.heading_at(track.project(*p).s) for p in params["objects_location"]]
    assert params["objects_heading"] == pytest.approx(headings, abs=0.15)  # radians, as DeepRacer
    prev_i, next_i = params["closest_objects"]
    assert {prev_i, next_i} == {0, 1}


def test_a_start_near_a_bot_is_in_the_other_lane_and_hitting_one_is_crashed() -> None:
    env = _h2h(bot_cars=1)
    track = env.inner.world.track
    start_pct = 100 * 2.0 / track.length  # the one bot starts 2 m along, in the inner lane
    env.reset(seed=0, options={"start_progress": start_pct})
    lateral = env.inner.world.status.lateral * (1 if track.is_ccw else -1)
    assert lateral < -0.1  # the outer lane, beside the bot
    behind = start_pct - 100 * 1.5 / track.length
    env.reset(seed=0, options={"start_progress": behind})
    assert abs(env.inner.world.status.lateral) < 0.05  # 1.5 m behind it: the centre line
    assert env.bots is not None
    lane = env.bots.lane_lateral(0, behind / 100 * track.length)
    env.reset(seed=0, options={"start_progress": behind, "start_lateral": lane})  # its lane
    for _ in range(60):  # straight into the bot's back (it is slower)
        _, _, terminated, _, info = env.step(5)  # (0°, 1 m/s)
        if terminated:
            break
    assert info["episode_status"] == "crashed" and info["params"]["is_crashed"]
    assert info["episode_summary"]["status"] == "crashed"


def test_head_to_head_camera_and_lidar_see_the_bot() -> None:
    meta = DISCRETE | {"sensor": ["FRONT_FACING_CAMERA", "LIDAR"]}
    env = _h2h(bot_cars=1, metadata=meta)
    track = env.inner.world.track
    near, _ = env.reset(seed=0, options={"start_progress": 100 * 1.2 / track.length})
    far, _ = env.reset(seed=0, options={"start_progress": 50.0})
    ahead = len(near["lidar"]) // 2  # the beam straight ahead
    assert near["lidar"][ahead] < far["lidar"][ahead] - 0.5
    assert not np.array_equal(near["camera"], far["camera"])


def test_training_and_evaluation_race_head_to_head(tmp_path: Path) -> None:
    from trainer.rl.train import TrainConfig, train

    new_model(tmp_path)
    config = TrainConfig(
        model_dir=tmp_path,
        track="oval",
        workers=1,
        steps_per_episode=32,
        overrides={"num_episodes_between_training": 1, "num_epochs": 1, "batch_size": 32},
        live=False,
        max_iterations=1,
        max_steps=100,
        race_type="head_to_head",
        bot_cars=2,
    )
    result = train(config)
    assert result.iterations == 1
    assert json.loads((tmp_path / "training.json").read_text())["race_type"] == "head_to_head"
    report = evaluate(
        EvalConfig(
            model_dir=tmp_path, track="oval", trials=1, max_time_s=3.0, race_type="head_to_head", bot_cars=2
        )
    )
    assert len(report.trials) == 1
    rows = (tmp_path / "evaluation-oval" / "simtrace.csv").read_text().splitlines()
    header = rows[0].split(",")
    tstamps = [float(r.split(",")[header.index("tstamp")]) for r in rows[1:]]
    steps = np.diff(tstamps[1:])
    assert steps == pytest.approx(np.full(len(steps), DT), abs=1.1e-3)  # evaluated at the camera's 15 Hz


# --- fidelity -------------------------------------------------------------------------------------


def test_reference_point_and_start_line_as_deepracer() -> None:
    env = DeepRacerEnv("oval", model_metadata=DISCRETE)
    _, info = env.reset(seed=0)
    world = env.world
    rear = world.state
    origin = (rear.x + 0.081663 * math.cos(rear.yaw), rear.y + 0.081663 * math.sin(rear.yaw))
    params = info["params"]
    assert math.hypot(params["x"] - origin[0], params["y"] - origin[1]) == pytest.approx(0.14, abs=1e-6)
    track = world.track
    assert abs(math.remainder(track.project(*origin).s, track.length)) < 1e-3  # origin on the line
    assert params["progress"] == pytest.approx(100 * 0.14 / track.length, abs=0.01)


def test_sim_time_runs_on_across_episodes() -> None:
    env = TrainingEnv(EnvSettings(track="oval", metadata=DISCRETE))
    env.reset(seed=0)
    for _ in range(10):
        env.step(STRAIGHT_SLOW)
    _, info = env.reset()
    assert info["params"]["sim_time"] == pytest.approx(10 * DT)
    _, _, _, _, info = env.step(STRAIGHT_SLOW)
    assert info["params"]["sim_time"] == pytest.approx(11 * DT) and info["params"]["steps"] == 1


def test_an_out_of_range_discrete_action_shows_its_own_values() -> None:
    meta = {"action_space_type": "discrete", "action_space": [{"steering_angle": 45.0, "speed": 5.0}]}
    env = DeepRacerEnv("oval", model_metadata=meta)
    env.reset(seed=0)
    for _ in range(15):
        _, _, _, _, info = env.step(0)
    assert info["params"]["steering_angle"] == 45.0 and info["params"]["speed"] == 5.0
    car = env.world.state
    assert math.degrees(abs(car.steering_angle)) <= 30.0 + 1e-6 and car.speed <= 4.0 + 1e-6


def test_after_hitting_a_box_evaluation_resets_one_metre_behind_it_in_the_other_lane() -> None:
    env = TrainingEnv(EnvSettings(track="oval", metadata=DISCRETE, race_type="object_avoidance", obstacles=1))
    env.reset(seed=0, options={"start_progress": 0.0})
    world = env.inner.world
    track = world.track
    box_pct = 100 * 0.8 / track.length  # 0.8 m ahead, on the centre line
    world.set_obstacles(place_obstacles(track, [box_pct], ["center"]))
    box_s = box_pct / 100 * track.length
    for _ in range(300):
        *_, info = env.step(5)  # (0°, 1 m/s)
        if info["episode_status"] == "crashed":
            break
    assert info["episode_status"] == "crashed"
    world.set_obstacles(place_obstacles(track, [box_pct], ["inner"]))  # the same place, the inner lane
    env.recover("crashed")
    rear = world.state
    origin = (rear.x + 0.081663 * math.cos(rear.yaw), rear.y + 0.081663 * math.sin(rear.yaw))
    behind = (box_s - track.project(*origin).s + track.length / 2) % track.length - track.length / 2
    assert behind == pytest.approx(1.0, abs=0.03)
    assert world.status.lateral * (1 if track.is_ccw else -1) < -0.1  # the outer lane
    assert not world.status.crashed and world.status.speed == 0.0


# --- to the car ----------------------------------------------------------------------------------


def test_export_refuses_lidar_naming_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deploy.cli import app

    new_model(tmp_path)
    meta = json.loads((tmp_path / "model_metadata.json").read_text())
    (tmp_path / "model_metadata.json").write_text(
        json.dumps(meta | {"sensor": ["FRONT_FACING_CAMERA", "LIDAR"]})
    )
    out = CliRunner().invoke(app, ["rl", "export", str(tmp_path)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "sensor: LIDAR cannot drive a car" in out.output


def test_a_stacked_model_exports_and_the_cars_pilot_feeds_it_the_last_frames(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    from edge.pilots import ModelPilot
    from edge.runtimes import runtime_for
    from tests.edge.modelkit import manifest
    from trainer.rl.env import to_observation_frame
    from trainer.rl.export import export
    from trainer.rl.train import TrainConfig, train

    new_model(tmp_path)  # stack_size 1 in the file, 3 for this run (as --set stack_size=3)
    tiny = {"num_episodes_between_training": 1, "num_epochs": 1, "batch_size": 32, "stack_size": 3}
    train(TrainConfig(model_dir=tmp_path, track="oval", workers=1, steps_per_episode=32, overrides=tiny,
                      live=False, max_iterations=1, max_steps=60))  # fmt: skip
    report = evaluate(EvalConfig(model_dir=tmp_path, track="oval", trials=1, max_time_s=1.0))
    assert len(report.trials) == 1  # the evaluation feeds the frames the policy was trained on
    path, card = export(tmp_path)
    assert card.input.frames == 3 and card.input.shape == (3, 60, 80) and card.action_space is not None
    data = path.read_bytes()
    pilot = ModelPilot(manifest(data, model_card=card), runtime_for("onnx").load(data, card))
    sb3 = PPO.load(tmp_path / "model.zip", device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(5)]
    frames = [to_observation_frame(im, 80, 60) for im in images]
    for k, image in enumerate(images):
        values, _ = pilot.infer(image)
        last = [frames[max(j, 0)] for j in range(k - 2, k + 1)]  # the first frame fills the start
        chosen, _ = sb3.predict(np.stack(last), deterministic=True)
        expected = card.action_space.actions[int(chosen)]
        assert (values["steering"], values["throttle"]) == pytest.approx(
            (expected.steering, expected.throttle)
        )
    # On the car the loop may tick twice on one camera frame: the second tick must not stack it again.
    from firmware.camera import Frame

    class Inputs:
        """The loaded model, noting each input it is given."""

        def __init__(self, model: Any) -> None:
            self.model, self.seen = model, []

        def run(self, sample: Any) -> Any:
            self.seen.append(np.array(sample))
            return self.model.run(sample)

        def close(self) -> None:
            self.model.close()

    on_car = Inputs(runtime_for("onnx").load(data, card))
    by_frame = Inputs(runtime_for("onnx").load(data, card))
    car_pilot = ModelPilot(manifest(data, model_card=card), on_car)
    frame_pilot = ModelPilot(manifest(data, model_card=card), by_frame)
    decisions = [car_pilot.act(Frame(images[index], 0, index)) for index in (0, 1, 1, 2)]
    for index in (0, 1, 2):
        frame_pilot.infer(images[index])
    # the repeated tick runs no network: it takes the decision made on that frame, with no timing
    assert len(on_car.seen) == 3
    assert all(np.array_equal(a, b) for a, b in zip(on_car.seen, by_frame.seen, strict=True))
    again, first = decisions[2], decisions[1]
    assert (again.steering, again.throttle) == (first.steering, first.throttle) and again.inference_ms is None
