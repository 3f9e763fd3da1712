"""Frame and model envelopes travel through real brokers (Mosquitto and amqtt), paho and aiomqtt."""

import asyncio
import os
import queue

import aiomqtt
import paho.mqtt.client as paho

from schemas.messages import FrameRecord
from schemas.model_card import InputSpec, ModelCard, ModelManifest, OutputSpec, sha256_hex
from schemas.mqtt_url import BrokerUrl
from schemas.payloads import decode_frame, decode_model, encode_frame, encode_model
from schemas.topics import Topics

T = Topics()


def _frame(seq: int) -> tuple[FrameRecord, bytes]:
    rec = FrameRecord(
        car="car-1",
        session="s1",
        seq=seq,
        t_capture_ns=seq * 1000,
        steering=-0.25,
        throttle=0.5,
        mode="manual",
    )
    return rec, os.urandom(10_000)


def _model(size: int) -> tuple[ModelManifest, bytes]:
    data = os.urandom(size)
    card = ModelCard(
        architecture="linear",
        input=InputSpec(width=160, height=120),
        outputs=[OutputSpec(name="steering"), OutputSpec(name="throttle")],
    )
    return ModelManifest(
        name="pilot", version="7", sha256=sha256_hex(data), size=len(data), format="onnx", card=card
    ), data


def _paho(url: str, client_id: str) -> paho.Client:
    b = BrokerUrl.parse(url)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def test_paho_frames_and_model(broker_url: str) -> None:
    received: queue.Queue[paho.MQTTMessage] = queue.Queue()
    sub = _paho(broker_url, "sub-paho")
    sub.on_message = lambda _c, _u, msg: received.put(msg)
    subscribed = sub.subscribe([(T.all_cars("frames"), 1), (T.car_model("car-1"), 1)])
    assert subscribed[0] == paho.MQTT_ERR_SUCCESS
    pub = _paho(broker_url, "pub-paho")
    try:
        import time

        time.sleep(0.3)  # let the subscription settle before publishing (no retain on frames)
        frames = [_frame(i) for i in range(20)]
        for rec, jpeg in frames:
            pub.publish(T.frames("car-1"), encode_frame(rec, jpeg), qos=1).wait_for_publish(5)
        man, model = _model(200_000)
        pub.publish(T.car_model("car-1"), encode_model(man, model), qos=1).wait_for_publish(5)

        got_frames: dict[int, bytes] = {}
        got_model = None
        while len(got_frames) < 20 or got_model is None:
            msg = received.get(timeout=10)
            parsed = T.parse(msg.topic)
            if parsed.kind.value == "frames":
                rec, jpeg = decode_frame(msg.payload)
                got_frames[rec.seq] = jpeg
            else:
                got_model = decode_model(msg.payload)
        assert got_frames == {rec.seq: jpeg for rec, jpeg in frames}
        assert got_model[0].sha256 == man.sha256 and got_model[1] == model
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()


async def test_aiomqtt_retained_5mb_model_reaches_a_late_subscriber(broker_url: str) -> None:
    b = BrokerUrl.parse(broker_url)
    man, model = _model(5 * 1024 * 1024)
    topic = T.car_model("late-car")
    async with aiomqtt.Client(b.host, b.port, identifier="hub-pub") as pub:
        await pub.publish(topic, encode_model(man, model), qos=1, retain=True)
    # The subscriber connects only after the publisher has gone.
    async with aiomqtt.Client(b.host, b.port, identifier="late-sub") as sub:
        await sub.subscribe(topic, qos=1)
        async with asyncio.timeout(20):
            async for msg in sub.messages:
                assert msg.retain
                got_man, got = decode_model(msg.payload)  # type: ignore[arg-type]
                break
    assert got == model
    assert got_man.sha256 == man.sha256
    # clear the retained message so later tests start clean
    async with aiomqtt.Client(b.host, b.port, identifier="hub-clear") as pub:
        await pub.publish(topic, b"", qos=1, retain=True)


async def test_aiomqtt_frame_envelope(broker_url: str) -> None:
    b = BrokerUrl.parse(broker_url)
    async with (
        aiomqtt.Client(b.host, b.port, identifier="ai-sub") as sub,
        aiomqtt.Client(b.host, b.port, identifier="ai-pub") as pub,
    ):
        await sub.subscribe(T.frames("car-2"), qos=1)
        await asyncio.sleep(0.2)
        rec, jpeg = _frame(42)
        rec = rec.model_copy(update={"car": "car-2"})
        await pub.publish(T.frames("car-2"), encode_frame(rec, jpeg), qos=1)
        async with asyncio.timeout(10):
            async for msg in sub.messages:
                got, got_jpeg = decode_frame(msg.payload)  # type: ignore[arg-type]
                break
    assert got == rec and got_jpeg == jpeg
