"""Tickets: create / get / patch / delete, ``unique_ticket_id`` per team, and the record
rules they share with deals (DESIGN.md §3, §10)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.crm.conftest import (
    PUBLIC_URL,
    TeamHandle,
    create_contact,
    create_ticket,
    fetch_rows,
    row_counts,
)

TICKET_FIELDS = {
    "id",
    "unique_ticket_id",
    "name",
    "description",
    "status",
    "priority",
    "channel_integration_room_id",
    "creator_flag",
    "creator_name",
    "crm_lead_ids",
    "external_url",
    "created_at",
    "updated_at",
    "version",
}


async def patch(
    client: httpx.AsyncClient, team: TeamHandle, ticket_id: int, **fields: object
) -> httpx.Response:
    return await client.patch(f"/api/v3.1/tickets/{ticket_id}", json=fields, headers=team.auth)


async def test_create_answers_201_with_exactly_the_read_fields(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.post(
        "/api/v3.1/tickets",
        json={
            "name": "Refund request",
            "description": "Customer wants a refund",
            "priority": "high",
            "status": "pending",
            "channel_integration_room_id": "room-9",
            "creator_flag": "agentic_ai",
        },
        headers=team.auth,
    )
    assert response.status_code == 201
    ticket = response.json()
    assert set(ticket) == TICKET_FIELDS
    assert (ticket["name"], ticket["description"], ticket["status"], ticket["priority"]) == (
        "Refund request",
        "Customer wants a refund",
        "pending",
        "high",
    )
    assert (ticket["creator_flag"], ticket["creator_name"], ticket["version"]) == (
        "agentic_ai",
        "AI",
        1,
    )
    assert ticket["external_url"] == f"{PUBLIC_URL}/tickets/{ticket['id']}"


async def test_get_answers_what_create_answered(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    contact = await create_contact(client, team)
    ticket = await create_ticket(client, team, creator_flag="bot", contact_id=contact["id"])
    response = await client.get(f"/api/v3.1/tickets/{ticket['id']}", headers=team.auth)
    assert response.status_code == 200
    assert response.json() == ticket


async def test_a_new_ticket_is_open_with_medium_priority(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    ticket = await create_ticket(client, team)
    assert (ticket["status"], ticket["priority"], ticket["description"]) == (
        "open",
        "medium",
        None,
    )


async def test_unique_ticket_ids_count_up_per_team(
    client: httpx.AsyncClient, team: TeamHandle, other_team: TeamHandle
) -> None:
    first = await create_ticket(client, team)
    second = await create_ticket(client, team)
    theirs = await create_ticket(client, other_team)
    assert [first["unique_ticket_id"], second["unique_ticket_id"]] == ["TCK-000001", "TCK-000002"]
    assert theirs["unique_ticket_id"] == "TCK-000001"


async def test_concurrent_creates_get_distinct_consecutive_ticket_ids(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    responses = await asyncio.gather(
        *[
            client.post("/api/v3.1/tickets", json={"name": f"T{n}"}, headers=team.auth)
            for n in range(8)
        ]
    )
    assert [r.status_code for r in responses] == [201] * 8
    numbers = sorted(r.json()["unique_ticket_id"] for r in responses)
    assert numbers == [f"TCK-{n:06d}" for n in range(1, 9)]


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "done"), ("priority", "asap"), ("description", "x" * 10_001), ("name", "")],
)
async def test_invalid_ticket_field_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, field: str, value: str
) -> None:
    before = await row_counts(db)
    response = await client.post(
        "/api/v3.1/tickets", json={"name": "T", field: value}, headers=team.auth
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert await row_counts(db) == before


@pytest.mark.parametrize("sent", ["bot", "BOT", "agentic_ai", "Agentic_Ai"])
async def test_creator_flag_is_case_insensitive(
    client: httpx.AsyncClient, team: TeamHandle, sent: str
) -> None:
    ticket = await create_ticket(client, team, creator_flag=sent)
    assert ticket["creator_flag"] == sent.lower()
    assert ticket["creator_name"] == {"bot": "Bot", "agentic_ai": "AI"}[sent.lower()]


async def test_unrecognised_creator_flag_is_stored_null_logged_and_still_201(
    client: httpx.AsyncClient, team: TeamHandle, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crm_service.records.service"):
        ticket = await create_ticket(client, team, creator_flag="human")
    assert (ticket["creator_flag"], ticket["creator_name"]) == (None, "admin")
    assert [r.message for r in caplog.records] == ["unrecognised creator_flag stored as null"]


async def test_creator_flag_cannot_change_on_update(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    ticket = await create_ticket(client, team, creator_flag="bot")
    response = await patch(client, team, ticket["id"], creator_flag="agentic_ai")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "creator_flag"]


async def test_room_id_cannot_change_on_update(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    ticket = await create_ticket(client, team, channel_integration_room_id="room-1")
    response = await patch(client, team, ticket["id"], channel_integration_room_id="room-2")
    assert response.status_code == 422
    rows = await fetch_rows(db, "SELECT channel_integration_room_id FROM tickets")
    assert rows == [{"channel_integration_room_id": "room-1"}]


async def test_contacts_from_crm_lead_ids_and_contact_id_are_united(
    client: httpx.AsyncClient, team: TeamHandle, other_team: TeamHandle
) -> None:
    first, second = await create_contact(client, team), await create_contact(client, team)
    foreign = await create_contact(client, other_team)
    ticket = await create_ticket(
        client, team, crm_lead_ids=[first["id"], foreign["id"]], contact_id=second["id"]
    )
    assert ticket["crm_lead_ids"] == sorted([first["id"], second["id"]])


async def test_relinking_contacts_on_update_is_idempotent(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    contact = await create_contact(client, team)
    ticket = await create_ticket(client, team, contact_id=contact["id"])
    response = await patch(client, team, ticket["id"], crm_lead_ids=[contact["id"]])
    assert response.json()["crm_lead_ids"] == [contact["id"]]
    assert len(await fetch_rows(db, "SELECT * FROM ticket_contacts")) == 1


@pytest.mark.parametrize(
    "change",
    [{"name": "Renamed"}, {"status": "resolved"}, {"priority": "urgent"}],
    ids=["name", "status", "priority"],
)
async def test_a_preview_field_change_bumps_the_version_by_one(
    client: httpx.AsyncClient, team: TeamHandle, change: dict[str, str]
) -> None:
    ticket = await create_ticket(client, team)
    response = await patch(client, team, ticket["id"], **change)
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert all(response.json()[key] == value for key, value in change.items())


@pytest.mark.parametrize(
    "change",
    [{"description": "More detail"}, {"status": "open"}, {}],
    ids=["description", "same-status", "empty"],
)
async def test_an_update_without_a_preview_field_change_keeps_the_version(
    client: httpx.AsyncClient, team: TeamHandle, change: dict[str, str]
) -> None:
    ticket = await create_ticket(client, team)
    response = await patch(client, team, ticket["id"], **change)
    assert response.status_code == 200
    assert response.json()["version"] == 1


@pytest.mark.parametrize("field", ["name", "status", "priority"])
async def test_null_for_a_required_field_on_update_is_422(
    client: httpx.AsyncClient, team: TeamHandle, field: str
) -> None:
    ticket = await create_ticket(client, team)
    response = await patch(client, team, ticket["id"], **{field: None})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


async def test_unique_ticket_id_does_not_change_on_update(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    ticket = await create_ticket(client, team)
    response = await patch(client, team, ticket["id"], unique_ticket_id="TCK-999999", name="New")
    assert response.json()["unique_ticket_id"] == ticket["unique_ticket_id"]


async def test_delete_answers_204_and_the_ticket_is_then_404(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    ticket = await create_ticket(client, team)
    response = await client.delete(f"/api/v3.1/tickets/{ticket['id']}", headers=team.auth)
    assert response.status_code == 204
    get = await client.get(f"/api/v3.1/tickets/{ticket['id']}", headers=team.auth)
    assert get.status_code == 404
    [row] = await fetch_rows(db, "SELECT version, deleted_at FROM tickets")
    assert row["version"] == 2 and row["deleted_at"] is not None


@pytest.mark.parametrize(
    ("method", "body"), [("GET", None), ("PATCH", {"status": "closed"}), ("DELETE", None)]
)
async def test_another_teams_ticket_is_404_and_untouched(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    other_team: TeamHandle,
    method: str,
    body: dict[str, str] | None,
) -> None:
    theirs = await create_ticket(client, other_team)
    before = await fetch_rows(db, "SELECT * FROM tickets")
    response = await client.request(
        method, f"/api/v3.1/tickets/{theirs['id']}", json=body, headers=team.auth
    )
    assert response.status_code == 404
    assert response.json() == {"detail": f"ticket {theirs['id']} not found"}
    assert await fetch_rows(db, "SELECT * FROM tickets") == before
