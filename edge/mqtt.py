"""The car's MQTT connection (aiomqtt, MQTT 3.1.1): presence, subscriptions, reconnects.

Each connection gets a last will (the death certificate, retained) carrying a ``bdseq`` that grows
with every connection and survives reboots, so the hub can ignore a stale death that arrives
after a newer birth. On connect the car subscribes (commands, fleet e-stop, its own and its
group's model topics — retained messages arrive right away, so an active e-stop is obeyed on
connect), then publishes its birth. Publishing tasks run per connection; when any of them fails
the connection is torn down and rebuilt with exponential backoff and jitter. A clean shutdown
publishes the death explicitly before disconnecting.
"""

import asyncio
import logging
import random
import ssl
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt

from edge.config import CarConfig
from infra.files import write_atomic
from infra.tls import client_context
from schemas.messages import CarStatus
from schemas.mqtt_url import BrokerUrl
from schemas.topics import Topics

log = logging.getLogger(__name__)

SessionTask = Callable[[aiomqtt.Client], Coroutine[Any, Any, None]]


class BdseqStore:
    """The birth/death sequence: one more for every connection, kept on disk across reboots."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.value = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            self.value = -1

    def next(self) -> int:
        self.value += 1
        try:
            write_atomic(self.path, f"{self.value}\n".encode())
        except OSError as exc:
            log.warning("cannot save bdseq to %s: %s", self.path, exc)
        return self.value


class _Stopping(Exception):
    pass


class MqttLink:
    def __init__(
        self,
        config: CarConfig,
        topics: Topics,
        *,
        bdseq: BdseqStore,
        birth: Callable[[int], CarStatus],
        death: Callable[[int], CarStatus],
        on_message: Callable[[aiomqtt.Message], None],
        session_tasks: list[SessionTask],
        inflight: int = 32,
    ) -> None:
        self.config = config
        self.topics = topics
        self.url = BrokerUrl.parse(config.broker.url)
        self.bdseq_store = bdseq
        self.birth = birth
        self.death = death
        self.on_message = on_message
        self.session_tasks = session_tasks
        self.inflight = inflight
        self.client: aiomqtt.Client | None = None
        self.bdseq: int | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        self.failures = 0
        self._stop = asyncio.Event()
        self.last_error: str | None = None

    def _password(self) -> str | None:
        pf = self.config.broker.password_file
        if pf is not None:
            return pf.read_text().strip()
        return self.url.password

    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.tls:
            return None
        b = self.config.broker
        return client_context(b.ca_file, b.cert_file, b.key_file)

    def subscriptions(self) -> list[tuple[str, int]]:
        car = self.config.car.id
        subs = [
            (self.topics.fleet_estop(), 1),
            (self.topics.all_commands(car), 1),
            (self.topics.car_model(car), 1),
            (self.topics.car_detector(car), 1),
        ]
        if self.config.car.group:
            subs.append((self.topics.group_model(self.config.car.group), 1))
            subs.append((self.topics.group_detector(self.config.car.group), 1))
        return subs

    async def run(self) -> None:
        """Stay connected until :meth:`close`; reconnect with backoff on any failure."""
        b = self.config.broker
        backoff = b.reconnect_min_s
        status_topic = self.topics.car_status(self.config.car.id)
        while not self._stop.is_set():
            bdseq = await asyncio.to_thread(self.bdseq_store.next)
            will = aiomqtt.Will(status_topic, self.death(bdseq).to_json(), qos=1, retain=True)
            try:
                client = aiomqtt.Client(
                    self.url.host,
                    self.url.port,
                    username=self.url.username,
                    password=self._password(),
                    identifier=self.config.client_id,
                    will=will,
                    clean_session=True,
                    keepalive=b.keepalive_s,
                    timeout=b.connect_timeout_s,
                    tls_context=self._tls(),
                    max_inflight_messages=self.inflight + 16,
                )
                client.pending_calls_threshold = 100_000  # our own windows bound what is pending
                async with client:
                    self.client = client
                    self.bdseq = bdseq
                    self.connections += 1
                    backoff = b.reconnect_min_s
                    await client.subscribe(self.subscriptions())
                    await client.publish(status_topic, self.birth(bdseq).to_json(), qos=1, retain=True)
                    log.info("connected to %s (bdseq %d)", self.url, bdseq)
                    self.connected.set()
                    try:
                        await self._serve(client)
                    finally:
                        self.connected.clear()
                        self.client = None
                        if self._stop.is_set():
                            await self._publish_death(client, status_topic, bdseq)
            except (aiomqtt.MqttError, OSError) as exc:
                _reraise_if_cancelled()
                self.failures += 1
                self.last_error = str(exc) or type(exc).__name__
                log.warning("broker %s: %s; retrying in %.1fs", self.url, self.last_error, backoff)
            finally:
                self.connected.clear()
                self.client = None
            if self._stop.is_set():
                break
            delay = backoff * random.uniform(0.8, 1.2)
            backoff = min(b.reconnect_max_s, backoff * 2)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _serve(self, client: aiomqtt.Client) -> None:
        async def reader() -> None:
            async for message in client.messages:
                try:
                    self.on_message(message)
                except Exception:
                    log.exception("handling a message on %s", message.topic)

        async def stop_watch() -> None:
            await self._stop.wait()
            raise _Stopping

        tg = asyncio.TaskGroup()
        try:
            async with tg:
                tg.create_task(reader())
                tg.create_task(stop_watch())
                for task in self.session_tasks:
                    tg.create_task(task(client))
        except BaseExceptionGroup as group:
            # Python 3.11's TaskGroup cancels its parent when a child fails and does not undo it
            # (fixed in 3.12); undo its own request here, or this task would look cancelled.
            this = asyncio.current_task()
            if (
                sys.version_info < (3, 12)
                and this is not None
                and getattr(tg, "_parent_cancel_requested", False)
            ):
                this.uncancel()
            _, rest = group.split(_Stopping)
            if rest is None:
                return
            connection, other = rest.split((aiomqtt.MqttError, OSError))
            if other is not None:
                raise other from None
            assert connection is not None
            raise _first(connection) from None

    async def _publish_death(self, client: aiomqtt.Client, topic: str, bdseq: int) -> None:
        try:
            await client.publish(topic, self.death(bdseq).to_json(), qos=1, retain=True, timeout=2.0)
        except (aiomqtt.MqttError, OSError) as exc:
            log.warning("could not publish death: %s (the broker sends the last will)", exc)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 5.0,  # noqa: ASYNC109 - the wait for the broker's acknowledgement
    ) -> bool:
        """Publish on the current connection; False when offline or the publish failed."""
        client = self.client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)
            return True
        except (aiomqtt.MqttError, OSError) as exc:
            log.debug("publish on %s failed: %s", topic, exc)
            return False

    async def close(self) -> None:
        """Ask :meth:`run` to publish the death, disconnect and return."""
        self._stop.set()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _reraise_if_cancelled() -> None:
    """A disconnect that fails while the task is being cancelled replaces the CancelledError with
    an MqttError; swallowing that would keep a cancelled task running forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
