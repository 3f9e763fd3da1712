"""systemd unit files shipped with paddock (read with importlib.resources)."""

from importlib.resources import files

CAR_UNIT = "paddock-car.service"
HUB_UNIT = "paddock-hub.service"
DEFAULT_EXEC = "/opt/paddock/venv/bin/paddock"


def car_unit(paddock: str = DEFAULT_EXEC, config: str = "/etc/paddock/car.toml") -> str:
    """The car's unit with ExecStart pointing at ``paddock`` and ``config``."""
    text = files(__name__).joinpath(CAR_UNIT).read_text()
    return text.replace(DEFAULT_EXEC, paddock).replace("/etc/paddock/car.toml", config)


def hub_unit(paddock: str = DEFAULT_EXEC, config: str = "/etc/paddock/hub.toml") -> str:
    """The hub's unit with ExecStart pointing at ``paddock`` and ``config``."""
    text = files(__name__).joinpath(HUB_UNIT).read_text()
    return text.replace(DEFAULT_EXEC, paddock).replace("/etc/paddock/hub.toml", config)
