"""The plugin registry: paddock's own entry points, a third-party package's, and clear errors."""

import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from edge import plugins
from edge.body_factory import build_body
from edge.config import CarConfig, ConfigError
from edge.runtimes import Runtime, available_runtimes
from firmware.hardware.test_pattern import TestPatternCamera

ROOT = Path(__file__).resolve().parents[2]


def test_the_built_in_table_is_what_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared == plugins.BUILT_IN


def test_every_built_in_plugin_loads() -> None:
    for group, table in plugins.BUILT_IN.items():
        for name in table:
            assert plugins.load(group, name) is not None, (group, name)
    assert set(available_runtimes()) >= {"onnx", "tflite"}


def test_an_unknown_name_says_what_is_installed() -> None:
    with pytest.raises(plugins.PluginError) as err:
        plugins.load(plugins.CAMERAS, "thermal")
    assert str(err.value) == "no camera named 'thermal'; installed: picamera, test_pattern, usb"


def test_a_plugin_that_does_not_import_says_why() -> None:
    broken = plugins.Plugin(plugins.PILOTS, "ghost", "no_such_module.pilots:factory", "ghost-dist")
    with pytest.raises(plugins.PluginError, match=r"pilot 'ghost' \(no_such_module.pilots:factory\) failed"):
        broken.load()


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[Path]:
    """An installed package (a module and its dist-info) declaring a camera, and one that tries to
    take the name of a built-in pilot."""
    (tmp_path / "acme_cam.py").write_text(
        "from firmware.hardware.test_pattern import TestPatternCamera\n"
        "from firmware.camera import CameraConfig\n"
        "def build(config):\n"
        "    c = config.camera\n"
        "    return TestPatternCamera(CameraConfig(width=c.width, height=c.height, fps=c.fps))\n"
        "def impostor(body, config):\n"
        "    raise AssertionError('never loaded')\n"
    )
    info = tmp_path / "acme_cam-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-cam\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[paddock.cameras]\nacme = acme_cam:build\n\n[paddock.pilots]\nexpert = acme_cam:impostor\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_cam", None)


def _config(**camera: object) -> CarConfig:
    return CarConfig.from_dict(
        {
            "car": {"id": "car-1"},
            "camera": camera,
            "actuators": {"kind": "none"},
            "sensors": {"cpu_temp": False},
        }
    )


@pytest.mark.usefixtures("third_party")
def test_a_third_party_camera_is_found_configured_and_built() -> None:
    found = plugins.plugins(plugins.CAMERAS)
    assert found["acme"].origin == "acme-cam"
    body = build_body(_config(kind="acme", width=64, height=48))
    assert isinstance(body.camera, TestPatternCamera) and body.camera.config.width == 64
    # A built-in name stays paddock's own.
    assert plugins.plugins(plugins.PILOTS)["expert"].value == "edge.sim:expert_pilot"


def test_an_unknown_camera_kind_is_a_config_error_naming_the_installed_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"no camera named 'thermal'; installed: sim, picamera, test_pattern, usb"
    ):
        _config(kind="thermal")


def test_runtimes_are_runtime_classes() -> None:
    assert all(issubclass(cls, Runtime) for cls in available_runtimes().values())


@pytest.mark.usefixtures("third_party")
def test_paddock_plugins_lists_every_group() -> None:
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_group: dict[str, set[str]] = {}
    for row in rows:
        by_group.setdefault(row["group"], set()).add(row["name"])
        assert row["loads"], row
    assert by_group == {
        "paddock.cameras": {"picamera", "usb", "test_pattern", "acme"},
        "paddock.actuators": {"pwm", "pca9685", "none"},
        "paddock.pilots": {"expert", "race-line"},
        "paddock.runtimes": {"onnx", "tflite"},
    }
    table = CliRunner().invoke(app, ["plugins"])
    assert table.exit_code == 0 and "acme" in table.output
