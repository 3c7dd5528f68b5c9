from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_service.main import create_app
from crm_service.settings import Settings

ADMIN_KEY = "test-admin-key"
PUBLIC_URL = "https://crm.example.test"


@dataclass
class EnqueueRecorder:
    """Stands in for the broker in API tests: records what would have been enqueued."""

    items: list[tuple[int, str]] = field(default_factory=list)

    def __call__(self, items: list[tuple[int, str]]) -> None:
        self.items.extend(items)


@dataclass
class TeamHandle:
    id: int
    external_company_id: str
    api_key: str
    access_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def crm_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_key": ADMIN_KEY,
        "public_url": PUBLIC_URL,
        "redis_url": None,
        "celery_broker_url": "memory://",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def enqueued() -> EnqueueRecorder:
    return EnqueueRecorder()


@pytest.fixture
def settings(crm_database_url: str) -> Settings:
    return crm_settings(crm_database_url)


@pytest.fixture
async def crm_app(settings: Settings, enqueued: EnqueueRecorder) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    app.state.enqueue_outbox = enqueued
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(crm_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=crm_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
        yield client


async def create_team(
    client: httpx.AsyncClient, external_company_id: str = "company-1", name: str = "Acme"
) -> TeamHandle:
    response = await client.post(
        "/admin/teams",
        json={"name": name, "external_company_id": external_company_id},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return TeamHandle(
        id=body["id"],
        external_company_id=external_company_id,
        api_key=body["api_key"],
        access_token=body["access_token"],
    )


async def enable_parity(client: httpx.AsyncClient, team: TeamHandle, enabled: bool = True) -> None:
    response = await client.put(
        f"/admin/teams/{team.id}/features/bot_ai_creation_parity",
        json={"enabled": enabled},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def team(client: httpx.AsyncClient) -> TeamHandle:
    return await create_team(client)


@pytest.fixture
async def other_team(client: httpx.AsyncClient) -> TeamHandle:
    return await create_team(client, external_company_id="company-2", name="Globex")
