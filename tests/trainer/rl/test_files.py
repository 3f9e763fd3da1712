"""DeepRacer's three files: `paddock rl new` writes them with DeepRacer's keys and defaults, and
every file error names the file and the key, in one line, exit 2."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from trainer.rl.files import (
    HYPERPARAMETERS_FILE,
    METADATA_FILE,
    REWARD_FILE,
    ModelFileError,
    load_model_dir,
    new_model,
    parse_overrides,
)

runner = CliRunner()
DEEPRACER_KEYS = {
    "batch_size",
    "beta_entropy",
    "discount_factor",
    "e_greedy_value",
    "epsilon_steps",
    "exploration_type",
    "loss_type",
    "lr",
    "num_episodes_between_training",
    "num_epochs",
    "stack_size",
    "term_cond_avg_score",
    "term_cond_max_episodes",
}


def test_new_writes_deepracer_defaults(tmp_path: Path) -> None:
    result = runner.invoke(app, ["rl", "new", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    hyper = json.loads((tmp_path / "m" / HYPERPARAMETERS_FILE).read_text())
    assert set(hyper) >= DEEPRACER_KEYS
    assert hyper["batch_size"] == 64 and hyper["lr"] == 0.0003 and hyper["num_epochs"] == 10
    assert hyper["num_episodes_between_training"] == 20 and hyper["discount_factor"] == 0.999
    meta = json.loads((tmp_path / "m" / METADATA_FILE).read_text())
    assert meta["action_space_type"] == "discrete" and meta["training_algorithm"] == "clipped_ppo"
    assert len(meta["action_space"]) == 10
    files = load_model_dir(tmp_path / "m")
    assert files.reward_function()({"track_width": 1.0, "distance_from_center": 0.05}) == 1.0
    again = runner.invoke(app, ["rl", "new", str(tmp_path / "m")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_new_continuous_is_sac(tmp_path: Path) -> None:
    new_model(tmp_path, "continuous")
    files = load_model_dir(tmp_path)
    assert files.metadata.training_algorithm == "sac" and not files.metadata.discrete_actions


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        (HYPERPARAMETERS_FILE, {"lr": -1}, "hyperparameters.json: lr: Input should be greater than 0"),
        (
            HYPERPARAMETERS_FILE,
            {"batch_size": "big"},
            "hyperparameters.json: batch_size: Input should be a valid integer",
        ),
        (HYPERPARAMETERS_FILE, {"learning_rate": 0.1}, "hyperparameters.json: learning_rate: unknown key"),
        (HYPERPARAMETERS_FILE, {"exploration_type": "random"}, "hyperparameters.json: exploration_type:"),
        (
            METADATA_FILE,
            {"neural_network": "RESNET"},
            "model_metadata.json: neural_network: 'RESNET' is not one of",
        ),
        (
            METADATA_FILE,
            {"training_algorithm": "sac"},
            "model_metadata.json: training_algorithm: sac needs a continuous",
        ),
        (METADATA_FILE, {"sensor": ["RADAR"]}, "model_metadata.json: sensor: 'RADAR'"),
        (
            METADATA_FILE,
            {"action_space": [{"steering_angle": 0, "speed": 9}]},
            "model_metadata.json: action_space[0].speed: Input should be less than or equal to 4",
        ),
        (
            METADATA_FILE,
            {"action_space": [{"steering_angle": 0}]},
            "model_metadata.json: action_space[0].speed: Field required",
        ),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, file: str, change: dict, expected: str) -> None:
    new_model(tmp_path)
    _edit(tmp_path / file, **change)
    with pytest.raises(ModelFileError) as err:
        load_model_dir(tmp_path)
    assert str(err.value).startswith(str(tmp_path / file)) and expected in str(err.value)
    result = runner.invoke(app, ["rl", "check", str(tmp_path)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and expected in result.output.replace("\n", "")


def test_unreadable_files_and_reward_errors(tmp_path: Path) -> None:
    new_model(tmp_path)
    (tmp_path / HYPERPARAMETERS_FILE).write_text("{ not json")
    with pytest.raises(ModelFileError, match=r"hyperparameters.json: line 1: not valid JSON"):
        load_model_dir(tmp_path)
    new_model(tmp_path, force=True)
    (tmp_path / REWARD_FILE).write_text("def reward_function(params):\n    return (\n")
    with pytest.raises(ModelFileError, match=r"reward_function.py:\d+: syntax error"):
        load_model_dir(tmp_path)
    (tmp_path / REWARD_FILE).write_text("def other(params):\n    return 1.0\n")
    with pytest.raises(ModelFileError, match=r"reward_function.py: defines no reward_function"):
        load_model_dir(tmp_path)
    (tmp_path / METADATA_FILE).unlink()
    with pytest.raises(ModelFileError, match=r"model_metadata.json: no such file"):
        load_model_dir(tmp_path)


def test_reward_functions_may_import_what_deepracer_allows(tmp_path: Path) -> None:
    new_model(tmp_path)
    (tmp_path / REWARD_FILE).write_text(
        "import math, random\nimport numpy as np\nimport scipy.spatial\nfrom shapely.geometry import Point\n"
        "def reward_function(params):\n"
        "    return float(Point(0, 0).distance(Point(3, 4)) + np.sqrt(4) + math.floor(0.5))\n"
    )
    assert load_model_dir(tmp_path).reward_function()({}) == 7.0


def test_overrides(tmp_path: Path) -> None:
    new_model(tmp_path)
    files = load_model_dir(tmp_path, parse_overrides(["lr=0.001", "exploration_type=categorical"]))
    assert files.hyperparameters.lr == 0.001
    with pytest.raises(ModelFileError, match=r"hyperparameters\.json: stack_size"):
        load_model_dir(tmp_path, parse_overrides(["stack_size=0"]))
    with pytest.raises(ModelFileError, match="expected key=value"):
        parse_overrides(["lr"])
