"""What every router shares: the collaborators (as a FastAPI dependency), the token check, the
error responses documented on each route, and the 404 helper."""

import hmac
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.models import Problem
from hub.api.parts import ApiParts
from hub.fleet.deployments import download_grant

bearer = HTTPBearer(auto_error=False, description="the hub's API token")


def parts(request: Request) -> ApiParts:
    """The collaborators :func:`hub.api.app.create_app` was given."""
    found: ApiParts = request.app.state.parts
    return found


Parts = Annotated[ApiParts, Depends(parts)]


SCOPES = ("read", "operate", "admin")  # each includes the ones before it
Scope = Literal["read", "operate", "admin"]
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def scope_of(hub: ApiParts, token: str | None) -> Scope | None:
    """What a bearer token may do: its scope (the hub's own token: admin), ``read`` without one
    where reads are open (loopback only), ``None`` when refused."""
    if not token:
        return None if reads_protected(hub) else "read"
    given = token.encode()
    found: Scope | None = None
    for known, scope in ((hub.token, "admin"), *hub.scoped_tokens):
        if hmac.compare_digest(given, known.encode()):  # every token compared: no timing hint
            found = found or scope  # type: ignore[assignment]
    return found


def reads_protected(hub: ApiParts) -> bool:
    """Reads need a token unless the hub listens on loopback only (``api.protect_reads`` decides
    when set)."""
    if hub.settings.protect_reads is not None:
        return hub.settings.protect_reads
    return hub.settings.host not in LOOPBACK_HOSTS


def _require(scope: Scope, hub: ApiParts, creds: HTTPAuthorizationCredentials | None) -> None:
    granted = scope_of(hub, creds.credentials) if creds is not None and creds.credentials else None
    if granted is None:
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    if SCOPES.index(granted) < SCOPES.index(scope):
        raise HTTPException(403, f"this token has the {granted} scope; this route needs {scope}")


Creds = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def require_read(request: Request, hub: Parts, creds: Creds) -> None:
    """Any valid token, or none where reads are open (loopback only), or a model's download grant.

    A read may carry its token as ``?token=`` instead of the header: an ``<img>`` (the web app's
    thumbnails and frame scrubber) sends no header. Only reads: operate and admin want the header.
    """
    if creds is None and has_download_grant(request, hub):
        return
    if creds is None and (query_token := request.query_params.get("token")):
        creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=query_token)
    if reads_protected(hub) or creds is not None:
        _require("read", hub, creds)


def has_download_grant(request: Request, hub: ApiParts) -> bool:
    """The request names a model and carries the grant the hub put in that model's download URL."""
    grant = request.query_params.get("grant")
    name, version = request.path_params.get("name"), request.path_params.get("version")
    if not grant or not isinstance(name, str) or not isinstance(version, str):
        return False
    return hmac.compare_digest(grant.encode(), download_grant(hub.token, name, version).encode())


def require_read_always(hub: Parts, creds: Creds) -> None:
    """A read token even on loopback: the data itself (dataset and session exports)."""
    _require("read", hub, creds)


def require_token(hub: Parts, creds: Creds) -> None:
    """The operate scope: commands, recordings, jobs, datasets, trims."""
    _require("operate", hub, creds)


def require_admin(hub: Parts, creds: Creds) -> None:
    """The admin scope: models, deployments, deletions."""
    _require("admin", hub, creds)


READ = [Depends(require_read_always)]


def require_operator(hub: ApiParts, token: str | None) -> bool:
    """For routes without headers (WebSockets, EventSource), where the token comes as ``?token=``."""
    return scope_of(hub, token) in ("operate", "admin")


def require_reader(hub: ApiParts, token: str | None) -> bool:
    return scope_of(hub, token) is not None


AUTH = [Depends(require_token)]
ADMIN = [Depends(require_admin)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong token"},
    403: {"model": Problem, "description": "the token's scope is not enough"},
    404: {"model": Problem, "description": "not found"},
    409: {"model": Problem, "description": "conflicts with the current state"},
    422: {"model": Problem, "description": "invalid input"},
}


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"not found: {what}")
