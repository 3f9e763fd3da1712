import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from edge.config import CarConfig, ConfigError, example_toml, load_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "car.md"


def test_example_file_parses_back_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "car.toml"
    path.write_text(example_toml("car-7"))
    cfg = load_config(path)
    assert cfg == CarConfig(car={"id": "car-7"})  # type: ignore[arg-type]


def test_every_field_is_documented_here_and_in_the_docs() -> None:
    docs = DOCS.read_text()
    missing = []
    for name, info in CarConfig.model_fields.items():
        section = info.annotation
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            assert info.description, f"{name} has no description"
            if f"`{name}`" not in docs:
                missing.append(name)
        else:
            for field, finfo in section.model_fields.items():
                assert finfo.description, f"{name}.{field} has no description"
                if f"`{field}`" not in docs:
                    missing.append(f"{name}.{field}")
    assert not missing, f"not in docs/car.md: {missing}"


def test_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "car.toml"
    path.write_text('[car]\nid = "Car_1"\n[loop]\nhz = 500\nspeed = 3\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text
    assert "car.id" in text and "loop.hz" in text
    assert "loop.speed: unknown setting" in text
    path.write_text("[broker]\nurl = 'http://x'\n[car]\nid='a'\n")
    with pytest.raises(ConfigError, match=r"broker\.url.*mqtt://"):
        load_config(path)
    path.write_text("[car]\n")
    with pytest.raises(ConfigError, match=r"car\.id: required"):
        load_config(path)
    path.write_text("[car\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    path.write_text("[car]\nid='a'\n[camera]\nkind='sim'\n")
    with pytest.raises(ConfigError, match="both be 'sim'"):
        load_config(path)
    path.write_text("[car]\nid='a'\n[models]\npublic_key = ''\n")
    cfg_text = "[car]\nid='a'\n[models]\nallow_unsigned = false\n"
    path.write_text(cfg_text)
    assert load_config(path).models.public_key == Path("/etc/paddock/hub.pub")


def test_relative_paths_are_relative_to_the_file_and_overrides_apply(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "car.toml"
    path.write_text("state_dir = 'state'\n[car]\nid = 'c1'\n[actuators]\ncalibration = 'cal.toml'\n")
    cfg = load_config(path, {"loop.hz": 50, "broker.url": "mqtt://hub:1884"})
    assert cfg.state_dir == tmp_path / "etc" / "state"
    assert cfg.actuators.calibration == tmp_path / "etc" / "cal.toml"
    assert cfg.spool_dir == tmp_path / "etc" / "state" / "spool"
    assert cfg.loop.hz == 50 and cfg.broker.url == "mqtt://hub:1884"
    with pytest.raises(ConfigError, match=r"unknown setting 'loop\.nope'"):
        load_config(path, {"loop.nope": 1})


def test_example_is_valid_toml_with_comments_for_every_field() -> None:
    text = example_toml()
    data = tomllib.loads(text)
    assert data["car"]["id"] == "car-1"
    assert text.count("\n# ") >= sum(
        len(s.annotation.model_fields)
        for s in CarConfig.model_fields.values()
        if isinstance(s.annotation, type) and issubclass(s.annotation, BaseModel)
    )
