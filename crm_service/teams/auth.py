"""Company-token and admin-key authentication.

Tokens and API keys are random 256-bit strings, stored only as SHA-256 digests (a
digest of a high-entropy secret is safe to index and look up); the admin key is
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy import select

from crm_service.database import utcnow
from crm_service.dependencies import SessionDep, SettingsDep
from crm_service.errors import Unauthorized
from crm_service.teams.models import CompanyToken, Team


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the team (tenant) and the identity the token was issued to."""

    team: Team
    sso_id: str


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <company token>'")
    return token.strip()


async def current_caller(
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Caller:
    token = bearer_token(authorization)
    row = (
        await session.execute(
            select(Team, CompanyToken.sso_id, CompanyToken.expires_at)
            .join(CompanyToken, CompanyToken.team_id == Team.id)
            .where(CompanyToken.token_hash == digest(token))
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("invalid company token")
    team, sso_id, expires_at = row
    if _expired(expires_at):
        raise Unauthorized("company token expired; refresh it at /api/v3.1/teams/company_token")
    return Caller(team=team, sso_id=sso_id)


def _expired(expires_at: datetime) -> bool:
    return expires_at <= utcnow()


async def require_admin(
    settings: SettingsDep,
    x_admin_key: Annotated[str | None, Header()] = None,
) -> None:
    if not x_admin_key or not hmac.compare_digest(
        x_admin_key.encode(), settings.admin_key.encode()
    ):
        raise Unauthorized("missing or wrong X-Admin-Key")


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminOnly = Depends(require_admin)
