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
- **A CONNECT is authenticated before it touches a session.** amqtt deletes (clean session) or
  takes over the existing session of the CONNECT's client id first and authenticates afterwards:
  a client refused for a wrong password still wiped the hub's queued frames, or disconnected it.
  :class:`PaddockBroker` refuses such a CONNECT before anything else happens; with a fleet it
  also refuses a client id that another identity's session holds.
- **Retained messages go only where they may.** On connect amqtt hands a client the retained
  messages of every topic anyone subscribed to; :class:`PaddockBroker` sends a client only those
  matching its own subscriptions that its identity may receive.

With a fleet directory the broker lets in only the fleet's identities, with last wills they may
publish (:class:`FleetAuth`; amqtt sends a will unchecked), and
holds each to the access matrix of :mod:`deploy.fleet.acl` (:class:`FleetTopicCheck`), the same
rules Mosquitto gets as its ACL file.

Imported only when the embedded broker starts (amqtt is the ``embedded`` extra).
"""

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import MQTTError
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from deploy.fleet.acl import may_publish, may_receive, may_subscribe
from deploy.fleet.identities import STORE_FILE, FleetStore, Identity


class _Replay(ReaderAdapter):  # type: ignore[misc]
    """A reader that keeps what was read until :meth:`rewind`, then serves it again: the CONNECT
    is read once to authenticate it, and once more by amqtt."""

    def __init__(self, inner: ReaderAdapter) -> None:
        self.inner = inner
        self.kept = bytearray()
        self.replay = b""
        self.recording = True

    async def read(self, n: int = -1) -> bytes:
        if self.replay:
            size = len(self.replay) if n < 0 else n
            kept, self.replay = self.replay[:size], self.replay[size:]
            return kept
        data: bytes = await self.inner.read(n)
        if self.recording:
            self.kept += data
        return data

    def rewind(self) -> None:
        self.replay, self.recording = bytes(self.kept), False
        self.kept.clear()

    def feed_eof(self) -> None:
        self.inner.feed_eof()


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


class _Stores:
    """Each fleet directory's store, read again when its file changed (``paddock fleet add``);
    looked at no more than once a second, since every message is checked."""

    CHECK_EVERY_S = 1.0
    _lock = threading.Lock()
    _cache: ClassVar[dict[Path, tuple[float, float, FleetStore]]] = {}

    @classmethod
    def get(cls, directory: Path) -> FleetStore:
        now = time.monotonic()
        with cls._lock:
            cached = cls._cache.get(directory)
            if cached is not None and now - cached[1] < cls.CHECK_EVERY_S:
                return cached[2]
            mtime = (directory / STORE_FILE).stat().st_mtime
            store = cached[2] if cached is not None and cached[0] == mtime else FleetStore.open(directory)
            cls._cache[directory] = (mtime, now, store)
            return store

    @classmethod
    def forget(cls, directory: Path) -> None:
        with cls._lock:
            cls._cache.pop(directory, None)


class FleetAuth(BaseAuthPlugin):  # type: ignore[misc]
    """Lets in only a fleet identity with its password, and with a last will it may publish;
    anonymous clients are refused.

    Sessions stay named (not anonymous), so persistent sessions keep their messages."""

    @dataclass
    class Config:
        fleet_dir: str
        """The directory of ``paddock fleet`` (its ``identities.json``)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        _Stores.forget(Path(self.context.config.fleet_dir))  # a new broker reads the store afresh

    async def authenticate(self, *, session: Session) -> bool:
        store = _Stores.get(Path(self.context.config.fleet_dir))
        identity = store.authenticate(session.username, session.password)
        if identity is None:
            return False
        # amqtt publishes a last will without the topic check: refuse a will the identity may not
        # publish, as Mosquitto does.
        return not session.will_flag or may_publish(identity, store.topics, session.will_topic or "")


class FleetTopicCheck(BaseTopicPlugin):  # type: ignore[misc]
    """Holds each identity to the access matrix: publish, subscribe and what it receives."""

    @dataclass
    class Config:
        fleet_dir: str

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if session is None or topic is None:
            return False
        store = _Stores.get(Path(self.context.config.fleet_dir))
        identity: Identity | None = store.identities.get(session.username or "")
        if identity is None:
            return False
        check = {Action.PUBLISH: may_publish, Action.SUBSCRIBE: may_subscribe, Action.RECEIVE: may_receive}
        return check[action](identity, store.topics, topic) if action in check else False


class PaddockBroker(Broker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table: dict[str, Any] = self._subscriptions  # type: ignore[has-type]
        self._subscriptions = SnapshotIteration(table)

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        """amqtt's, with the CONNECT authenticated before an existing session of its client id is
        deleted or taken over."""
        reader = _Replay(reader)
        handler, session = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        if not await self._may_connect(session):
            session.parent = 0
            handler.attach(session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise MQTTError(f"{remote_address}:{remote_port} refused: not authorised")
        reader.rewind()
        initialized: tuple[BrokerProtocolHandler, Session] = await super()._initialize_client_session(
            reader, writer, remote_address, remote_port
        )
        return initialized

    async def _may_connect(self, session: Session) -> bool:
        """Authenticated, and not after a client id that another identity's session holds."""
        if not self.plugins_manager._auth_plugins:
            return True
        if not await self._authenticate(session, None):
            return False
        held = self._sessions.get(session.client_id)
        owner = held[0].username if held is not None else None
        fleet = any(isinstance(p, FleetAuth) for p in self.plugins_manager._auth_plugins)
        if fleet and owner is not None and owner != session.username:
            self.logger.warning(f"{session.username} may not use {owner}'s client id {session.client_id}")
            return False
        return True

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

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        """Send the retained messages matching ``subscription``, of the session's own subscriptions,
        that the session may receive."""
        handler = self._get_handler(session)
        if handler is None:
            return
        topic_filter, qos = subscription
        own = [f for f, subs in self._subscriptions.items() if any(s is session for s, _ in subs)]
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter) or not any(self._matches(topic, f) for f in own):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            sends.append(
                asyncio.ensure_future(
                    handler.mqtt_publish(topic, retained.data, min(qos, retained.qos or qos), retain=True)
                )
            )
        if sends:
            await asyncio.wait(sends)
