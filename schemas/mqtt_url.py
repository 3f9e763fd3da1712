"""Broker addresses as URLs: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` for TLS."""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from schemas.errors import ContractError


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "BrokerUrl":
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp"):
            raise ContractError(f"broker url {url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ContractError(f"broker url {url!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ContractError(f"broker url {url!r} has an invalid port") from None
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        auth = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"
