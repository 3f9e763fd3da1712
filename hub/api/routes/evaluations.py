"""An evaluation's files (lap video, track map, simtrace, report) as the trainer stored them under
``evals/{job}/``, streamed from the hub's store with byte ranges, which a browser's ``<video>``
asks for to find the MP4 index and to seek.

A ``<video>`` or ``<img>`` sends no header: the read check every reading route has
(``hub.api.deps.require_read``) takes the token as ``?token=`` too; with reads open (loopback) no
token is needed.
"""

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Annotated, Any

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import Response, StreamingResponse

from hub.api.deps import ERRORS, Parts, not_found
from hub.api.models import NamePath
from hub.api.parts import ApiParts

router = APIRouter(tags=["models"])

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".gif": "image/gif",
    ".png": "image/png",
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
}
EVAL_ROOT = "evals/"
"""Only evaluation outputs are served: an artifact naming any other key (a session, a model) is not."""
CHUNK = 256 * 1024
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def file_url(hub: ApiParts, name: str, version: str, job: str, label: str) -> str:
    return f"{hub.public_url()}/models/{name}/{version}/evaluations/{job}/files/{label}"


def with_file_urls(hub: ApiParts, name: str, version: str, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation with ``files``: label → URL of each file the hub serves."""
    job, artifacts = evaluation.get("job"), evaluation.get("artifacts") or {}
    files = {
        label: file_url(hub, name, version, job, label)
        for label, key in artifacts.items()
        if job and isinstance(key, str) and key.startswith(EVAL_ROOT)
    }
    return {**evaluation, "files": files}


def _artifact_key(hub: ApiParts, name: str, version: str, job: str, label: str) -> str:
    if hub.catalog.get_model(name, version) is None:
        raise not_found(f"model {name}:{version}")
    found = [e for e in hub.catalog.evaluations(name, version) if e["job"] == job]
    if not found:
        raise not_found(f"evaluation {job} of {name}:{version}")
    key = found[-1]["artifacts"].get(label)  # a result delivered twice: the newest
    if not isinstance(key, str) or not key.startswith(EVAL_ROOT):
        raise not_found(f"file {label} of evaluation {job}")
    return key


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``Range: bytes=…`` header; None for the whole file.
    Raises 416 for a range outside the file (several ranges at once are served whole)."""
    match = RANGE.match(header.strip()) if header else None
    if match is None:
        return None
    start, end = match.groups()
    if not start and not end:
        return None
    if not start:  # the last N bytes
        first, last = max(0, size - int(end)), size - 1
    else:
        first, last = int(start), min(int(end), size - 1) if end else size - 1
    if first >= size or first > last:
        raise HTTPException(
            416, f"range {header} is outside the {size} bytes", headers={"Content-Range": f"bytes */{size}"}
        )
    return first, last


def _chunks(fh: IO[bytes], length: int) -> Iterator[bytes]:
    try:
        left = length
        while left > 0 and (data := fh.read(min(CHUNK, left))):
            left -= len(data)
            yield data
    finally:
        fh.close()


@router.get(
    "/models/{name}/{version}/evaluations/{job}/files/{label}",
    summary="A file of an evaluation (lap video, map, simtrace, report), with byte ranges",
    responses={
        200: {"content": {"video/mp4": {}, "image/png": {}}},
        206: {"description": "a byte range"},
        **ERRORS,
    },
    response_class=Response,
)
def evaluation_file(
    hub: Parts,
    name: NamePath,
    version: NamePath,
    job: NamePath,
    label: NamePath,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> StreamingResponse:
    key = _artifact_key(hub, name, version, job, label)
    size = hub.store.size(key)
    span = byte_range(range_header, size)
    first, last = span or (0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(last - first + 1),
        "Cache-Control": "private, max-age=3600",  # an evaluation's files never change
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    media_type = MEDIA_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")
    return StreamingResponse(
        _chunks(hub.store.open(key, first), last - first + 1),
        status_code=206 if span is not None else 200,
        media_type=media_type,
        headers=headers,
    )
