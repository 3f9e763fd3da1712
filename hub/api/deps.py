"""What every router shares: the collaborators (as a FastAPI dependency), the token check, the
error responses documented on each route, and the 404 helper."""

import hmac
from typing import Annotated, Any

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


def require_token(
    hub: Parts, creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> None:
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), hub.token.encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


AUTH = [Depends(require_token)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong token"},
    404: {"model": Problem, "description": "not found"},
    409: {"model": Problem, "description": "conflicts with the current state"},
    422: {"model": Problem, "description": "invalid input"},
}


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"not found: {what}")
