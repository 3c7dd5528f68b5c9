"""The parity flag gates every delivery attempt (RFC §4 rollback): read through the
shared Redis cache the API writes each flag change to, so turning the flag off stops
pending and retrying deliveries at their next attempt, and a replay after turning it on
again sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.events.delivery import FLAG_OFF_ERROR, Outcome, deliver
from crm_service.events.models import OutboxEvent
from crm_service.settings import Settings
from crm_service.teams.features import BOT_AI_CREATION_PARITY, FlagCache
from tests.crm.conftest import ADMIN_KEY, crm_settings, enable_parity
from tests.crm.events.conftest import (
    POLICY,
    WEBHOOK_URL,
    LinkedTeam,
    attempts_of,
    deliveries_counted,
    make_due,
    outbox_row,
)
from tests.support.processes import RedisServer

Sessions = async_sessionmaker[AsyncSession]
ADMIN = {"X-Admin-Key": ADMIN_KEY}


@pytest.fixture
def settings(crm_database_url: str, redis_server: RedisServer) -> Settings:
    """REDIS_URL set: the app and the worker's ``flags`` share the private Redis."""
    return crm_settings(crm_database_url, redis_url=redis_server.url())


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url())
    yield client
    await client.aclose()


async def test_turning_the_flag_off_stops_a_retrying_delivery_before_its_next_send(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
    webhook_event: OutboxEvent,
) -> None:
    route = omni.post(WEBHOOK_URL).respond(503)
    first = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    await enable_parity(client, linked_team.handle, enabled=False)
    await make_due(sessions, webhook_event.id)
    second = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert (first.outcome, second.outcome) == (Outcome.RETRY, Outcome.FLAG_OFF)
    assert route.call_count == 1
    row = await outbox_row(sessions, webhook_event.id)
    assert (row.status, row.last_error) == ("failed", FLAG_OFF_ERROR)


async def test_a_delivery_stopped_by_the_flag_shows_why_in_the_delivery_log(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    linked_team: LinkedTeam,
    webhook_event: OutboxEvent,
) -> None:
    await enable_parity(client, linked_team.handle, enabled=False)

    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    entry = (await client.get(f"/admin/deliveries/{webhook_event.id}", headers=ADMIN)).json()
    assert (entry["status"], entry["last_error"]) == ("failed", FLAG_OFF_ERROR)
    [attempt] = entry["attempts"]
    assert (attempt["status_code"], attempt["error"]) == (None, FLAG_OFF_ERROR)


async def test_a_delivery_stopped_by_the_flag_is_counted_as_skipped_flag_off(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    linked_team: LinkedTeam,
    webhook_event: OutboxEvent,
) -> None:
    await enable_parity(client, linked_team.handle, enabled=False)
    before = deliveries_counted("skipped_flag_off")

    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert deliveries_counted("skipped_flag_off") == before + 1


async def test_the_flag_is_read_from_the_shared_cache(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
    webhook_event: OutboxEvent,
    redis: Redis,
) -> None:
    # The database still says on: only a worker reading the shared cache sees "off".
    await redis.set(f"crm:feature:{linked_team.id}:{BOT_AI_CREATION_PARITY}", "0")
    route = omni.post(WEBHOOK_URL).respond(200)

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert (result.outcome, route.call_count) == (Outcome.FLAG_OFF, 0)


async def test_a_replay_after_turning_the_flag_on_again_delivers_the_event(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
    webhook_event: OutboxEvent,
) -> None:
    route = omni.post(WEBHOOK_URL).respond(200)
    await enable_parity(client, linked_team.handle, enabled=False)
    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    await enable_parity(client, linked_team.handle, enabled=True)
    replay = await client.post(f"/admin/deliveries/{webhook_event.id}/replay", headers=ADMIN)
    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert replay.status_code == 202, replay.text
    assert (result.outcome, route.call_count) == (Outcome.DELIVERED, 1)
    assert (await outbox_row(sessions, webhook_event.id)).status == "delivered"
    assert [a.status_code for a in await attempts_of(sessions, webhook_event.id)] == [None, 200]
