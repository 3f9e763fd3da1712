"""The operator's web app: ``/`` is its page, ``/app/{file}`` its scripts and styles (hub/web/static)."""

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from hub.api.deps import not_found
from hub.web import STATIC_DIR

router = APIRouter(tags=["web app"])

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# no-cache: the browser revalidates (ETag) so an upgraded hub never runs yesterday's scripts
NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/", summary="The operator's web app", response_class=FileResponse, include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type=MEDIA_TYPES[".html"], headers=NO_CACHE)


@router.get(
    "/app/{file}", summary="A file of the web app", response_class=FileResponse, include_in_schema=False
)
def static_file(
    file: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}\.(js|css|svg|png|html)$")],
) -> FileResponse:
    # the pattern allows no slash and no dot-dot: nothing outside the folder can be named
    path = STATIC_DIR / file
    if not path.is_file():
        raise not_found(f"file {file}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)
