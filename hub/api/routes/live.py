"""Live state for the web app: the fleet's snapshot (a WebSocket for the page, server-sent events for
scripts), each car's camera over a WebSocket, and manual driving over a WebSocket.

The page takes the fleet over a WebSocket, not an ``EventSource``: over HTTP/1.1 a browser keeps at
most six connections to a host, an event stream holds one for as long as it is open, and six open
pages (a car page per car) left none for the page's commands: the mode and e-stop buttons waited.
WebSockets are not counted in that pool.

Browsers cannot put headers on an ``EventSource`` or a ``WebSocket``, so these take the token as
``?token=``. Driving needs the operator scope; a viewer's socket is closed with code 4403.
"""

import asyncio
import contextlib
import json
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from hub.api.deps import Parts, require_operator, require_reader, scope_of
from hub.api.models import CarPath, EStopOut, WhoAmI
from hub.api.parts import ApiParts
from hub.api.routes.cars import car_out
from schemas.errors import ContractError
from schemas.messages import DriveCommand
from schemas.payloads import decode_frame

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

LIVE_INTERVAL_S = 0.5
"""How often the fleet stream sends a snapshot."""
CAMERA_POLL_S = 0.01
DRIVE_STALL_S = 0.3
"""A drive socket silent this long sends neutral throttle at once (the car's deadman would, later)."""
Token = Annotated[str | None, Query(description="the bearer token (EventSource/WebSocket have no headers)")]


def estop_state(hub: ApiParts) -> EStopOut:
    """The fleet e-stop as the broker holds it (its retained message), so a restarted hub knows it."""
    known = hub.ingest.estop
    return EStopOut() if known is None else EStopOut(active=known.active, reason=known.reason, ts=known.ts)


@router.get("/whoami", summary="What the presented token may do: read or operate")
def whoami(hub: Parts, request: Request, token: Token = None) -> WhoAmI:
    header = request.headers.get("authorization", "")
    presented = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else token
    scope = scope_of(hub, presented)
    if scope is None:
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    return WhoAmI(scope=scope)


@router.get("/fleet/estop", summary="The fleet e-stop (the broker's retained message)")
def get_estop(hub: Parts) -> EStopOut:
    return estop_state(hub)


def snapshot(hub: ApiParts, estop: EStopOut) -> dict[str, Any]:
    """Everything the app's pages show live, in one message."""
    return {
        "ts": time.time(),
        "cars": [car_out(hub, row).model_dump() for row in hub.catalog.list_cars()],
        "estop": estop.model_dump(),
        "jobs": hub.catalog.list_jobs(None, 20),
        "mqtt_connected": hub.ingest.is_connected,
    }


@router.get(
    "/live",
    summary="Server-sent events: a fleet snapshot (cars, e-stop, jobs) twice a second",
    response_class=StreamingResponse,
    include_in_schema=False,  # a stream without end; docs/hub.md describes it with the sockets
)
async def live(request: Request, hub: Parts, token: Token = None) -> StreamingResponse:
    if not require_reader(hub, token):
        raise HTTPException(401, "missing or wrong token")

    async def events() -> Any:
        yield "retry: 1000\n\n"
        while not await request.is_disconnected():
            data = await asyncio.to_thread(snapshot, hub, estop_state(hub))
            yield f"event: state\ndata: {json.dumps(data, default=str)}\n\n"
            await asyncio.sleep(LIVE_INTERVAL_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.websocket("/live")
async def live_socket(ws: WebSocket, token: Token = None) -> None:
    """The snapshot of ``GET /live`` as one JSON text message twice a second, until the page goes."""
    hub: ApiParts = ws.app.state.parts
    await ws.accept()
    if not require_reader(hub, token):
        await ws.close(4401, "missing or wrong token")
        return
    closed = asyncio.create_task(_until_closed(ws))
    try:
        while not closed.done():
            data = await asyncio.to_thread(snapshot, hub, estop_state(hub))
            await ws.send_text(json.dumps(data, default=str))
            await asyncio.wait([closed], timeout=LIVE_INTERVAL_S)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.cancel()


async def _until_closed(ws: WebSocket) -> None:
    """Read (and drop) what the client sends until it closes: a send alone notices a close late."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass


@router.websocket("/cars/{car}/camera")
async def camera(ws: WebSocket, car: CarPath, token: Token = None) -> None:
    """Each new preview frame of ``car`` as one binary JPEG message, as soon as the hub has it."""
    hub: ApiParts = ws.app.state.parts
    await ws.accept()
    if not require_reader(hub, token):
        await ws.close(4401, "missing or wrong token")
        return
    last: bytes | None = None
    try:
        while True:
            envelope = hub.ingest.preview_of(car)
            if envelope is not None and envelope is not last:
                last = envelope
                try:
                    _, jpeg = decode_frame(envelope)
                except ContractError:
                    continue
                await ws.send_bytes(jpeg)
            else:
                await asyncio.sleep(CAMERA_POLL_S)
    except (WebSocketDisconnect, RuntimeError):
        return


@router.websocket("/cars/{car}/drive")
async def drive(ws: WebSocket, car: CarPath, token: Token = None) -> None:
    """Manual driving: the page sends ``{"steering", "throttle", "ts"}`` at 20 Hz; each is
    forwarded as ``cmd/drive`` (QoS 0) and acknowledged with ``{"ack": ts}``. When the socket is
    silent for ``DRIVE_STALL_S`` or closes, the hub sends neutral throttle itself."""
    hub: ApiParts = ws.app.state.parts
    await ws.accept()
    if not require_operator(hub, token):
        await ws.close(4403, "viewers cannot drive: sign in with an operator token")
        return
    topic = hub.topics.command(car, "drive")
    moving = False
    try:
        while True:
            try:
                raw = await asyncio.wait_for(ws.receive_text(), DRIVE_STALL_S)
            except TimeoutError:
                if moving:
                    await _send_drive(hub, topic, 0.0, 0.0)
                    moving = False
                continue
            try:
                body = json.loads(raw)
                cmd = DriveCommand(steering=body["steering"], throttle=body["throttle"], ts=body.get("ts"))
            except (ValueError, KeyError, TypeError, ContractError) as exc:
                await ws.send_json({"error": f"bad drive command: {exc}"[:300]})
                continue
            await _send_drive(hub, topic, cmd.steering, cmd.throttle, cmd.ts)
            moving = cmd.throttle != 0.0
            await ws.send_json({"ack": cmd.ts})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await _send_drive(hub, topic, 0.0, 0.0)


async def _send_drive(
    hub: ApiParts, topic: str, steering: float, throttle: float, ts: float | None = None
) -> None:
    cmd = DriveCommand(steering=steering, throttle=throttle, ts=ts if ts is not None else time.time())
    await asyncio.to_thread(hub.ingest.publish, topic, cmd.to_json(), qos=0)
