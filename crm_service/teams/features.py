"""Per-team feature flags, read through a cache.

The API reads a team's flags with its token (``teams/auth.py``), so a request sees them
fresh at no extra round trip. The delivery worker reads them before every send through
a cache: Redis when ``REDIS_URL`` is set (shared by every process; a flag change writes
the new value there once it commits), otherwise in the process with a short TTL
(embedded mode). The database stays the source of truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.teams.models import TeamFeature

log = logging.getLogger(__name__)

BOT_AI_CREATION_PARITY = "bot_ai_creation_parity"
KNOWN_FEATURES = frozenset({BOT_AI_CREATION_PARITY})
CACHE_TTL_SECONDS = 300
LOCAL_TTL_SECONDS = 5


class FlagCache(Protocol):
    async def get(self, team_id: int, name: str) -> bool | None: ...
    async def set(self, team_id: int, name: str, enabled: bool) -> None: ...


class LocalFlagCache:
    def __init__(self, ttl_seconds: float = LOCAL_TTL_SECONDS) -> None:
        self._ttl = ttl_seconds
        self._entries: dict[tuple[int, str], tuple[float, bool]] = {}

    async def get(self, team_id: int, name: str) -> bool | None:
        entry = self._entries.get((team_id, name))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    async def set(self, team_id: int, name: str, enabled: bool) -> None:
        self._entries[(team_id, name)] = (time.monotonic() + self._ttl, enabled)


class RedisFlagCache:
    """Key ``crm:feature:{team_id}:{name}`` = "1" / "0". A Redis failure falls back to the
    database (logged), never fails the request."""

    def __init__(self, url: str, ttl_seconds: int = CACHE_TTL_SECONDS) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ttl = ttl_seconds

    @staticmethod
    def _key(team_id: int, name: str) -> str:
        return f"crm:feature:{team_id}:{name}"

    async def get(self, team_id: int, name: str) -> bool | None:
        try:
            value = await self._redis.get(self._key(team_id, name))
        except Exception as error:
            log.warning("feature cache unavailable", extra={"error": repr(error)})
            return None
        return None if value is None else value == b"1"

    async def set(self, team_id: int, name: str, enabled: bool) -> None:
        try:
            await self._redis.set(self._key(team_id, name), "1" if enabled else "0", ex=self._ttl)
        except Exception as error:
            log.warning("feature cache unavailable", extra={"error": repr(error)})

    async def close(self) -> None:
        await self._redis.aclose()


class PrefetchedFlags:
    """One team's flags as read in the request's own transaction (with its token), in
    front of the shared cache: fresher than any cache and no extra round trip. Flags of
    other teams, or ones not prefetched, go to the shared cache as usual."""

    def __init__(self, team_id: int, flags: Mapping[str, bool], shared: FlagCache) -> None:
        self._team_id = team_id
        self._flags = dict(flags)
        self._shared = shared

    async def get(self, team_id: int, name: str) -> bool | None:
        if team_id == self._team_id and name in self._flags:
            return self._flags[name]
        return await self._shared.get(team_id, name)

    async def set(self, team_id: int, name: str, enabled: bool) -> None:
        await self._shared.set(team_id, name, enabled)


def build_flag_cache(redis_url: str | None) -> FlagCache:
    return RedisFlagCache(redis_url) if redis_url else LocalFlagCache()


async def is_enabled(session: AsyncSession, cache: FlagCache, team_id: int, name: str) -> bool:
    cached = await cache.get(team_id, name)
    if cached is not None:
        return cached
    enabled = bool(
        await session.scalar(
            select(TeamFeature.enabled).where(
                TeamFeature.team_id == team_id, TeamFeature.name == name
            )
        )
    )
    await cache.set(team_id, name, enabled)
    return enabled
