"""One note run claims its own row and other due note rows with it, and writes all of
their notes at once: each row ends exactly as if it had had a run of its own."""

from __future__ import annotations

import asyncio

import httpx
import respx
from fastapi import FastAPI
from sqlalchemy import select

from crm_service.events.models import OutboxEvent
from crm_service.settings import Settings
from crm_service.timeline.models import Note
from crm_service.timeline.service import NoteOutcome, timeline_service
from tests.crm.conftest import TeamHandle, create_team, enable_parity
from tests.crm.timeline.conftest import (
    create_record,
    history_page,
    history_route,
    message,
    note_row_id,
)


def chat(room: str) -> dict[str, object]:
    return history_page(message("Budi", f"hello from {room}", "2026-11-27T21:05:29.000000Z"))


async def write_batch(
    crm_app: FastAPI, outbox_id: int, settings: Settings, limit: int = 20
) -> dict[int, NoteOutcome | Exception]:
    async with httpx.AsyncClient(timeout=60) as http:
        return await timeline_service.write_batch(
            crm_app.state.session_factory, outbox_id, http, settings, limit=limit
        )


async def rows(crm_app: FastAPI, ids: list[int]) -> dict[int, tuple[str, str | None]]:
    async with crm_app.state.session_factory() as session:
        found = await session.execute(
            select(OutboxEvent.id, OutboxEvent.status, OutboxEvent.last_error).where(
                OutboxEvent.id.in_(ids)
            )
        )
        return {row.id: (row.status, row.last_error) for row in found}


async def notes(crm_app: FastAPI) -> dict[tuple[str, int], str | None]:
    async with crm_app.state.session_factory() as session:
        found = await session.execute(select(Note.record_kind, Note.record_id, Note.excerpt))
        return {(row.record_kind, row.record_id): row.excerpt for row in found}


async def test_one_run_writes_every_due_note_each_with_its_own_room_and_outcome(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    for room in ("room-a", "room-b", "room-c"):
        history_route(omni, room).respond(json=chat(room))
    history_route(omni, "room-down").respond(500)
    deals = [
        await create_record(client, linked_team, room=room)
        for room in ("room-a", "room-b", "room-down")
    ]
    ticket = await create_record(client, linked_team, "tickets", room="room-c")
    gone = await create_record(client, linked_team, room="room-gone")
    assert (
        await client.delete(f"/api/v3.1/deals/{gone['id']}", headers=linked_team.auth)
    ).is_success
    ids = [await note_row_id(crm_app, "deal", deal["id"]) for deal in deals]
    ticket_row = await note_row_id(crm_app, "ticket", ticket["id"])
    gone_row = await note_row_id(crm_app, "deal", gone["id"])

    outcomes = await write_batch(crm_app, ids[1], settings)

    assert outcomes == {
        ids[0]: NoteOutcome.WRITTEN,
        ids[1]: NoteOutcome.WRITTEN,
        ids[2]: NoteOutcome.WRITTEN_WITHOUT_EXCERPT,
        ticket_row: NoteOutcome.WRITTEN,
        gone_row: NoteOutcome.RECORD_GONE,
    }
    written = await notes(crm_app)
    assert written == {
        ("deal", deals[0]["id"]): "[2026-11-27 21:05 UTC] Budi: hello from room-a",
        ("deal", deals[1]["id"]): "[2026-11-27 21:05 UTC] Budi: hello from room-b",
        ("deal", deals[2]["id"]): None,
        ("ticket", ticket["id"]): "[2026-11-27 21:05 UTC] Budi: hello from room-c",
    }
    states = await rows(crm_app, [*ids, ticket_row, gone_row])
    assert {status for status, _ in states.values()} == {"delivered"}
    assert states[ids[2]][1] == "chat history unavailable: Omni answered 500"
    assert states[gone_row][1] == "record deleted before its note"
    assert states[ids[0]][1] is None
    # Every row was taken: their own tasks, arriving later, find nothing to do.
    assert all([await write_batch(crm_app, row, settings) == {} for row in ids])


async def test_a_run_takes_no_more_rows_than_its_limit_and_its_own_first(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    rooms = [f"room-{number}" for number in range(5)]
    for room in rooms:
        history_route(omni, room).respond(json=chat(room))
    deals = [await create_record(client, linked_team, room=room) for room in rooms]
    ids = [await note_row_id(crm_app, "deal", deal["id"]) for deal in deals]

    outcomes = await write_batch(crm_app, ids[-1], settings, limit=3)

    assert ids[-1] in outcomes and len(outcomes) == 3
    # The others taken are the oldest due: the first two.
    assert set(outcomes) == {ids[0], ids[1], ids[-1]}
    left = await rows(crm_app, ids)
    assert [left[row][0] for row in ids[2:4]] == ["pending", "pending"]


async def test_a_run_whose_own_row_is_taken_takes_nothing_else(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    asked, release = asyncio.Event(), asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        asked.set()
        async with asyncio.timeout(10):
            await release.wait()
        return httpx.Response(200, json=chat("room-1"))

    history_route(omni, "room-1").side_effect = held
    history_route(omni, "room-2").respond(json=chat("room-2"))
    first_deal = await create_record(client, linked_team, room="room-1")
    first_row = await note_row_id(crm_app, "deal", first_deal["id"])
    first = asyncio.create_task(write_batch(crm_app, first_row, settings, limit=1))
    async with asyncio.timeout(10):
        await asked.wait()
    second_deal = await create_record(client, linked_team, room="room-2")
    second_row = await note_row_id(crm_app, "deal", second_deal["id"])

    duplicate = await write_batch(crm_app, first_row, settings)
    release.set()

    assert duplicate == {}
    assert await first == {first_row: NoteOutcome.WRITTEN}
    assert (await rows(crm_app, [second_row]))[second_row][0] == "pending"


async def test_rows_of_several_teams_get_their_own_team_and_link(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    history_route(omni, "room-1").respond(json=chat("room-1"))
    unlinked = await create_team(client, external_company_id="company-other", name="Other")
    await enable_parity(client, unlinked)
    linked_deal = await create_record(client, linked_team, room="room-1")
    other_deal = await create_record(client, unlinked, room="room-1")
    linked_row = await note_row_id(crm_app, "deal", linked_deal["id"])
    other_row = await note_row_id(crm_app, "deal", other_deal["id"])

    outcomes = await write_batch(crm_app, other_row, settings)

    assert outcomes == {
        linked_row: NoteOutcome.WRITTEN,
        other_row: NoteOutcome.WRITTEN_WITHOUT_EXCERPT,
    }
    async with crm_app.state.session_factory() as session:
        found = await session.execute(
            select(Note.record_id, Note.team_id, Note.channel_organization_id, Note.room_deeplink)
        )
        by_record = {row.record_id: row for row in found}
    assert by_record[linked_deal["id"]].team_id == linked_team.id
    assert by_record[linked_deal["id"]].channel_organization_id == "company-linked"
    assert by_record[other_deal["id"]].team_id == unlinked.id
    assert by_record[other_deal["id"]].channel_organization_id == "company-other"
    assert by_record[other_deal["id"]].room_deeplink is None
    assert len(omni.calls) == 1
