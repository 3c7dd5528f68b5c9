"""The parity flag's cache in a real Redis: filled on a miss, served on a hit, written
after a flag change commits (and only then), and never a reason for a request to fail."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.settings import Settings
from crm_service.teams.features import BOT_AI_CREATION_PARITY, RedisFlagCache, is_enabled
from crm_service.teams.models import TeamFeature
from crm_service.teams.service import team_service
from tests.crm.conftest import ADMIN_KEY, TeamHandle, crm_settings
from tests.support.processes import RedisServer, free_port

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def settings(crm_database_url: str, redis_server: RedisServer) -> Settings:
    """The app under test caches flags in the private Redis."""
    return crm_settings(crm_database_url, redis_url=redis_server.url())


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url())
    yield client
    await client.aclose()


@pytest.fixture
async def cache(redis_server: RedisServer) -> AsyncIterator[RedisFlagCache]:
    flags = RedisFlagCache(redis_server.url())
    yield flags
    await flags.close()


def key(team_id: int) -> str:
    return f"crm:feature:{team_id}:{BOT_AI_CREATION_PARITY}"


async def set_flag_in_database(sessions: Sessions, team_id: int, enabled: bool) -> None:
    async with sessions() as session:
        session.add(TeamFeature(team_id=team_id, name=BOT_AI_CREATION_PARITY, enabled=enabled))
        await session.commit()


async def test_a_flag_change_overwrites_the_shared_cache_after_it_commits(
    client: httpx.AsyncClient, team: TeamHandle, redis: Redis
) -> None:
    path = f"/admin/teams/{team.id}/features/{BOT_AI_CREATION_PARITY}"
    headers = {"X-Admin-Key": ADMIN_KEY}

    await client.put(path, json={"enabled": True}, headers=headers)
    after_on = await redis.get(key(team.id))
    await client.put(path, json={"enabled": False}, headers=headers)
    after_off = await redis.get(key(team.id))

    assert (after_on, after_off) == (b"1", b"0")


async def test_a_rolled_back_flag_change_leaves_the_cache_alone(
    team: TeamHandle, sessions: Sessions, cache: RedisFlagCache, redis: Redis
) -> None:
    async with sessions() as session:
        await team_service.set_feature(session, cache, team.id, BOT_AI_CREATION_PARITY, True)
        await session.rollback()

    assert await redis.get(key(team.id)) is None


async def test_a_cached_flag_is_served_without_reading_the_database(
    team: TeamHandle, sessions: Sessions, cache: RedisFlagCache
) -> None:
    await cache.set(team.id, BOT_AI_CREATION_PARITY, True)  # the database says off (no row)

    async with sessions() as session:
        assert await is_enabled(session, cache, team.id, BOT_AI_CREATION_PARITY) is True


async def test_a_miss_reads_the_database_and_fills_the_cache_with_a_ttl(
    team: TeamHandle, sessions: Sessions, cache: RedisFlagCache, redis: Redis
) -> None:
    await set_flag_in_database(sessions, team.id, True)

    async with sessions() as session:
        enabled = await is_enabled(session, cache, team.id, BOT_AI_CREATION_PARITY)

    assert enabled is True
    assert await redis.get(key(team.id)) == b"1"
    assert 0 < await redis.ttl(key(team.id)) <= 300


async def test_an_unreachable_redis_falls_back_to_the_database(
    team: TeamHandle, sessions: Sessions
) -> None:
    await set_flag_in_database(sessions, team.id, True)
    unreachable = RedisFlagCache(f"redis://127.0.0.1:{free_port()}/0")
    try:
        async with sessions() as session:
            assert await is_enabled(session, unreachable, team.id, BOT_AI_CREATION_PARITY)
    finally:
        await unreachable.close()
