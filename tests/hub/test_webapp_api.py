"""The hub's side of the web app without a browser: its files, /whoami, the event stream, the camera
and drive sockets, and who may use them (with reads open and with ``api.protect_reads``)."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from hub import HubConfig, HubService
from tests.hub.conftest import TOKEN, eventually

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def listen(url: str, topic: str) -> tuple[list[bytes], Any]:
    """Subscribe like a car would; the payloads arrive in the list."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from schemas.mqtt_url import BrokerUrl

    broker = BrokerUrl.parse(url)
    received: list[bytes] = []
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="webapp-test-car", protocol=paho.MQTTv311)
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=0)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = lambda _c, _u, msg: received.append(msg.payload)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    assert subscribed.wait(10), "could not subscribe"
    return received, client


def ws_url(hub: HubService, path: str) -> str:
    return hub.api_url.replace("http://", "ws://") + path


def closed_code(url: str, send: str | None = None) -> int | None:
    with connect(url, open_timeout=10) as ws:
        try:
            if send:
                ws.send(send)
            ws.recv(timeout=5)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
    return None


def live_snapshots(url: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` snapshots the page's live socket sends."""
    with connect(url, open_timeout=10) as ws:
        return [json.loads(ws.recv(timeout=5)) for _ in range(count)]


async def test_files_whoami_and_sockets_with_reads_open(
    mosquitto: Any, make_config: Callable[..., HubConfig]
) -> None:
    async with HubService(make_config(mosquitto.url)) as hub, httpx.AsyncClient(base_url=hub.api_url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert '<script type="module" src="/app/app.js">' in page.text
        for name in ("app.js", "core.js", "pages.js", "drive.js", "chart.js", "lineage.js", "app.css"):
            assert (await http.get(f"/app/{name}")).status_code == 200, name
        for bad in ("..%2Fapp.py", "nothere.js", "x.py"):
            assert (await http.get(f"/app/{bad}")).status_code in (404, 422), bad
        assert (await http.get("/whoami")).json() == {"scope": "read"}
        assert (await http.get("/whoami", headers=AUTH)).json() == {"scope": "admin"}  # the hub's own token
        assert (await http.get("/whoami", headers={"Authorization": "Bearer nope"})).status_code == 401
        async with http.stream("GET", "/live") as stream:
            lines = stream.aiter_lines()
            while not (line := await anext(lines)).startswith("data: "):
                pass
            state = json.loads(line.removeprefix("data: "))
        assert set(state) >= {"cars", "estop", "jobs", "mqtt_connected"} and state["estop"]["active"] is False
        snapshots = await asyncio.to_thread(live_snapshots, ws_url(hub, "/live"), 2)
        assert set(snapshots[0]) == set(state) and snapshots[1]["ts"] > snapshots[0]["ts"]
        assert (
            await http.post("/fleet/estop", json={"active": True, "reason": "test"}, headers=AUTH)
        ).status_code == 200
        assert (await http.get("/fleet/estop")).json()["active"] is True

        viewer = await asyncio.to_thread(
            closed_code, ws_url(hub, "/cars/car-1/drive"), '{"steering":0,"throttle":1}'
        )
        assert viewer == 4403
        wrong = await asyncio.to_thread(closed_code, ws_url(hub, "/cars/car-1/drive?token=nope"))
        assert wrong == 4403


async def test_drive_socket_forwards_commands_and_stops_the_car_when_it_closes(
    mosquitto: Any, make_config: Callable[..., HubConfig]
) -> None:
    async with HubService(make_config(mosquitto.url)) as hub:
        received, listener = listen(mosquitto.url, hub.topics.command("car-1", "drive"))

        def drive() -> list[Any]:
            with connect(ws_url(hub, f"/cars/car-1/drive?token={TOKEN}"), open_timeout=10) as ws:
                acks = []
                for i in range(5):
                    ws.send(json.dumps({"steering": 0.1 * i, "throttle": 0.5, "ts": 1000.0 + i}))
                    acks.append(json.loads(ws.recv(timeout=5)))
                ws.send("not json")
                acks.append(json.loads(ws.recv(timeout=5)))
            return acks

        acks = await asyncio.to_thread(drive)
        assert [a.get("ack") for a in acks[:5]] == [1000.0 + i for i in range(5)]
        assert "bad drive command" in acks[5]["error"]
        for _ in range(100):
            if len(received) >= 6:
                break
            await asyncio.sleep(0.05)
        throttles = [json.loads(m)["throttle"] for m in received]
        assert throttles[:5] == [0.5] * 5 and throttles[-1] == 0.0, throttles  # neutral on close
        listener.disconnect()
        listener.loop_stop()


async def test_protected_reads_keep_the_app_loadable(
    mosquitto: Any, make_config: Callable[..., HubConfig]
) -> None:
    async with HubService(make_config(mosquitto.url, api={"protect_reads": True})) as hub:
        async with httpx.AsyncClient(base_url=hub.api_url) as http:
            assert (await http.get("/")).status_code == 200
            assert (await http.get("/app/app.js")).status_code == 200
            assert (await http.get("/cars")).status_code == 401
            assert (await http.get("/cars", headers=AUTH)).status_code == 200
            assert (await http.get("/whoami")).status_code == 401
            assert (await http.get("/live")).status_code == 401
            lap = "/models/pilot/1/evaluations/eval-1/files/video"  # a <video> sends ?token=, no header
            assert (await http.get(lap)).status_code == 401
            assert (await http.get(f"{lap}?token={TOKEN}")).status_code == 404  # let in: no such model
            thumb = "/sessions/car-1/s-1/thumbnail"  # an <img> too: the sessions page, the scrubber
            assert (await http.get(thumb)).status_code == 401
            assert (await http.get(f"{thumb}?token=wrong")).status_code == 401
            assert (await http.get(f"{thumb}?token={TOKEN}")).status_code == 404  # let in: no such session
            stop = {"active": True, "reason": "by query"}  # a query token is for reads only
            assert (await http.post(f"/fleet/estop?token={TOKEN}", json=stop)).status_code == 401
        for socket in ("/cars/car-1/camera", "/live", "/live?token=wrong"):
            assert await asyncio.to_thread(closed_code, ws_url(hub, socket)) == 4401, socket
        let_in = await asyncio.to_thread(live_snapshots, ws_url(hub, f"/live?token={TOKEN}"), 1)
        assert let_in[0]["cars"] == []


async def test_a_restarted_hub_shows_the_e_stop_the_broker_retains(
    mosquitto: Any, make_config: Callable[..., HubConfig]
) -> None:
    config = make_config(mosquitto.url)
    async with HubService(config) as hub, httpx.AsyncClient(base_url=hub.api_url) as http:
        r = await http.post("/fleet/estop", json={"active": True, "reason": "marshal"}, headers=AUTH)
        assert r.status_code == 200
    async with HubService(config) as hub, httpx.AsyncClient(base_url=hub.api_url) as http:

        async def state() -> dict[str, Any]:
            return dict((await http.get("/fleet/estop")).json())

        async def estop(active: bool) -> dict[str, Any] | None:
            now = await state()
            return now if now["active"] is active else None

        # the retained message arrives with the subscription
        found = await eventually(lambda: estop(True), 5, "the e-stop the broker retains")
        assert found["active"] is True and found["reason"] == "marshal" and found["ts"] > 0, found
        # someone else releases it at the broker (a car's marshal, `mosquitto_pub`): the hub follows
        _, operator = listen(mosquitto.url, hub.topics.fleet_estop())
        release = json.dumps({"active": False, "reason": "", "ts": found["ts"] + 1})
        operator.publish(hub.topics.fleet_estop(), release, qos=1, retain=True).wait_for_publish(5)
        await eventually(lambda: estop(False), 5, "the hub following the release at the broker")
        assert (await state())["active"] is False
        operator.publish(hub.topics.fleet_estop(), b"", qos=1, retain=True).wait_for_publish(5)
        operator.disconnect()
        operator.loop_stop()
