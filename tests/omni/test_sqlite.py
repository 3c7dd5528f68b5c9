"""The embedded mode: the same service on a migrated SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from omni_service.main import create_app
from shared_contracts.events import EventType
from tests.omni.factories import (
    T0,
    OrgHandle,
    create_organization,
    deal,
    omni_settings,
    preview,
    send,
)
from tests.support.databases import migrate


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'omni.db'}"
    migrate("omni", url)
    return url


@pytest.fixture
async def sqlite_client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(omni_settings(sqlite_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://omni.test") as client:
            yield client


@pytest.fixture
async def sqlite_org(sqlite_client: httpx.AsyncClient) -> OrgHandle:
    return await create_organization(sqlite_client, "company-a")


async def test_sqlite_receives_and_shows_the_newest_deal(
    sqlite_client: httpx.AsyncClient, sqlite_org: OrgHandle
) -> None:
    newer = deal(2, company_id=sqlite_org.company_id, created_at=T0 + timedelta(minutes=1))
    await send(sqlite_client, sqlite_org, EventType.DEAL_CREATE, newer)

    late_older = await send(
        sqlite_client, sqlite_org, EventType.DEAL_CREATE, deal(1, company_id=sqlite_org.company_id)
    )

    assert late_older.status_code == 200
    assert (await preview(sqlite_client, sqlite_org))["deal"]["id"] == 2


async def test_sqlite_answers_duplicates_and_304s(
    sqlite_client: httpx.AsyncClient, sqlite_org: OrgHandle
) -> None:
    data = deal(1, company_id=sqlite_org.company_id)
    await send(sqlite_client, sqlite_org, EventType.DEAL_CREATE, data, webhook_id="msg_1")
    again = await send(sqlite_client, sqlite_org, EventType.DEAL_CREATE, data, webhook_id="msg_1")
    url = "/api/v1/rooms/room-1/crm_preview"
    etag = (await sqlite_client.get(url, headers=sqlite_org.auth)).headers["etag"]

    cached = await sqlite_client.get(url, headers={**sqlite_org.auth, "If-None-Match": etag})

    assert again.json() == {"status": "duplicate"}
    assert cached.status_code == 304


async def test_sqlite_serialises_concurrent_creates_of_one_room(
    sqlite_client: httpx.AsyncClient, sqlite_org: OrgHandle
) -> None:
    creates = [
        send(
            sqlite_client,
            sqlite_org,
            EventType.DEAL_CREATE,
            deal(
                record, company_id=sqlite_org.company_id, created_at=T0 + timedelta(seconds=record)
            ),
        )
        for record in range(8, 0, -1)
    ]

    responses = await asyncio.gather(*creates)

    assert {response.status_code for response in responses} == {200}
    assert (await preview(sqlite_client, sqlite_org))["deal"]["id"] == 8


async def test_sqlite_keeps_message_history(
    sqlite_client: httpx.AsyncClient, sqlite_org: OrgHandle
) -> None:
    for text in ("first", "second"):
        await sqlite_client.post(
            "/api/v1/rooms/room-1/messages",
            json={"sender": "Ana", "sender_type": "customer", "text": text},
            headers=sqlite_org.auth,
        )

    response = await sqlite_client.get(
        "/api/open/v1/messages/rooms/room-1", headers=sqlite_org.auth
    )

    assert [item["text"] for item in response.json()["items"]] == ["second", "first"]
