"""Latest-wins previews: every arrival order ends where in-order delivery ends."""

from __future__ import annotations

from datetime import timedelta

import httpx

from shared_contracts.events import EventType
from tests.omni.factories import (
    T0,
    OrgHandle,
    deal,
    deal_deleted,
    preview,
    send,
    ticket,
    ticket_deleted,
)

LATER = T0 + timedelta(minutes=1)


async def test_create_shows_the_deal_card_with_its_display_fields(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    assert await preview(client, org) == {
        "room_id": "room-1",
        "deal": {
            "id": 1,
            "slug": "deal-1",
            "name": "Deal 1 v1",
            "stage": {"id": 11, "name": "New"},
            "pipeline": {"id": 7, "name": "Sales"},
            "size": 1500.5,
            "status": "open",
            "creator_flag": "bot",
            "creator_name": "Bot",
            "external_url": "https://crm.example.test/deals/1",
            "created_at": "2026-11-27T21:05:29.123456Z",
            "updated_at": "2026-11-27T21:05:30.123456Z",
            "version": 1,
        },
        "ticket": None,
        "cta": {"create_deal": False, "create_ticket": True},
    }


async def test_create_shows_the_ticket_card_with_its_display_fields(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.TICKET_CREATE, ticket(5, company_id=org.company_id))

    assert (await preview(client, org))["ticket"] == {
        "id": 5,
        "unique_ticket_id": "TCK-000005",
        "name": "Ticket 5 v1",
        "description": "Customer cannot log in",
        "status": "open",
        "priority": "high",
        "creator_flag": "agentic_ai",
        "creator_name": "AI",
        "external_url": "https://crm.example.test/tickets/5",
        "created_at": "2026-11-27T21:05:29.123456Z",
        "updated_at": "2026-11-27T21:05:30.123456Z",
        "version": 1,
    }


async def test_newer_version_updates_the_card(client: httpx.AsyncClient, org: OrgHandle) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    response = await send(
        client,
        org,
        EventType.DEAL_UPDATE,
        deal(1, company_id=org.company_id, version=2, name="Renamed", status="won"),
    )

    card = (await preview(client, org))["deal"]
    assert response.json() == {"status": "applied"}
    assert (card["name"], card["status"], card["version"]) == ("Renamed", "won", 2)


async def test_update_with_an_old_version_is_ignored(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await send(client, org, EventType.DEAL_UPDATE, deal(1, company_id=org.company_id, version=3))

    response = await send(
        client, org, EventType.DEAL_UPDATE, deal(1, company_id=org.company_id, version=2)
    )

    assert response.json() == {"status": "ignored"}
    assert (await preview(client, org))["deal"]["version"] == 3


async def test_update_arriving_before_its_create_is_applied(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_UPDATE, deal(1, company_id=org.company_id, version=2))

    late_create = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    assert late_create.json() == {"status": "ignored"}
    assert (await preview(client, org))["deal"]["version"] == 2


async def test_newer_create_replaces_the_room_preview(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    await send(
        client, org, EventType.DEAL_CREATE, deal(2, company_id=org.company_id, created_at=LATER)
    )

    assert (await preview(client, org))["deal"]["id"] == 2


async def test_older_create_arriving_late_changes_nothing(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(
        client, org, EventType.DEAL_CREATE, deal(2, company_id=org.company_id, created_at=LATER)
    )

    response = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    assert response.status_code == 200
    assert (await preview(client, org))["deal"]["id"] == 2


async def test_update_of_a_replaced_record_does_not_take_the_room_back(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await send(
        client, org, EventType.DEAL_CREATE, deal(2, company_id=org.company_id, created_at=LATER)
    )

    await send(client, org, EventType.DEAL_UPDATE, deal(1, company_id=org.company_id, version=2))

    assert (await preview(client, org))["deal"]["id"] == 2


async def test_same_created_at_is_decided_by_the_higher_id(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(9, company_id=org.company_id))

    await send(client, org, EventType.DEAL_CREATE, deal(8, company_id=org.company_id))

    assert (await preview(client, org))["deal"]["id"] == 9


async def test_delete_returns_the_room_to_its_call_to_action(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    response = await send(
        client, org, EventType.DEAL_DELETE, deal_deleted(1, company_id=org.company_id, version=2)
    )

    body = await preview(client, org)
    assert response.json() == {"status": "applied"}
    assert (body["deal"], body["cta"]["create_deal"]) == (None, True)


async def test_late_update_cannot_resurrect_a_deleted_record(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await send(
        client, org, EventType.DEAL_DELETE, deal_deleted(1, company_id=org.company_id, version=3)
    )

    response = await send(
        client, org, EventType.DEAL_UPDATE, deal(1, company_id=org.company_id, version=2)
    )

    assert response.json() == {"status": "ignored"}
    assert (await preview(client, org))["deal"] is None


async def test_delete_arriving_before_the_create_keeps_the_record_deleted(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(
        client, org, EventType.DEAL_DELETE, deal_deleted(1, company_id=org.company_id, version=2)
    )

    response = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    assert response.json() == {"status": "ignored"}
    assert (await preview(client, org))["deal"] is None


async def test_deleting_the_newest_record_does_not_bring_back_a_replaced_one(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await send(
        client, org, EventType.DEAL_CREATE, deal(2, company_id=org.company_id, created_at=LATER)
    )

    await send(
        client,
        org,
        EventType.DEAL_DELETE,
        deal_deleted(2, company_id=org.company_id, version=2, created_at=LATER),
    )

    assert (await preview(client, org))["deal"] is None


async def test_older_create_arriving_after_the_newest_was_deleted_stays_hidden(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(
        client,
        org,
        EventType.DEAL_DELETE,
        deal_deleted(2, company_id=org.company_id, version=2, created_at=LATER),
    )

    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    assert (await preview(client, org))["deal"] is None


async def test_deleting_a_replaced_record_keeps_the_active_preview(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await send(
        client, org, EventType.DEAL_CREATE, deal(2, company_id=org.company_id, created_at=LATER)
    )

    await send(
        client, org, EventType.DEAL_DELETE, deal_deleted(1, company_id=org.company_id, version=2)
    )

    assert (await preview(client, org))["deal"]["id"] == 2


async def test_deal_and_ticket_previews_of_a_room_are_independent(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await send(client, org, EventType.TICKET_CREATE, ticket(1, company_id=org.company_id))

    await send(
        client,
        org,
        EventType.TICKET_DELETE,
        ticket_deleted(1, company_id=org.company_id, version=2),
    )

    body = await preview(client, org)
    assert (body["deal"]["id"], body["ticket"]) == (1, None)
    assert body["cta"] == {"create_deal": False, "create_ticket": True}


async def test_previews_of_different_rooms_are_independent(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    await send(
        client,
        org,
        EventType.DEAL_CREATE,
        deal(2, company_id=org.company_id, room_id="room-2", created_at=LATER),
    )

    assert (await preview(client, org, "room-1"))["deal"]["id"] == 1
    assert (await preview(client, org, "room-2"))["deal"]["id"] == 2


async def test_event_naming_another_room_for_a_known_record_is_ignored(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    response = await send(
        client,
        org,
        EventType.DEAL_UPDATE,
        deal(1, company_id=org.company_id, room_id="room-2", version=2),
    )

    assert response.json() == {"status": "ignored"}
    assert (await preview(client, org, "room-1"))["deal"]["version"] == 1
    assert (await preview(client, org, "room-2"))["deal"] is None
