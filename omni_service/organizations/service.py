"""Organizations: creation with a one-time API token, lookup by token or company id,
webhook-secret rotation."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omni_service.errors import Conflict, NotFound
from omni_service.organizations.models import Organization

# Built once at import: the lookups run on every authenticated request and every event,
# and a statement rebuilt per call costs more Python than its round trip.
_BY_TOKEN_HASH = select(Organization).where(Organization.api_token_hash == bindparam("token_hash"))
_ID_BY_TOKEN_HASH = select(Organization.id).where(
    Organization.api_token_hash == bindparam("token_hash")
)
_BY_COMPANY_ID = select(Organization).where(Organization.company_id == bindparam("company_id"))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(
    session: AsyncSession, *, name: str, company_id: str, webhook_secret: str
) -> tuple[Organization, str]:
    """A new organization and its API token (returned here only, stored hashed)."""
    token = secrets.token_urlsafe(32)
    organization = Organization(
        name=name,
        company_id=company_id,
        webhook_secret=webhook_secret,
        api_token_hash=hash_token(token),
    )
    # The unique index decides a race between two creates of one company; the savepoint
    # keeps the request's transaction usable for the 409.
    try:
        async with session.begin_nested():
            session.add(organization)
            await session.flush()
    except IntegrityError as error:
        raise Conflict(f"an organization for company_id {company_id!r} already exists") from error
    return organization, token


async def by_token(session: AsyncSession, token: str) -> Organization | None:
    return await session.scalar(_BY_TOKEN_HASH, {"token_hash": hash_token(token)})


async def id_by_token_hash(session: AsyncSession, token_hash: str) -> int | None:
    return await session.scalar(_ID_BY_TOKEN_HASH, {"token_hash": token_hash})


async def by_company_id(session: AsyncSession, company_id: str) -> Organization | None:
    return await session.scalar(_BY_COMPANY_ID, {"company_id": company_id})


async def rotate_webhook_secret(
    session: AsyncSession, organization_id: int, new_secret: str, *, now: datetime
) -> Organization:
    """Make ``new_secret`` current; the old one keeps verifying for the grace period."""
    organization = await session.get(Organization, organization_id, with_for_update=True)
    if organization is None:
        raise NotFound("organization not found")
    if new_secret != organization.webhook_secret:
        organization.previous_webhook_secret = organization.webhook_secret
        organization.webhook_secret = new_secret
        organization.secret_rotated_at = now
    return organization
