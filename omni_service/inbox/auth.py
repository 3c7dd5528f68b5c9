"""Who is reading: an organization by its API token, as a bearer header (API clients)
or as the inbox page's session cookie (the browser; ``EventSource`` cannot send headers).

Only the read-only preview endpoints accept the cookie: a state-changing endpoint that
trusted a cookie would need CSRF protection, and none needs to be called from the page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from omni_service.database import SessionDep
from omni_service.errors import Unauthorized
from omni_service.organizations import service
from omni_service.organizations.dependencies import current_organization
from omni_service.organizations.models import Organization
from service_kit.pages import SessionCookies
from service_kit.security import BEARER

COOKIES = SessionCookies("omni")


async def reading_organization(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Organization:
    token = COOKIES.token(request)
    if authorization is not None or token is None:
        return await current_organization(session, authorization)
    organization = await service.by_token(session, token)
    if organization is None:
        raise Unauthorized("invalid session; sign in again")
    return organization


ReadingOrganization = Annotated[Organization, Depends(reading_organization)]
