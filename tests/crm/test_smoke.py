from __future__ import annotations

import httpx

from tests.crm.conftest import TeamHandle, enable_parity


async def test_bot_deal_create_and_read(
    client: httpx.AsyncClient, team: TeamHandle, enqueued
) -> None:
    await enable_parity(client, team)
    contact = await client.post(
        "/api/v3.1/contacts",
        json={"first_name": "Budi", "phone": "+62 812-3456-7890"},
        headers=team.auth,
    )
    assert contact.status_code == 201, contact.text
    response = await client.post(
        "/api/v3.1/deals",
        json={
            "name": "Deal from bot",
            "channel_integration_room_id": "room-1",
            "crm_lead_ids": [contact.json()["id"]],
            "creator_flag": "BOT",
            "size": 1500000,
        },
        headers=team.auth,
    )
    assert response.status_code == 201, response.text
    deal = response.json()
    print(deal)
    assert deal["creator_name"] == "Bot"
    got = await client.get(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)
    assert got.json() == deal
    print(enqueued.items)
