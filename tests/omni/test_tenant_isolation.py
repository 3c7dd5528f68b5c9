"""Organizations only see and change their own rooms, on every endpoint (DESIGN.md §10)."""

from __future__ import annotations

import httpx

from shared_contracts.events import EventType
from tests.omni.factories import (
    OrgHandle,
    deal,
    deal_deleted,
    preview,
    send,
    signed_request,
)


async def test_event_for_another_company_signed_with_our_secret_is_refused(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=other_org.company_id), [org.secret]
    )

    response = await client.post("/webhooks/crm", content=body, headers=headers)

    assert response.status_code == 401
    assert (await preview(client, other_org))["deal"] is None


async def test_same_record_id_in_two_organizations_is_two_records(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await send(client, other_org, EventType.DEAL_CREATE, deal(1, company_id=other_org.company_id))

    await send(
        client,
        other_org,
        EventType.DEAL_DELETE,
        deal_deleted(1, company_id=other_org.company_id, version=2),
    )

    assert (await preview(client, org))["deal"]["id"] == 1
    assert (await preview(client, other_org))["deal"] is None


async def test_messages_posted_by_one_organization_stay_in_its_room(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    message = {"sender": "Ana", "sender_type": "customer", "text": "mine"}
    await client.post("/api/v1/rooms/room-1/messages", json=message, headers=org.auth)
    await client.post(
        "/api/v1/rooms/room-1/messages", json={**message, "text": "theirs"}, headers=other_org.auth
    )

    response = await client.get("/api/open/v1/messages/rooms/room-1", headers=org.auth)

    assert [item["text"] for item in response.json()["items"]] == ["mine"]
    assert response.json()["total"] == 1


async def test_organization_token_does_not_open_the_admin_api(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.put(
        f"/admin/organizations/{org.id}/webhook_secret",
        json={"webhook_secret": org.secret},
        headers=org.auth,
    )

    assert response.status_code == 401
