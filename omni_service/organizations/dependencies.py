"""Who is calling: the operator (``X-Admin-Key``) or an organization (bearer token)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Security
from fastapi.security import HTTPAuthorizationCredentials

from omni_service.database import SessionDep
from omni_service.dependencies import SettingsDep
from omni_service.errors import Unauthorized
from omni_service.organizations import service
from omni_service.organizations.models import Organization
from service_kit.security import ADMIN_KEY, BEARER


async def require_admin(
    settings: SettingsDep, x_admin_key: Annotated[str | None, Security(ADMIN_KEY)] = None
) -> None:
    # ``async`` with no I/O: a plain ``def`` would cost a threadpool hop per request.
    # Constant-time, so the key cannot be guessed byte by byte from response times.
    if x_admin_key is None or not secrets.compare_digest(
        x_admin_key.encode(), settings.admin_key.encode()
    ):
        raise Unauthorized("missing or wrong X-Admin-Key")


async def current_organization(
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Organization:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    organization = await service.by_token(session, token.strip())
    if organization is None:
        raise Unauthorized("invalid bearer token")
    return organization


AdminDep = Depends(require_admin)
CurrentOrganization = Annotated[Organization, Depends(current_organization)]
