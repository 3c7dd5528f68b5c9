"""Who is calling: the operator (``X-Admin-Key``) or an organization (bearer token)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from omni_service.dependencies import SettingsDep
from omni_service.errors import Unauthorized
from omni_service.organizations import service
from omni_service.organizations.cache import OrganizationCache
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


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


async def current_organization_id(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> int:
    """The id of the bearer token's organization, through the process's token cache (as
    the preview poll reads it): the chat routes need nothing else of the organization."""
    organization_id = await organization_id_of_token(request, bearer_token(authorization))
    if organization_id is None:
        raise Unauthorized("invalid bearer token")
    return organization_id


async def organization_id_of_token(request: Request, token: str) -> int | None:
    """The id of the token's organization, from the process's cache (bounded staleness,
    see ``organizations/cache.py``) or else one read in a short transaction of its own."""
    cache: OrganizationCache = request.app.state.organization_cache
    token_hash = service.hash_token(token)
    organization_id = cache.tokens.get(token_hash)
    if organization_id is not None:
        return organization_id
    async with request.app.state.session_factory() as session:
        organization_id = await service.id_by_token_hash(session, token_hash)
    if organization_id is not None:
        cache.tokens.put(token_hash, organization_id)
    return organization_id


AdminDep = Depends(require_admin)
CurrentOrganizationId = Annotated[int, Depends(current_organization_id)]
