"""Text PostgreSQL cannot store and integers past the columns never reach Omni's
database: a 422 naming the field on the API, a 400 from the webhook receiver (issue 8)."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared_contracts.events import EventType
from tests.omni.factories import ADMIN_KEY, OrgHandle, deal, send


async def message_count(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text("SELECT count(*) FROM messages")) or 0)
    finally:
        await engine.dispose()


async def test_a_nul_in_a_message_sender_is_422_and_stores_nothing(
    client: httpx.AsyncClient, org: OrgHandle, omni_database_url: str
) -> None:
    response = await client.post(
        "/api/v1/rooms/room-1/messages",
        json={"sender": "a\x00b", "sender_type": "customer", "text": "hi"},
        headers=org.auth,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sender"]
    assert await message_count(omni_database_url) == 0


async def test_a_lone_surrogate_in_a_message_text_is_422(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.post(
        "/api/v1/rooms/room-1/messages",
        content=b'{"sender": "s", "sender_type": "customer", "text": "x\\uDC00"}',
        headers={**org.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "text"]


async def test_a_nul_in_a_room_path_is_422_naming_the_parameter(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.get("/api/v1/rooms/room%00x/crm_preview", headers=org.auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "room_id"]


async def test_a_history_page_past_the_bound_is_422(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.get(
        "/api/open/v1/messages/rooms/room-1?offset=9223372036854775807", headers=org.auth
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]


async def test_a_nul_in_an_admin_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/admin/organizations",
        json={"name": "Org", "company_id": "c\x00", "webhook_secret": "whsec_x"},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "company_id"]


async def test_a_signed_event_with_a_nul_is_400_and_applies_nothing(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await send(
        client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id, name="a\x00b")
    )
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    preview = await client.get("/api/v1/rooms/room-1/crm_preview", headers=org.auth)
    assert preview.json()["deal"] is None


async def test_an_unsigned_event_with_a_nul_is_still_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/webhooks/crm",
        content=b'{"data": {"company_id": "a\\u0000"}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401


async def test_a_signed_event_with_a_version_past_32_bits_is_422(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    data = deal(1, company_id=org.company_id).model_copy(update={"version": 2**31})
    response = await send(client, org, EventType.DEAL_CREATE, data)
    assert response.status_code == 422
