"""The embedded broker (amqtt): every client that connects is served, even under connection churn,
and a persistent session keeps what is sent while its client is away.

What amqtt 0.12 gets wrong here, and how the embedded broker mends it: deploy/amqtt_broker.py."""

import asyncio
import contextlib
import random
from collections.abc import Iterator

import aiomqtt
import pytest

from deploy.broker import EmbeddedBroker

TOPICS = [f"fleet/car-{i}/model" for i in range(20)]
RECONNECTS = 5


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


async def read_retained(broker: EmbeddedBroker, topic: str) -> bytes | None:
    """Connect, subscribe, and return the retained payload of ``topic`` (None if none comes in 5 s)."""
    try:
        async with aiomqtt.Client(broker.host, broker.port, timeout=5) as client:
            await client.subscribe(topic, qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    if message.topic.matches(topic) and isinstance(message.payload, bytes):
                        return message.payload
    except (TimeoutError, aiomqtt.MqttError):
        return None
    return None


async def test_clients_that_come_and_go_together_all_get_their_retained_message(
    broker: EmbeddedBroker,
) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as publisher:
        for topic in TOPICS:
            await publisher.publish(topic, topic.encode(), qos=1, retain=True)

    async def car(topic: str) -> list[str]:
        """A car reconnecting at random moments: its connections overlap other cars leaving."""
        misses = []
        for _ in range(RECONNECTS):
            await asyncio.sleep(random.uniform(0, 0.02))
            if await read_retained(broker, topic) != topic.encode():
                misses.append(topic)
        return misses

    missed = [topic for misses in await asyncio.gather(*(car(topic) for topic in TOPICS)) for topic in misses]
    assert not missed, (
        f"{len(missed)} of {RECONNECTS * len(TOPICS)} connections got no retained message: {missed[:3]}"
    )


async def sent_while_away(broker: EmbeddedBroker, away_s: float = 0.0, count: int = 100) -> list[int]:
    """What a persistent session (subscribed, then away for ``away_s``) receives on its return of
    ``count`` QoS 1 messages sent while it was away."""

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(broker.host, broker.port, identifier="hub-away", clean_session=False)

    async with client() as hub:
        await hub.subscribe("cars/+/frames", qos=1)
    await asyncio.sleep(away_s)
    async with aiomqtt.Client(broker.host, broker.port) as car:
        for seq in range(count):
            await car.publish("cars/car-1/frames", str(seq).encode(), qos=1)
    received: list[int] = []
    async with client() as hub:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                async for message in hub.messages:
                    assert isinstance(message.payload, bytes)
                    received.append(int(message.payload))
                    if len(received) == count:
                        break
    return received


async def test_a_persistent_session_gets_what_was_sent_while_it_was_away(broker: EmbeddedBroker) -> None:
    """The hub and the trainer agent keep a session (clean session off): QoS 1 messages sent while
    they are away (restarting, say) must wait for them, as Mosquitto does."""
    received = await sent_while_away(broker)
    assert received == list(range(100)), f"{100 - len(received)} of 100 messages sent while away were lost"


async def test_a_session_away_for_longer_than_its_expiry_is_forgotten() -> None:
    with EmbeddedBroker(session_expiry_s=1) as broker:
        assert await sent_while_away(broker, away_s=2.5, count=10) == []
    with pytest.raises(ValueError, match="session_expiry_s"):
        EmbeddedBroker(session_expiry_s=0)
