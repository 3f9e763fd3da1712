"""The embedded broker (amqtt) under connection churn: every client that connects is served.

amqtt 0.12 loops over its subscription table with awaits inside; without ``SnapshotIteration`` a
client that left meanwhile made a newly connected client's session die after its CONNACK (no SUBACK,
no retained message)."""

import asyncio
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
