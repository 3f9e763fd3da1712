"""An RL policy on a car: exported to ONNX with its action space, signed, published over MQTT to a
simulated car daemon, hot-swapped in, and driving with the actions of its discrete space (the
argmax's steering and throttle, as the card declares). The full scenario — a model trained to
clean laps driving a lap after the swap — is tests/bench/bench_rl_car.py."""

from pathlib import Path
from typing import Any

import pytest

from schemas.model_card import ModelCard
from schemas.signing import generate_private_key
from tests.edge.harness import Observer, RecordingDaemon, T, car_config, clear_retained, until
from tests.edge.modelkit import signed_envelope
from trainer.rl.export import export
from trainer.rl.files import new_model
from trainer.rl.train import TrainConfig, train

KEY = generate_private_key()
TINY = {"num_episodes_between_training": 2, "num_epochs": 1, "batch_size": 32}


@pytest.fixture(scope="module")
def rl_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, ModelCard]:
    model = tmp_path_factory.mktemp("rl-car") / "model"
    new_model(model)
    config = TrainConfig(model_dir=model, track="oval", workers=1, steps_per_episode=48, overrides=TINY,
                         live=False, max_iterations=1, max_steps=200)  # fmt: skip
    train(config)
    path, card = export(model)
    return path.read_bytes(), card


async def test_a_car_hot_swaps_to_an_rl_policy_and_drives_its_actions(
    rl_model: tuple[bytes, ModelCard], mosquitto: Any, tmp_path: Path
) -> None:
    data, card = rl_model
    assert card.action_space is not None
    car = "sim-rl"
    cfg = car_config(
        tmp_path, mosquitto.url, KEY, car=car, camera={"kind": "sim"}, actuators={"kind": "sim"},
        sim={"track": "oval", "clock": "lockstep", "speedup": 4, "recover_after_s": 0.5},
        loop={"hz": 15, "start_mode": "autopilot"}, publish={"telemetry_hz": 5, "preview_hz": 0},
    )  # fmt: skip
    async with Observer(mosquitto.url, [f"paddock/v1/cars/{car}/#"]) as obs, RecordingDaemon(cfg) as daemon:
        await until(lambda: daemon.link.connected.is_set())
        envelope = signed_envelope(data, KEY, car=car, name="deepracer", version="1", model_card=card)
        await obs.publish(T.car_model(car), envelope, retain=True)
        await until(lambda: obs.events(car, "model_swapped"), 60, "model swap")
        await until(lambda: len([t for t in daemon.ticks if t.pilot == "deepracer:1"]) > 60, 60, "ticks")
    driven = [t for t in daemon.ticks if t.pilot == "deepracer:1" and t.decision is not None]
    actions = {(round(a.steering, 4), round(a.throttle, 4)) for a in card.action_space.actions}
    decided = {(round(t.decision.steering, 4), round(t.decision.throttle or 0, 4)) for t in driven}
    assert decided and decided <= actions  # only the argmax's actions, mapped as the card says
    assert max(t.body.speed for t in driven if t.body is not None) > 0.3  # it drives
    await clear_retained(mosquitto.url, [T.car_model(car), T.model_state(car), T.car_status(car)])
