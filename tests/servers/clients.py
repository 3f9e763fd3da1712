"""Small MQTT client helpers that tests share."""

import queue
import time

import paho.mqtt.client as paho

from schemas.mqtt_url import BrokerUrl


def retained_payload(url: str, topic: str, timeout: float = 5.0) -> bytes | None:
    """The retained message on ``topic`` as a new subscriber sees it, or None within ``timeout``.

    Messages of other topics are skipped: amqtt 0.12 also hands a new subscriber retained messages
    of topics that other clients subscribed to."""
    broker = BrokerUrl.parse(url)
    got: queue.Queue[paho.MQTTMessage] = queue.Queue()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: got.put(msg)
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = got.get(timeout=left)
            except queue.Empty:
                return None
            if msg.topic == topic:
                return bytes(msg.payload)
        return None
    finally:
        client.loop_stop()
        client.disconnect()
