"""The rows a record change writes to the transactional outbox (DESIGN.md §4-§5): only for
bot/AI records in a room with the team's flag on, in the request's transaction, with the
record's version in the stored body, and handed to the broker only after the commit."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.database import utcnow
from crm_service.events.outbox import note_jobs_of_creates
from tests.crm.conftest import (
    EnqueueRecorder,
    TeamHandle,
    create_record,
    enable_parity,
    execute,
    fetch_rows,
)

ROOM = "room-42"
BOT_IN_ROOM = {"channel_integration_room_id": ROOM, "creator_flag": "bot"}
KINDS = ["deals", "tickets"]


async def write_note_jobs(db: AsyncEngine, event_ids: list[int]) -> list[int]:
    async with db.begin() as connection:
        result = await connection.execute(
            note_jobs_of_creates(db.dialect.name), {"ids": event_ids, "now": utcnow()}
        )
        return list(result.scalars())


async def outbox(db: AsyncEngine) -> list[dict[str, Any]]:
    rows = await fetch_rows(db, "SELECT * FROM outbox_events ORDER BY id")
    for row in rows:
        row["envelope"] = None if row["body"] is None else json.loads(row["body"])
    return rows


@pytest.fixture
async def parity_team(client: httpx.AsyncClient, team: TeamHandle) -> TeamHandle:
    await enable_parity(client, team)
    return team


@pytest.mark.parametrize("kind", KINDS)
async def test_create_writes_its_webhook_row_and_the_claims_statement_its_note_job(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle, kind: str
) -> None:
    record = await create_record(client, parity_team, kind, **BOT_IN_ROOM)
    [webhook] = await outbox(db)
    singular = kind[:-1]
    assert (webhook["kind"], webhook["event_type"], webhook["status"]) == (
        "webhook",
        f"qontak.crm.{singular}.create",
        "pending",
    )
    assert (webhook["record_kind"], webhook["record_id"], webhook["room_id"]) == (
        singular,
        record["id"],
        ROOM,
    )

    # What the worker runs with the record of each attempt of the event: the first writes the
    # job, any later one (a retry, a replay, a second claimer) writes nothing.
    written = await write_note_jobs(db, [webhook["id"]])
    assert len(written) == 1
    assert await write_note_jobs(db, [webhook["id"]]) == []
    _, note = await outbox(db)
    assert note["id"] == written[0]
    assert (note["kind"], note["record_kind"], note["record_id"], note["room_id"]) == (
        "timeline_note",
        singular,
        record["id"],
        ROOM,
    )
    assert (note["team_id"], note["event_type"], note["body"], note["status"]) == (
        webhook["team_id"],
        webhook["event_type"],
        None,
        "pending",
    )
    assert (note["attempt_count"], note["webhook_id"]) == (0, webhook["webhook_id"] + ".note")


async def test_only_a_create_event_brings_a_note_job(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle
) -> None:
    deal = await create_record(client, parity_team, "deals", **BOT_IN_ROOM)
    response = await client.patch(
        f"/api/v3.1/deals/{deal['id']}", json={"name": "Renamed"}, headers=parity_team.auth
    )
    assert response.status_code == 200, response.text
    response = await client.delete(f"/api/v3.1/deals/{deal['id']}", headers=parity_team.auth)
    assert response.status_code in (200, 204), response.text
    create, update, delete = await outbox(db)
    assert await write_note_jobs(db, [update["id"], delete["id"]]) == []
    assert len(await write_note_jobs(db, [create["id"], update["id"], delete["id"]])) == 1


async def test_every_outbox_row_has_a_webhook_id_of_its_own(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle
) -> None:
    """No index enforces it (migration 0005): each row's id is made for it alone, on the
    create's one statement and on the ORM's path (an update) alike."""
    for n in range(10):
        record = await create_record(
            client,
            parity_team,
            KINDS[n % 2],
            channel_integration_room_id=f"room-{n}",
            creator_flag="bot",
        )
        response = await client.patch(
            f"/api/v3.1/{KINDS[n % 2]}/{record['id']}",
            json={"name": f"Renamed {n}"},
            headers=parity_team.auth,
        )
        assert response.status_code == 200, response.text
    ids = [row["webhook_id"] for row in await outbox(db)]
    assert len(ids) == 20 and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"msg_[0-9a-f]{32}", webhook_id) for webhook_id in ids)


async def test_a_deal_create_event_carries_the_records_display_state(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle
) -> None:
    deal = await create_record(client, parity_team, "deals", size=1500, **BOT_IN_ROOM)
    envelope = (await outbox(db))[0]["envelope"]
    assert envelope["type"] == "qontak.crm.deal.create"
    assert envelope["data"] == {
        "id": deal["id"],
        "slug": deal["slug"],
        "company_id": parity_team.external_company_id,
        "channel_integration_room_id": ROOM,
        "name": deal["name"],
        "stage": deal["stage"],
        "pipeline": deal["pipeline"],
        "size": 1500.0,
        "status": "open",
        "creator_flag": "bot",
        "creator_name": "Bot",
        "external_url": deal["external_url"],
        "created_at": deal["created_at"],
        "updated_at": deal["updated_at"],
        "version": 1,
    }


async def test_a_ticket_create_event_carries_the_records_display_state(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle
) -> None:
    ticket = await create_record(
        client, parity_team, "tickets", description="Broken", priority="high", **BOT_IN_ROOM
    )
    data = (await outbox(db))[0]["envelope"]["data"]
    assert data == {
        "id": ticket["id"],
        "unique_ticket_id": "TCK-000001",
        "company_id": parity_team.external_company_id,
        "channel_integration_room_id": ROOM,
        "name": ticket["name"],
        "description": "Broken",
        "status": "open",
        "priority": "high",
        "creator_flag": "bot",
        "creator_name": "Bot",
        "external_url": ticket["external_url"],
        "created_at": ticket["created_at"],
        "updated_at": ticket["updated_at"],
        "version": 1,
    }


async def test_outbox_rows_are_handed_to_the_broker_after_the_commit(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    parity_team: TeamHandle,
    enqueued: EnqueueRecorder,
) -> None:
    await create_record(client, parity_team, "deals", **BOT_IN_ROOM)
    rows = await outbox(db)
    assert enqueued.items == [(row["id"], row["kind"]) for row in rows]


@pytest.mark.parametrize(
    ("fields", "flag_on"),
    [
        (BOT_IN_ROOM, False),
        ({"creator_flag": "bot"}, True),
        ({"channel_integration_room_id": ROOM}, True),
        ({"channel_integration_room_id": ROOM, "creator_flag": "someone"}, True),
    ],
    ids=["flag-off", "no-room", "no-creator-flag", "unrecognised-creator-flag"],
)
@pytest.mark.parametrize("kind", KINDS)
async def test_no_outbox_rows_unless_flag_on_and_bot_or_ai_and_room(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    enqueued: EnqueueRecorder,
    kind: str,
    fields: dict[str, str],
    flag_on: bool,
) -> None:
    if flag_on:
        await enable_parity(client, team)
    record = await create_record(client, team, kind, **fields)
    await client.patch(f"/api/v3.1/{kind}/{record['id']}", json={"name": "X"}, headers=team.auth)
    await client.delete(f"/api/v3.1/{kind}/{record['id']}", headers=team.auth)
    assert await outbox(db) == []
    assert enqueued.items == []


async def test_the_flag_of_another_team_does_not_apply(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, other_team: TeamHandle
) -> None:
    await enable_parity(client, other_team)
    await create_record(client, team, "deals", **BOT_IN_ROOM)
    assert await outbox(db) == []


async def test_switching_the_flag_off_stops_events_at_once(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle
) -> None:
    await enable_parity(client, parity_team, enabled=False)
    await create_record(client, parity_team, "deals", **BOT_IN_ROOM)
    assert await outbox(db) == []


async def test_a_flag_switched_by_another_process_applies_to_the_next_request(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    await create_record(client, team, "deals", **BOT_IN_ROOM)
    await execute(
        db,
        "INSERT INTO team_features (team_id, name, enabled, updated_at) "
        "VALUES (:team_id, 'bot_ai_creation_parity', true, now())",
        team_id=team.id,
    )
    deal = await create_record(client, team, "deals", **BOT_IN_ROOM)
    assert [row["record_id"] for row in await outbox(db)] == [deal["id"]]


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("deals", {"name": "Renamed"}),
        ("deals", {"status": "won"}),
        ("deals", {"crm_stage_name": "Proposal"}),
        ("tickets", {"priority": "urgent"}),
        ("tickets", {"status": "closed"}),
    ],
)
async def test_a_preview_field_update_writes_an_update_row_with_the_new_version(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    parity_team: TeamHandle,
    kind: str,
    change: dict[str, str],
) -> None:
    record = await create_record(client, parity_team, kind, **BOT_IN_ROOM)
    response = await client.patch(
        f"/api/v3.1/{kind}/{record['id']}", json=change, headers=parity_team.auth
    )
    update = (await outbox(db))[-1]
    assert update["event_type"] == f"qontak.crm.{kind[:-1]}.update"
    assert update["envelope"]["data"]["version"] == response.json()["version"] == 2
    assert update["envelope"]["data"]["updated_at"] == response.json()["updated_at"]
    assert len(await outbox(db)) == 2


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("deals", {"crm_source_id": 5}),
        ("deals", {"name": "Record from test"}),
        ("tickets", {"description": "More detail"}),
    ],
    ids=["deal-source", "deal-same-name", "ticket-description"],
)
async def test_an_update_without_a_preview_change_writes_no_row_and_keeps_the_version(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    parity_team: TeamHandle,
    kind: str,
    change: dict[str, object],
) -> None:
    record = await create_record(client, parity_team, kind, name="Record from test", **BOT_IN_ROOM)
    response = await client.patch(
        f"/api/v3.1/{kind}/{record['id']}", json=change, headers=parity_team.auth
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert [row["event_type"] for row in await outbox(db)] == [f"qontak.crm.{kind[:-1]}.create"]


@pytest.mark.parametrize("kind", KINDS)
async def test_delete_writes_a_delete_row_with_the_version_the_delete_gave(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle, kind: str
) -> None:
    record = await create_record(client, parity_team, kind, **BOT_IN_ROOM)
    await client.patch(
        f"/api/v3.1/{kind}/{record['id']}", json={"name": "Renamed"}, headers=parity_team.auth
    )
    await client.delete(f"/api/v3.1/{kind}/{record['id']}", headers=parity_team.auth)
    delete = (await outbox(db))[-1]
    assert delete["event_type"] == f"qontak.crm.{kind[:-1]}.delete"
    data = delete["envelope"]["data"]
    assert (data["id"], data["version"], data["channel_integration_room_id"]) == (
        record["id"],
        3,
        ROOM,
    )
    assert (data["company_id"], data["created_at"]) == (
        parity_team.external_company_id,
        record["created_at"],
    )


async def test_a_rejected_update_writes_no_row(
    client: httpx.AsyncClient, db: AsyncEngine, parity_team: TeamHandle
) -> None:
    deal = await create_record(client, parity_team, "deals", **BOT_IN_ROOM)
    response = await client.patch(
        f"/api/v3.1/deals/{deal['id']}",
        json={"name": "Renamed", "channel_integration_room_id": "elsewhere"},
        headers=parity_team.auth,
    )
    assert response.status_code == 422
    assert len(await outbox(db)) == 1


async def test_an_idempotent_replay_writes_no_second_event(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    parity_team: TeamHandle,
    enqueued: EnqueueRecorder,
) -> None:
    headers = {**parity_team.auth, "Idempotency-Key": "once"}
    body = {"name": "Deal", **BOT_IN_ROOM}
    for _ in range(2):
        response = await client.post("/api/v3.1/deals", json=body, headers=headers)
        assert response.status_code == 201
    assert len(await outbox(db)) == 1
    assert len(enqueued.items) == 1
