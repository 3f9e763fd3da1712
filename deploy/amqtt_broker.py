"""amqtt's broker with what the embedded broker needs from it, and amqtt 0.12 does not do.

- **Persistent sessions are kept.** amqtt's ``AnonymousAuthPlugin`` marks every client it lets in as
  anonymous, and amqtt queues nothing for an anonymous session while its client is away: a hub or
  a trainer agent that restarted lost what was sent meanwhile. :class:`OpenDoor` lets every client in
  unmarked.
- **What was queued arrives as a normal message.** amqtt sends a returning client its queued
  messages with the retain flag set, which MQTT reserves for retained messages; the hub rightly
  ignores a retained frame. :class:`PaddockBroker` sends them without it.
- **A client that connects while another leaves is served.** amqtt awaits inside loops over its
  subscription table; a client leaving meanwhile changed the table's size, the loop raised
  ``RuntimeError`` and the new session was never served (no SUBACK, no retained model).
  :class:`SnapshotIteration` makes those loops run over a copy.

Imported only when the embedded broker starts (amqtt is the ``embedded`` extra).
"""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session


class SnapshotIteration(dict[Any, Any]):
    """A dict whose loops run over a copy of its keys and items."""

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return list(super().items())


class OpenDoor(BaseAuthPlugin):  # type: ignore[misc]
    """Lets every client in, as a named (not anonymous) session."""

    @dataclass
    class Config:
        """No options: the embedded broker listens on a trusted host (loopback or the lab's LAN)."""

    async def authenticate(self, *, session: Session) -> bool:
        return True


class PaddockBroker(Broker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table: dict[str, Any] = self._subscriptions  # type: ignore[has-type]
        self._subscriptions = SnapshotIteration(table)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        """Send a returning persistent session what was queued for it, as ordinary messages."""
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        while not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            sends.append(
                asyncio.ensure_future(
                    handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
                )
            )
        if sends:
            await asyncio.wait(sends)
