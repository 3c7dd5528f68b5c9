"""Teams: creation (with the default pipeline), tokens, the Omnichannel link, flags."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.database import on_commit, utcnow
from crm_service.errors import Conflict, NotFound, Unauthorized
from crm_service.pipelines.models import DEFAULT_PIPELINE_NAME, DEFAULT_STAGES, Pipeline, Stage
from crm_service.teams.auth import digest, new_secret
from crm_service.teams.features import KNOWN_FEATURES, FlagCache
from crm_service.teams.models import CompanyToken, OmnichannelLink, Team, TeamFeature
from crm_service.teams.schemas import OmnichannelLinkIn


class TeamService:
    async def create(
        self, session: AsyncSession, *, name: str, external_company_id: str, token_ttl: int
    ) -> tuple[Team, str, str]:
        """A new team with its API key, a first access token and the default pipeline."""
        api_key = new_secret("crm_key")
        team = Team(
            name=name, external_company_id=external_company_id, api_key_hash=digest(api_key)
        )
        session.add(team)
        try:
            await session.flush()
        except IntegrityError as error:
            raise Conflict(
                f"a team with external_company_id {external_company_id!r} already exists"
            ) from error
        pipeline = Pipeline(
            team_id=team.id,
            name=DEFAULT_PIPELINE_NAME,
            is_default=True,
            stages=[
                Stage(name=stage, position=index) for index, stage in enumerate(DEFAULT_STAGES)
            ],
        )
        session.add(pipeline)
        access_token = await self.issue_token(session, team, sso_id="admin", ttl_seconds=token_ttl)
        return team, api_key, access_token

    async def issue_token(
        self, session: AsyncSession, team: Team, *, sso_id: str, ttl_seconds: int
    ) -> str:
        token = new_secret("crm_tok")
        session.add(
            CompanyToken(
                team_id=team.id,
                token_hash=digest(token),
                sso_id=sso_id,
                expires_at=utcnow() + timedelta(seconds=ttl_seconds),
            )
        )
        await session.flush()
        return token

    async def by_api_key(self, session: AsyncSession, api_key: str | None) -> Team:
        if not api_key:
            raise Unauthorized("missing X-Crm-Api-Key header")
        team = await session.scalar(select(Team).where(Team.api_key_hash == digest(api_key)))
        if team is None:
            raise Unauthorized("invalid X-Crm-Api-Key")
        return team

    async def get(self, session: AsyncSession, team_id: int) -> Team:
        team = await session.get(Team, team_id)
        if team is None:
            raise NotFound(f"team {team_id} not found")
        return team

    async def link_omnichannel(
        self, session: AsyncSession, team_id: int, link_in: OmnichannelLinkIn
    ) -> OmnichannelLink:
        """Create or replace the link. A new signing secret keeps the previous one signing
        too for a grace period, so the receiver can switch whenever it likes."""
        await self.get(session, team_id)
        link = await session.get(OmnichannelLink, team_id)
        base_url = str(link_in.base_url).rstrip("/")
        public_url = str(link_in.public_url).rstrip("/")
        if link is None:
            link = OmnichannelLink(
                team_id=team_id,
                base_url=base_url,
                public_url=public_url,
                webhook_secret=link_in.webhook_secret,
                api_token=link_in.api_token,
            )
            session.add(link)
        else:
            if link.webhook_secret != link_in.webhook_secret:
                link.previous_webhook_secret = link.webhook_secret
                link.secret_rotated_at = utcnow()
            link.base_url = base_url
            link.public_url = public_url
            link.webhook_secret = link_in.webhook_secret
            link.api_token = link_in.api_token
            link.updated_at = utcnow()
        await session.flush()
        return link

    async def set_feature(
        self, session: AsyncSession, cache: FlagCache, team_id: int, flag: str, enabled: bool
    ) -> TeamFeature:
        if flag not in KNOWN_FEATURES:
            raise NotFound(
                f"unknown feature flag {flag!r}; known: {', '.join(sorted(KNOWN_FEATURES))}"
            )
        await self.get(session, team_id)
        feature = await session.get(TeamFeature, (team_id, flag))
        if feature is None:
            feature = TeamFeature(team_id=team_id, name=flag, enabled=enabled)
            session.add(feature)
        else:
            feature.enabled = enabled
            feature.updated_at = utcnow()
        await session.flush()

        async def refresh_cache() -> None:
            await cache.set(team_id, flag, enabled)

        on_commit(session, refresh_cache)
        return feature

    async def next_ticket_number(self, session: AsyncSession, team_id: int) -> int:
        """Per-team ticket counter; the row lock serialises concurrent ticket creates."""
        number = await session.scalar(
            update(Team)
            .where(Team.id == team_id)
            .values(ticket_sequence=Team.ticket_sequence + 1)
            .returning(Team.ticket_sequence)
        )
        assert number is not None
        return int(number)


team_service = TeamService()
