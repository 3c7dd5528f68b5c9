"""Who is reading: an organization by its API token, as a bearer header (API clients)
or as the inbox page's session cookie (the browser; ``EventSource`` cannot send headers).

Only the read-only preview endpoints accept the cookie: a state-changing endpoint that
trusted a cookie would need CSRF protection, and none needs to be called from the page.

The token is resolved through the process's token cache (``organizations/cache.py``) and
without a request session, so a poll answered from the preview cache touches no database.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from omni_service.errors import Unauthorized
from omni_service.organizations.dependencies import bearer_token, organization_id_of_token
from service_kit.pages import SessionCookies
from service_kit.security import BEARER

COOKIES = SessionCookies("omni")


async def reading_organization_id(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> int:
    token = COOKIES.token(request)
    if authorization is not None or token is None:
        organization_id = await organization_id_of_token(request, bearer_token(authorization))
        if organization_id is None:
            raise Unauthorized("invalid bearer token")
        return organization_id
    organization_id = await organization_id_of_token(request, token)
    if organization_id is None:
        raise Unauthorized("invalid session; sign in again")
    return organization_id


ReadingOrganizationId = Annotated[int, Depends(reading_organization_id)]
