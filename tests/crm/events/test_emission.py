"""Which changes write events (DESIGN.md §4, RFC branch catalog), what the rows hold, and
that they reach the broker only after the commit."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.crm.conftest import EnqueueRecorder, TeamHandle, enable_parity
from tests.crm.events.conftest import LinkedTeam, create_record, outbox_rows

Sessions = async_sessionmaker[AsyncSession]
KINDS = ["deals", "tickets"]
SINGULAR = {"deals": "deal", "tickets": "ticket"}
STATE_FIELDS = {
    "id",
    "company_id",
    "channel_integration_room_id",
    "name",
    "creator_flag",
    "creator_name",
    "external_url",
    "created_at",
    "updated_at",
    "version",
}
DATA_FIELDS = {
    "deals": STATE_FIELDS | {"slug", "stage", "pipeline", "size", "status"},
    "tickets": STATE_FIELDS | {"unique_ticket_id", "description", "status", "priority"},
}
OTHER_FIELD_CHANGE = {"deals": {"crm_source_id": 77}, "tickets": {"description": "more detail"}}
PREVIEW_FIELD_CHANGE = {"deals": {"status": "won"}, "tickets": {"priority": "urgent"}}


def body_of(row: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(row.body)
    return document


async def test_with_the_flag_off_a_bot_record_writes_no_event_and_no_note(
    client: httpx.AsyncClient, team: TeamHandle, sessions: Sessions, enqueued: EnqueueRecorder
) -> None:
    await create_record(client, team)

    assert await outbox_rows(sessions) == []
    assert enqueued.items == []


async def test_a_record_without_a_room_writes_no_event_and_no_note(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team, channel_integration_room_id=None)

    assert await outbox_rows(sessions) == []


async def test_a_record_without_a_creator_flag_writes_no_event_and_no_note(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team, creator_flag=None)
    await create_record(client, linked_team, creator_flag="human")

    assert await outbox_rows(sessions) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_bot_create_in_a_room_writes_its_event_alone(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions, kind: str
) -> None:
    """The note job comes from the event, when the worker attempts it (test_delivery_batch)."""
    record = await create_record(client, linked_team, kind, creator_flag="AGENTIC_AI")

    [webhook] = await outbox_rows(sessions)
    assert webhook.kind == "webhook"
    assert webhook.event_type == f"qontak.crm.{SINGULAR[kind]}.create"
    assert (webhook.record_id, webhook.room_id, webhook.status) == (
        record["id"],
        "room-1",
        "pending",
    )
    body = body_of(webhook)
    assert body["type"] == webhook.event_type
    assert set(body["data"]) == DATA_FIELDS[kind]
    assert body["data"]["version"] == 1
    assert body["data"]["company_id"] == linked_team.handle.external_company_id
    assert (body["data"]["creator_flag"], body["data"]["creator_name"]) == ("agentic_ai", "AI")
    assert body["data"]["updated_at"] == record["updated_at"]


async def test_rows_are_handed_to_the_broker_after_the_commit(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    enqueued: EnqueueRecorder,
) -> None:
    await create_record(client, linked_team)

    [webhook] = await outbox_rows(sessions)
    assert enqueued.items == [(webhook.id, "webhook")]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_preview_field_change_emits_an_update_with_the_new_version(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions, kind: str
) -> None:
    record = await create_record(client, linked_team, kind)

    response = await client.patch(
        f"/api/v3.1/{kind}/{record['id']}",
        json=PREVIEW_FIELD_CHANGE[kind],
        headers=linked_team.auth,
    )

    assert response.status_code == 200, response.text
    update = (await outbox_rows(sessions, kind="webhook"))[-1]
    assert update.event_type == f"qontak.crm.{SINGULAR[kind]}.update"
    data = body_of(update)["data"]
    assert set(data) == DATA_FIELDS[kind]
    assert data["version"] == response.json()["version"] == 2
    [(field, value)] = PREVIEW_FIELD_CHANGE[kind].items()
    assert data[field] == value


@pytest.mark.parametrize("kind", KINDS)
async def test_a_change_of_other_fields_emits_nothing(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions, kind: str
) -> None:
    record = await create_record(client, linked_team, kind)

    response = await client.patch(
        f"/api/v3.1/{kind}/{record['id']}", json=OTHER_FIELD_CHANGE[kind], headers=linked_team.auth
    )

    assert response.status_code == 200, response.text
    assert [row.event_type for row in await outbox_rows(sessions, kind="webhook")] == [
        f"qontak.crm.{SINGULAR[kind]}.create"
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_delete_emits_the_version_it_gave_the_record(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions, kind: str
) -> None:
    record = await create_record(client, linked_team, kind)

    response = await client.delete(f"/api/v3.1/{kind}/{record['id']}", headers=linked_team.auth)

    assert response.status_code == 204
    delete = (await outbox_rows(sessions, kind="webhook"))[-1]
    assert delete.event_type == f"qontak.crm.{SINGULAR[kind]}.delete"
    data = body_of(delete)["data"]
    assert data["version"] == 2
    assert (data["id"], data["channel_integration_room_id"]) == (record["id"], "room-1")
    assert data["company_id"] == linked_team.handle.external_company_id
    assert data["created_at"] == record["created_at"]


async def test_a_refused_change_writes_and_enqueues_nothing(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    enqueued: EnqueueRecorder,
) -> None:
    record = await create_record(client, linked_team)
    before = await outbox_rows(sessions)
    handed_over = list(enqueued.items)

    response = await client.patch(
        f"/api/v3.1/deals/{record['id']}",
        json={"name": "renamed", "channel_integration_room_id": "another-room"},
        headers=linked_team.auth,
    )

    assert response.status_code == 422
    assert [row.id for row in await outbox_rows(sessions)] == [row.id for row in before]
    assert enqueued.items == handed_over


async def test_an_unreachable_broker_does_not_fail_the_request_or_lose_the_event(
    crm_app: FastAPI, client: httpx.AsyncClient, team: TeamHandle, sessions: Sessions
) -> None:
    def broker_down(_items: list[tuple[int, str]]) -> None:
        raise ConnectionError("broker unreachable")

    crm_app.state.enqueue_outbox = broker_down
    await enable_parity(client, team)

    record = await create_record(client, team)

    [webhook] = await outbox_rows(sessions, kind="webhook")
    assert (webhook.record_id, webhook.status) == (record["id"], "pending")
