"""Fixtures for the events package: the outbox rows the API writes, and the delivery
code run in-process against PostgreSQL with the receiver mocked at the network edge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.database import create_engine, session_factory, utcnow
from crm_service.events.delivery import DeliveryPolicy
from crm_service.events.models import DeliveryAttempt, OutboxEvent
from crm_service.events.outbox import note_jobs_of_creates
from crm_service.metrics import WORKER_REGISTRY as REGISTRY
from crm_service.settings import Settings
from crm_service.teams.features import FlagCache, build_flag_cache
from shared_contracts.signatures import generate_secret
from tests.crm.conftest import ADMIN_KEY, TeamHandle, enable_parity
from tests.support.processes import RedisServer

OMNI_URL = "http://omni.test"
WEBHOOK_URL = f"{OMNI_URL}/webhooks/crm"
POLICY = DeliveryPolicy(
    schedule=(1.0, 2.0, 4.0), timeout_seconds=1.0, rotation_grace=timedelta(hours=1)
)


@dataclass
class LinkedTeam:
    handle: TeamHandle
    webhook_secret: str

    @property
    def id(self) -> int:
        return self.handle.id

    @property
    def auth(self) -> dict[str, str]:
        return self.handle.auth


@pytest.fixture
async def sessions(crm_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test database, as a worker process has them."""
    engine = create_engine(crm_database_url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def omni() -> respx.Router:
    """The receiver's side of the network edge; routes are set per test."""
    return respx.Router(assert_all_called=False)


@pytest.fixture
async def webhooks(omni: respx.Router) -> AsyncIterator[httpx.AsyncClient]:
    """The worker's webhook client, its transport answered by ``omni``."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(omni.async_handler)) as client:
        yield client


async def link(
    client: httpx.AsyncClient, team_id: int, webhook_secret: str, base_url: str = OMNI_URL
) -> None:
    response = await client.put(
        f"/admin/teams/{team_id}/omnichannel",
        json={
            "base_url": base_url,
            "public_url": base_url,
            "webhook_secret": webhook_secret,
            "api_token": "omni-token",
        },
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def linked_team(client: httpx.AsyncClient, team: TeamHandle) -> LinkedTeam:
    """``team`` linked to the mocked receiver, parity flag on."""
    secret = generate_secret()
    await link(client, team.id, secret)
    await enable_parity(client, team)
    return LinkedTeam(team, secret)


async def create_record(
    client: httpx.AsyncClient, team: LinkedTeam | TeamHandle, kind: str = "deals", **fields: Any
) -> dict[str, Any]:
    """A bot record in a room unless ``fields`` say otherwise; 201 expected."""
    body = {
        "name": f"{kind} from the bot",
        "channel_integration_room_id": "room-1",
        "creator_flag": "bot",
        **fields,
    }
    response = await client.post(f"/api/v3.1/{kind}", json=body, headers=team.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def outbox_rows(
    sessions: async_sessionmaker[AsyncSession], *, kind: str | None = None
) -> list[OutboxEvent]:
    async with sessions() as session:
        query = select(OutboxEvent).order_by(OutboxEvent.id)
        if kind is not None:
            query = query.where(OutboxEvent.kind == kind)
        return list(await session.scalars(query))


async def write_note_jobs(
    sessions: async_sessionmaker[AsyncSession], event_ids: list[int]
) -> list[int]:
    """The statement a delivery runs for the events it attempts: the note job of each
    create event among ``event_ids`` that has none yet. Returns the jobs written."""
    async with sessions() as session:
        dialect = session.get_bind().dialect.name
        result = await session.execute(
            note_jobs_of_creates(dialect), {"ids": event_ids, "now": utcnow()}
        )
        jobs = list(result.scalars())
        await session.commit()
        return jobs


async def outbox_row(sessions: async_sessionmaker[AsyncSession], outbox_id: int) -> OutboxEvent:
    async with sessions() as session:
        row = await session.get(OutboxEvent, outbox_id)
        assert row is not None
        return row


async def make_due(sessions: async_sessionmaker[AsyncSession], outbox_id: int) -> None:
    async with sessions() as session:
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.id == outbox_id).values(next_attempt_at=utcnow())
        )
        await session.commit()


def deliveries_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("crm_webhook_deliveries_total", {"outcome": outcome}) or 0.0


async def attempts_of(
    sessions: async_sessionmaker[AsyncSession], outbox_id: int
) -> list[DeliveryAttempt]:
    async with sessions() as session:
        return list(
            await session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.outbox_event_id == outbox_id)
                .order_by(DeliveryAttempt.id)
            )
        )


@pytest.fixture
async def webhook_event(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: async_sessionmaker[AsyncSession],
) -> OutboxEvent:
    """The pending create event of a new bot deal of ``linked_team``."""
    await create_record(client, linked_team)
    [row] = await outbox_rows(sessions, kind="webhook")
    return row


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis for this test alone."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def flags(settings: Settings) -> AsyncIterator[FlagCache]:
    """The worker process's flag cache, built as the worker builds it: the Redis one when
    the test's settings name a Redis (shared with the app under test), else its own."""
    cache = build_flag_cache(settings.redis_url)
    yield cache
    close = getattr(cache, "close", None)
    if close is not None:
        await close()
