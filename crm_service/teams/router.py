from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Security, status

from crm_service.database import MAX_INTEGER_ID
from crm_service.dependencies import SessionDep, SettingsDep
from crm_service.teams.auth import AdminOnly
from crm_service.teams.models import Team
from crm_service.teams.schemas import (
    FeatureIn,
    FeatureOut,
    OmnichannelLinkIn,
    OmnichannelLinkOut,
    TeamCreate,
    TeamCreated,
    TokenIssued,
    TokenRequest,
)
from crm_service.teams.service import team_service
from service_kit.security import CRM_API_KEY

admin_router = APIRouter(prefix="/admin/teams", tags=["admin"], dependencies=[AdminOnly])
token_router = APIRouter(prefix="/api/v3.1/teams", tags=["auth"])

TeamId = Annotated[int, Path(gt=0, le=MAX_INTEGER_ID)]


@admin_router.post("", status_code=status.HTTP_201_CREATED)
async def create_team(body: TeamCreate, session: SessionDep, settings: SettingsDep) -> TeamCreated:
    """Create a team (a tenant); `crm-parity teams create` does the same from a shell.

    The team starts with its default pipeline, "Sales" (New, Qualified, Proposal, Won,
    Lost), and answers 201 with its API key and a first access token (issued to the
    `sso_id` "admin", valid `expires_in` seconds). The API key is shown only here: it is
    stored as a digest and cannot be read back. An `external_company_id` that already has
    a team is 409.
    """
    team, api_key, access_token = await team_service.create(
        session,
        name=body.name,
        external_company_id=body.external_company_id,
        token_ttl=settings.token_ttl_seconds,
    )
    return TeamCreated(
        id=team.id,
        name=team.name,
        external_company_id=team.external_company_id,
        api_key=api_key,
        access_token=access_token,
        expires_in=settings.token_ttl_seconds,
    )


@admin_router.put("/{team_id}/omnichannel")
async def link_omnichannel(
    team_id: TeamId, body: OmnichannelLinkIn, session: SessionDep
) -> OmnichannelLinkOut:
    """Create or replace the team's link to Omni: where its webhooks go (`base_url`), how
    room links in timeline notes are built (`public_url`), the secret events are signed
    with, and the token for Omni's message-history API.

    Safe to repeat: the same secret again starts no rotation. A new `webhook_secret` does
    not cut the old one off: events are signed with both during the rotation grace period
    (`CRM_SECRET_ROTATION_GRACE_SECONDS`), so Omni can switch whenever it likes. The
    answer never echoes the secret or the token. An unknown team is 404.
    """
    link = await team_service.link_omnichannel(session, team_id, body)
    return OmnichannelLinkOut(
        team_id=link.team_id,
        base_url=link.base_url,
        public_url=link.public_url,
        secret_rotated_at=link.secret_rotated_at,
        updated_at=link.updated_at,
    )


@admin_router.put("/{team_id}/features/{flag}")
async def set_feature(
    team_id: TeamId, flag: str, body: FeatureIn, session: SessionDep, request: Request
) -> FeatureOut:
    """Turn a feature flag of the team on or off (idempotent).

    The only flag today is `bot_ai_creation_parity`: with it on, deals and tickets a bot
    or an AI agent creates in a chat room emit webhook events to Omni and get a
    chat-history note on their timeline. The API reads the flag with every token, so it
    sees the change at once; the shared flag cache the delivery worker reads is updated
    once the change commits. An unknown team or flag is 404 (the message lists the known
    flags).
    """
    feature = await team_service.set_feature(
        session, request.app.state.flag_cache, team_id, flag, body.enabled
    )
    return FeatureOut(
        team_id=team_id, flag=feature.name, enabled=feature.enabled, updated_at=feature.updated_at
    )


async def api_key_team(
    session: SessionDep, x_crm_api_key: Annotated[str | None, Security(CRM_API_KEY)] = None
) -> Team:
    """A dependency, so a missing or wrong key is 401 before the body is even validated."""
    return await team_service.by_api_key(session, x_crm_api_key)


@token_router.post("/company_token")
async def refresh_company_token(
    body: TokenRequest,
    session: SessionDep,
    settings: SettingsDep,
    team: Annotated[Team, Depends(api_key_team)],
) -> TokenIssued:
    """Issue a new company access token for the team whose `X-Crm-Api-Key` this is.

    What the chatbot calls when the API answers 401 for an expired token. Each call issues
    a new token, recorded with the `sso_id` given; earlier tokens keep working until they
    expire. A missing or wrong API key is 401, checked before the body.
    """
    token = await team_service.issue_token(
        session, team, sso_id=body.sso_id, ttl_seconds=settings.token_ttl_seconds
    )
    return TokenIssued(access_token=token, expires_in=settings.token_ttl_seconds)
