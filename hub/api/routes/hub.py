"""The hub itself: health, Prometheus metrics, ingest counters, flushing, the signing key."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.api.deps import AUTH, ERRORS, Parts
from hub.api.models import FlushOut, KeyOut

router = APIRouter(tags=["hub"])


@router.get("/health", summary="Component health (MQTT, spool, store, sinks)")
def health(hub: Parts) -> dict[str, Any]:
    return hub.health()


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def metrics(hub: Parts) -> Response:
    return Response(generate_latest(hub.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/ingest", summary="Ingest counters: persisted, sealed, lost, malformed, per car")
def ingest(hub: Parts) -> dict[str, Any]:
    return hub.ingest_stats().to_dict()


@router.post(
    "/ingest/flush", summary="Seal every durable frame into shards now", dependencies=AUTH, responses=ERRORS
)
def flush(hub: Parts, timeout: Annotated[float, Query(gt=0, le=600)] = 60.0) -> FlushOut:
    sealed = hub.sealer.flush(timeout)
    return FlushOut(sealed=sealed, ingest=hub.ingest_stats().to_dict())


@router.get("/keys", summary="The hub's public signing key (for provisioning cars)")
def keys(hub: Parts) -> KeyOut:
    return KeyOut(key_id=hub.deployer.key_id, public_key_pem=hub.deployer.public_key_pem)


@router.get("/keys/public.pem", summary="The public key as a PEM file", response_class=PlainTextResponse)
def public_pem(hub: Parts) -> Response:
    return Response(
        hub.deployer.public_key_pem,
        media_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="paddock-hub.pub.pem"'},
    )
