"""Recorded sessions: list, manifest, delete, trim, a thumbnail, a tar export, a tar upload."""

from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from fastapi.responses import Response, StreamingResponse
from PIL import Image

from hub.api.deps import ADMIN, AUTH, ERRORS, READ, Parts, not_found
from hub.api.models import MAX_SEQ, CarPath, Problem, SessionList, SessionOut, SessionPath, TrimIn
from hub.api.parts import ApiParts
from hub.fleet.sessions import ImageTooLarge, export_tar, frame_actions, read_frame, thumbnail
from hub.fleet.uploads import UploadRejected, adopt_session_tar
from hub.storage.catalog import Conflict
from hub.storage.sealer import manifest_from_row
from schemas.ids import CAR_ID_PATTERN

router = APIRouter(tags=["sessions"])


def _session_out(hub: ApiParts, row: dict[str, Any]) -> SessionOut:
    manifest = manifest_from_row(row)
    return SessionOut(
        **manifest.model_dump(),
        bytes=row["bytes"],
        trimmed=[(a, b) for a, b in row["trimmed"]],
        datasets=hub.catalog.datasets_using(row["car"], row["session"]),
    )


def _session_row(hub: ApiParts, car: str, session: str) -> dict[str, Any]:
    row = hub.catalog.get_session(car, session)
    if row is None:
        raise not_found(f"session {car}/{session}")
    return row


@router.get("/sessions", summary="Recorded sessions, newest first")
def sessions(
    hub: Parts,
    car: Annotated[str | None, Query(pattern=CAR_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
) -> SessionList:
    rows, total = hub.catalog.list_sessions(car, limit, offset)
    return SessionList(total=total, sessions=[_session_out(hub, r) for r in rows])


@router.post(
    "/sessions",
    summary="Upload a session: a tar laid out as the export makes it (imported tubs, LeRobot datasets)",
    status_code=201,
    dependencies=AUTH,
    responses={413: {"model": Problem, "description": "tar too large"}, **ERRORS},
)
def upload(
    hub: Parts,
    tar: Annotated[
        UploadFile, File(description="datasets/{car}/{session}/manifest.json, then its shards in order")
    ],
) -> SessionOut:
    limit_mb = hub.settings.max_upload_mb
    if tar.size is not None and tar.size > limit_mb * 1024 * 1024:
        raise HTTPException(413, f"the session tar exceeds {limit_mb} MiB")
    try:
        row = adopt_session_tar(tar.file, hub.store, hub.catalog)
    except UploadRejected as exc:
        raise HTTPException(422, str(exc)) from None
    return _session_out(hub, _session_row(hub, row["car"], row["session"]))


@router.get("/sessions/{car}/{session}", summary="A session's manifest", responses=ERRORS)
def session(hub: Parts, car: CarPath, session: SessionPath) -> SessionOut:
    return _session_out(hub, _session_row(hub, car, session))


@router.delete(
    "/sessions/{car}/{session}",
    summary="Delete a session (its shards, manifest and catalog entry)",
    status_code=204,
    dependencies=ADMIN,
    responses=ERRORS,
)
def delete_session(
    hub: Parts,
    car: CarPath,
    session: SessionPath,
    force: Annotated[bool, Query(description="delete even if datasets use it")] = False,
) -> Response:
    _session_row(hub, car, session)
    using = hub.catalog.datasets_using(car, session)
    if using and not force:
        raise Conflict(f"session {car}/{session} is used by datasets {', '.join(using)} (use force=true)")
    hub.sealer.delete(car, session)
    return Response(status_code=204)


@router.post(
    "/sessions/{car}/{session}/trim",
    summary="Remove the frames start..end (inclusive) from a session",
    dependencies=AUTH,
    responses=ERRORS,
)
def trim(hub: Parts, car: CarPath, session: SessionPath, body: TrimIn) -> SessionOut:
    _session_row(hub, car, session)
    hub.sealer.trim(car, session, body.start, body.end)
    return _session_out(hub, _session_row(hub, car, session))


@router.get(
    "/sessions/{car}/{session}/thumbnail",
    summary="A frame of the session as a small JPEG (default: the middle frame)",
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    response_class=Response,
)
def session_thumbnail(
    hub: Parts,
    car: CarPath,
    session: SessionPath,
    seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    size: Annotated[int, Query(ge=16, le=1024)] = 160,
) -> Response:
    manifest = manifest_from_row(_session_row(hub, car, session))
    sample = read_frame(hub.store, manifest, seq)
    if sample is None:
        raise not_found(f"frame {seq} of {car}/{session}")
    try:
        data = thumbnail(sample.jpeg, size)
    except ImageTooLarge as exc:
        raise HTTPException(422, f"frame {sample.seq} of {car}/{session}: {exc}") from None
    except (OSError, Image.DecompressionBombError):
        raise HTTPException(422, f"frame {sample.seq} of {car}/{session} is not a decodable JPEG") from None
    return Response(data, media_type="image/jpeg", headers={"X-Paddock-Seq": str(sample.seq)})


@router.get(
    "/sessions/{car}/{session}/frames",
    summary="Each frame's seq, steering, throttle, mode and speed (for a scrubber; no images)",
    responses=ERRORS,
)
def session_frames(
    hub: Parts,
    car: CarPath,
    session: SessionPath,
    limit: Annotated[int, Query(ge=1, le=100_000, description="at most this many, evenly spread")] = 5000,
) -> list[dict[str, Any]]:
    manifest = manifest_from_row(_session_row(hub, car, session))
    return frame_actions(hub.store, manifest, limit)


@router.get(
    "/sessions/{car}/{session}/export",
    summary="The session as a tar: manifest.json and shards, laid out as in the store",
    responses={200: {"content": {"application/x-tar": {}}}, **ERRORS},
    response_class=Response,
    dependencies=READ,
)
def export(hub: Parts, car: CarPath, session: SessionPath) -> StreamingResponse:
    manifest = manifest_from_row(_session_row(hub, car, session))
    return StreamingResponse(
        export_tar(hub.store, manifest),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{car}-{session}.tar"'},
    )
