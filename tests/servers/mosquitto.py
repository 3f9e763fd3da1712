"""A private Mosquitto broker per test (Debian ``mosquitto``)."""

import getpass
import os
from pathlib import Path

from tests.servers import ServerProcess, require_binary


class Mosquitto(ServerProcess):
    """Mosquitto with persistence and no queue limit.

    ``max_queued_messages 0`` lifts the default limit of 1000 queued QoS 1 messages per client,
    beyond which Mosquitto silently drops messages for slow or offline subscribers.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_config: str = "",
        password_file: Path | None = None,
        acl_file: Path | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.extra_config = extra_config  # appended: options for the listener (TLS) or the broker
        # With a password file the broker refuses anonymous clients, as the shipped config does.
        self.password_file = password_file
        self.acl_file = acl_file
        self.binary = require_binary("mosquitto", "mosquitto")
        self.config_path = workdir / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def command(self) -> list[str]:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        # Started as root, Mosquitto drops to the `mosquitto` user and then cannot save its
        # persistence file in our temp dir; stay the current user instead.
        user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        auth = f"password_file {self.password_file}\n" if self.password_file else ""
        auth += f"acl_file {self.acl_file}\n" if self.acl_file else ""
        anonymous = "false" if self.password_file else "true"
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {anonymous}\n"
            f"{auth}"
            "persistence true\n"
            f"persistence_location {data}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"{user}"
            "log_dest stdout\n"
            "log_type error\n"
            "log_type warning\n"
            f"{self.extra_config}"
        )
        return [self.binary, "-c", str(self.config_path)]
