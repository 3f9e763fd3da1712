"""The fleet and its cars: summary, status, telemetry and events, previews, commands, e-stop."""

import dataclasses
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from hub.api.deps import AUTH, ERRORS, Parts, not_found
from hub.api.models import CarOut, CarPath, CommandOut, EStopIn, FleetOut, Ok
from hub.api.parts import ApiParts
from schemas import __version__
from schemas.errors import ContractError
from schemas.messages import COMMAND_MODELS, EStop
from schemas.topics import COMMAND_NAMES

router = APIRouter(tags=["fleet"])


@router.get("/fleet", summary="Fleet summary")
def fleet(hub: Parts) -> FleetOut:
    cars = hub.catalog.list_cars()
    stats = hub.ingest_stats()
    _, sessions = hub.catalog.list_sessions(limit=1)
    return FleetOut(
        cars=len(cars),
        cars_online=sum(1 for c in cars if c["state"] == "online"),
        sessions=sessions,
        frames_persisted=stats.frames_persisted,
        frames_sealed=stats.frames_sealed,
        missing=stats.missing,
        gaps=stats.gaps,
        duplicates=stats.duplicates,
        malformed=stats.malformed,
        hub={"mqtt_connected": hub.ingest.is_connected, "api_url": hub.public_url(), "version": __version__},
    )


def car_out(hub: ApiParts, row: dict[str, Any]) -> CarOut:
    car = row["car"]
    counted = hub.counters.of(car)
    return CarOut(
        **row,
        telemetry=hub.ingest.telemetry_of(car),
        ingest={} if counted is None else dataclasses.asdict(counted),
        deployment=_assigned(hub, car, "pilot"),
        detector_deployment=_assigned(hub, car, "detector"),
    )


def _assigned(hub: ApiParts, car: str, slot: str) -> dict[str, Any] | None:
    """The model assigned to one slot of ``car`` itself (None: nothing, or only its group's)."""
    current: dict[str, Any] | None = hub.deployer.status("car", car, slot)["current"]
    return current


@router.get("/cars", summary="Every car the hub has heard of")
def cars(hub: Parts) -> list[CarOut]:
    return [car_out(hub, r) for r in hub.catalog.list_cars()]


@router.get("/cars/{car}", summary="One car: status, model state, last telemetry", responses=ERRORS)
def car(hub: Parts, car: CarPath) -> CarOut:
    row = hub.catalog.get_car(car)
    if row is None:
        raise not_found(f"car {car}")
    return car_out(hub, row)


@router.get("/cars/{car}/telemetry", summary="Recent telemetry (SQLite sink)", responses=ERRORS)
def car_telemetry(
    hub: Parts,
    car: CarPath,
    since: Annotated[float | None, Query(ge=0, description="epoch seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    if hub.telemetry is None:
        raise HTTPException(404, "the SQLite telemetry sink is disabled")
    return hub.telemetry.telemetry(car, since, limit)


@router.get("/cars/{car}/events", summary="Recent events (SQLite sink)", responses=ERRORS)
def car_events(
    hub: Parts,
    car: CarPath,
    since: Annotated[float | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    type: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
) -> list[dict[str, Any]]:
    if hub.telemetry is None:
        raise HTTPException(404, "the SQLite telemetry sink is disabled")
    return hub.telemetry.events(car, since, limit, type)


@router.get(
    "/cars/{car}/preview",
    summary="The latest preview (QoS 0) frame of a car",
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    response_class=Response,
)
def preview(hub: Parts, car: CarPath) -> Response:
    from schemas.payloads import decode_frame

    envelope = hub.ingest.preview_of(car)
    if envelope is None:
        raise not_found(f"preview of {car}")
    try:
        _, jpeg = decode_frame(envelope)
    except ContractError:
        raise not_found(f"preview of {car}") from None
    return Response(jpeg, media_type="image/jpeg")


@router.post(
    "/cars/{car}/commands/{name}",
    summary="Send a command (drive, mode, record, config, rebirth) to a car",
    dependencies=AUTH,
    responses=ERRORS,
)
def command(
    hub: Parts,
    car: CarPath,
    name: Annotated[Literal["drive", "mode", "record", "config", "rebirth"], Path()],
    body: dict[str, Any],
    wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for the car's response")] = 0,
) -> CommandOut:
    assert name in COMMAND_NAMES
    transaction = body.get("transaction") or secrets.token_hex(8)
    if not isinstance(transaction, str):
        raise ContractError("transaction must be a string")
    cmd = COMMAND_MODELS[name].from_dict({**body, "transaction": transaction})
    qos = 0 if name == "drive" else 1
    published = hub.ingest.publish(hub.topics.command(car, name), cmd.to_json(), qos=qos)
    response = hub.ingest.wait_response(transaction, wait) if wait > 0 and published else None
    return CommandOut(transaction=transaction, published=published, response=response)


@router.post(
    "/fleet/estop",
    summary="Set or release the fleet e-stop (retained)",
    dependencies=AUTH,
    responses=ERRORS,
)
def estop(hub: Parts, body: EStopIn) -> Ok:
    msg = EStop(active=body.active, reason=body.reason, ts=time.time())
    if not hub.ingest.publish(hub.topics.fleet_estop(), msg.to_json(), qos=1, retain=True):
        raise HTTPException(503, "the broker did not acknowledge the e-stop")
    hub.ingest.note_estop(msg)  # at once: the broker's copy of it comes back a moment later
    return Ok()
