"""The REST API (FastAPI; OpenAPI at /docs and /openapi.json): :func:`create_app`.

Every route needs ``Authorization: Bearer <token>`` with a scope (read, operate, admin:
:mod:`hub.api.deps`); reads are open only while the hub listens on loopback alone. Bad input is
a 4xx with a ``detail`` message:
ids are checked against the same patterns the wire uses, so no id can reach outside the store.
The route list is kept in docs/hub.md. The routes live in :mod:`hub.api.routes`, one router per
resource; the response models in :mod:`hub.api.models`.
"""

import logging
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from hub.api.deps import require_read
from hub.api.models import Problem
from hub.api.parts import ApiParts
from hub.api.routes import (
    canaries,
    cars,
    datasets,
    deployments,
    evaluations,
    feedback,
    jobs,
    live,
    models,
    sessions,
    web,
)
from hub.api.routes import hub as hub_routes
from hub.fleet.deployments import NotFound
from hub.storage.catalog import CatalogError, Conflict
from hub.storage.sealer import SessionNotFound
from infra.store import NoSuchKey, StoreError
from schemas import __version__
from schemas.errors import ContractError

log = logging.getLogger(__name__)

ROUTERS = (hub_routes, cars, sessions, datasets, models, evaluations, deployments, canaries, feedback, jobs)


def create_app(parts: ApiParts) -> FastAPI:
    """The API over ``parts``: only ``parts.settings`` is read here, the rest when a request comes."""
    app = FastAPI(
        title="paddock hub",
        version=__version__,
        description="Ingest, sessions, datasets, models, signed deployments and jobs of a paddock fleet.",
        responses={422: {"model": Problem, "description": "invalid input"}},
    )
    app.state.parts = parts
    protect = [Depends(require_read)]  # a read token unless the hub listens on loopback only
    for module in ROUTERS:
        app.include_router(module.router, dependencies=protect)
    # The web app's files load without a header (a browser sends none for a page); its live
    # channels check the token they are given as ?token= themselves.
    app.include_router(live.router)
    app.include_router(web.router)
    _install_error_handlers(app)
    app.middleware("http")(_server_header)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Always a 4xx with a message for bad input, 503 when a backing store fails."""

    async def contract(_r: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    async def conflict(_r: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def missing(_r: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"not found: {exc.args[0] if exc.args else ''}"}, status_code=404)

    async def unavailable(_r: Request, exc: Exception) -> JSONResponse:
        log.error("backing store failed: %s", exc)
        return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503)

    async def invalid(_r: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    handlers: list[tuple[type[Exception], Any]] = [
        (ContractError, contract),
        (Conflict, conflict),
        (NotFound, missing),
        (SessionNotFound, missing),
        (NoSuchKey, missing),
        (StoreError, unavailable),
        (CatalogError, unavailable),
        (RequestValidationError, invalid),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)


async def _server_header(request: Request, call_next: Any) -> Response:
    start = time.perf_counter()
    response: Response = await call_next(request)
    response.headers["X-Paddock-Hub"] = __version__
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
    return response
