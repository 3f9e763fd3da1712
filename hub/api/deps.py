"""What every router shares: the collaborators (as a FastAPI dependency), the token check, the
error responses documented on each route, and the 404 helper."""

import hmac
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.models import Problem
from hub.api.parts import ApiParts

bearer = HTTPBearer(auto_error=False, description="the hub's API token")


def parts(request: Request) -> ApiParts:
    """The collaborators :func:`hub.api.app.create_app` was given."""
    found: ApiParts = request.app.state.parts
    return found


Parts = Annotated[ApiParts, Depends(parts)]


Scope = Literal["read", "operate"]


def scope_of(hub: ApiParts, token: str | None) -> Scope | None:
    """What a bearer token may do: ``operate`` (drive, deploy, delete) for the hub's token, ``read``
    without one when reads are open, ``None`` when refused. This is the one place a per-user token
    table with read/operate/admin scopes plugs in."""
    if token and hmac.compare_digest(token.encode(), hub.token.encode()):
        return "operate"
    if not token and not hub.settings.protect_reads:
        return "read"
    return None


def require_token(
    hub: Parts, creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> None:
    if scope_of(hub, creds.credentials if creds else None) != "operate":
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def require_operator(hub: ApiParts, token: str | None) -> bool:
    """For routes without headers (WebSockets, EventSource), where the token comes as ``?token=``."""
    return scope_of(hub, token) == "operate"


def require_reader(hub: ApiParts, token: str | None) -> bool:
    return scope_of(hub, token) is not None


AUTH = [Depends(require_token)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong token"},
    404: {"model": Problem, "description": "not found"},
    409: {"model": Problem, "description": "conflicts with the current state"},
    422: {"model": Problem, "description": "invalid input"},
}


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"not found: {what}")
