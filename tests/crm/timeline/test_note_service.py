"""The note service against PostgreSQL, with Omni's edge mocked by respx."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from crm_service.database import utcnow
from crm_service.events.models import OutboxEvent
from crm_service.metrics import TIMELINE_LOG_CREATION_FAILED
from crm_service.settings import Settings
from crm_service.timeline.excerpt import MAX_EXCERPT_CHARS, MAX_MESSAGE_CHARS
from crm_service.timeline.models import Note
from crm_service.timeline.service import NoteOutcome
from tests.crm.conftest import TeamHandle, create_team, crm_settings, enable_parity
from tests.crm.timeline.conftest import (
    OMNI_API_TOKEN,
    OMNI_PUBLIC_URL,
    create_record,
    fetch_timeline,
    history_page,
    history_route,
    link_omnichannel,
    message,
    note_row_id,
    write_note,
)

CHAT = history_page(
    message("Agent Sari", "Sure, I'll set up the order for you.", "2026-11-27T21:06:10.000000Z"),
    message("Budi", "I'd like 20 units of the blue model", "2026-11-27T21:05:29.123456Z"),
)
CHAT_EXCERPT = (
    "[2026-11-27 21:05 UTC] Budi: I'd like 20 units of the blue model\n"
    "[2026-11-27 21:06 UTC] Agent Sari: Sure, I'll set up the order for you."
)


def failures_counted() -> float:
    return float(TIMELINE_LOG_CREATION_FAILED._value.get())


async def only_entry(
    client: httpx.AsyncClient, team: TeamHandle, kind: str, record_id: int
) -> dict[str, Any]:
    response = await fetch_timeline(client, team, kind, record_id)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    assert len(items) == 1, items
    return items[0]


async def notes_of(crm_app: FastAPI, record_kind: str, record_id: int) -> int:
    async with crm_app.state.session_factory() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Note)
            .where(Note.record_kind == record_kind, Note.record_id == record_id)
        )
        return int(count or 0)


async def outbox_row(crm_app: FastAPI, outbox_id: int) -> OutboxEvent:
    async with crm_app.state.session_factory() as session:
        row: OutboxEvent | None = await session.get(OutboxEvent, outbox_id)
        assert row is not None
        return row


async def test_bot_deal_gets_a_note_with_excerpt_link_label_and_ids(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    history_route(omni, "room-1").respond(json=CHAT)
    deal = await create_record(client, linked_team, "deals", room="room-1", creator_flag="bot")

    outcome = await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert outcome is NoteOutcome.WRITTEN
    entry = await only_entry(client, linked_team, "deals", deal["id"])
    assert {key: value for key, value in entry.items() if key not in {"id", "created_at"}} == {
        "type": "hub_channel_chat",
        "excerpt": CHAT_EXCERPT,
        "room_deeplink": f"{OMNI_PUBLIC_URL}/inbox/rooms/room-1",
        "creator_flag": "bot",
        "creator_name": "Bot",
        "channel_room_id": "room-1",
        "channel_organization_id": "company-linked",
    }


async def test_ai_ticket_gets_a_note_with_excerpt_and_the_ai_label(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    history_route(omni, "room-9").respond(json=CHAT)
    ticket = await create_record(
        client, linked_team, "tickets", room="room-9", creator_flag="agentic_ai"
    )

    await write_note(crm_app, await note_row_id(crm_app, "ticket", ticket["id"]), settings)

    entry = await only_entry(client, linked_team, "tickets", ticket["id"])
    assert (entry["excerpt"], entry["creator_flag"], entry["creator_name"]) == (
        CHAT_EXCERPT,
        "agentic_ai",
        "AI",
    )
    assert entry["room_deeplink"] == f"{OMNI_PUBLIC_URL}/inbox/rooms/room-9"


async def test_history_is_the_latest_page_read_with_the_links_token(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    route = history_route(omni, "wa%2F62812%20x").respond(json=CHAT)
    deal = await create_record(client, linked_team, room="wa/62812 x")

    await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    request = route.calls.last.request
    assert request.url.raw_path == b"/api/open/v1/messages/rooms/wa%2F62812%20x?offset=1&limit=100"
    assert request.headers["Authorization"] == f"Bearer {OMNI_API_TOKEN}"


async def test_room_link_follows_the_configured_template_with_the_room_id_escaped(
    client: httpx.AsyncClient, crm_app: FastAPI, linked_team: TeamHandle, omni: respx.MockRouter
) -> None:
    history_route(omni, "wa%2F62812%20x").respond(json=CHAT)
    settings = crm_settings(
        crm_app.state.settings.database_url,
        omni_room_url_template="{omni_public_url}/app/chat?room={room_id}",
    )
    deal = await create_record(client, linked_team, room="wa/62812 x")

    await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    entry = await only_entry(client, linked_team, "deals", deal["id"])
    assert entry["room_deeplink"] == f"{OMNI_PUBLIC_URL}/app/chat?room=wa%2F62812%20x"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, json={"detail": "boom"}),
        httpx.Response(401, json={"detail": "invalid bearer token"}),
        httpx.Response(200, text='{"items": [ {"sender": "Bu'),
        httpx.Response(200, json=[{"sender": "Budi", "text": "hi"}]),
        httpx.Response(200, json={"items": "not a list"}),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["500", "401", "malformed-json", "not-a-page", "items-not-a-list", "down", "timeout"],
)
async def test_unreadable_history_still_writes_the_note_with_link_and_label_but_no_excerpt(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
    answer: httpx.Response | Exception,
) -> None:
    route = history_route(omni, "room-1")
    if isinstance(answer, Exception):
        route.side_effect = answer
    else:
        route.return_value = answer
    deal = await create_record(client, linked_team, room="room-1", creator_flag="bot")

    outcome = await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert outcome is NoteOutcome.WRITTEN_WITHOUT_EXCERPT
    entry = await only_entry(client, linked_team, "deals", deal["id"])
    assert (entry["excerpt"], entry["room_deeplink"], entry["creator_name"]) == (
        None,
        f"{OMNI_PUBLIC_URL}/inbox/rooms/room-1",
        "Bot",
    )


async def test_omni_slower_than_the_timeout_gives_a_note_without_excerpt(
    client: httpx.AsyncClient, crm_app: FastAPI, linked_team: TeamHandle, omni: respx.MockRouter
) -> None:
    async def never_answers(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    history_route(omni, "room-1").side_effect = never_answers
    settings = crm_settings(crm_app.state.settings.database_url, omni_timeout_seconds=0.2)
    deal = await create_record(client, linked_team, room="room-1")
    outbox_id = await note_row_id(crm_app, "deal", deal["id"])

    async with asyncio.timeout(10):
        outcome = await write_note(crm_app, outbox_id, settings)

    assert outcome is NoteOutcome.WRITTEN_WITHOUT_EXCERPT
    assert (await only_entry(client, linked_team, "deals", deal["id"]))["excerpt"] is None


async def test_a_note_without_excerpt_counts_timeline_log_creation_failed_once(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    history_route(omni, "room-1").respond(503)
    deal = await create_record(client, linked_team, room="room-1")
    outbox_id = await note_row_id(crm_app, "deal", deal["id"])
    before = failures_counted()

    await write_note(crm_app, outbox_id, settings)
    await write_note(crm_app, outbox_id, settings)

    assert failures_counted() - before == 1


async def test_a_note_with_excerpt_counts_no_failure(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    history_route(omni, "room-1").respond(json=CHAT)
    deal = await create_record(client, linked_team, room="room-1")
    before = failures_counted()

    await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert failures_counted() == before


async def test_the_token_never_appears_in_the_logs(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    history_route(omni, "room-1").respond(401, json={"detail": "invalid bearer token"})
    deal = await create_record(client, linked_team, room="room-1")

    with caplog.at_level(logging.DEBUG):
        await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    written = [json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert any("without excerpt" in line for line in written)
    assert not any(OMNI_API_TOKEN in line for line in written)


async def test_the_outbox_row_is_closed_once_the_note_is_written(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    history_route(omni, "room-1").respond(json=CHAT)
    deal = await create_record(client, linked_team, room="room-1")
    outbox_id = await note_row_id(crm_app, "deal", deal["id"])

    await write_note(crm_app, outbox_id, settings)

    row = await outbox_row(crm_app, outbox_id)
    assert (row.status, row.attempt_count, row.completed_at is not None) == ("delivered", 1, True)


async def test_a_rerun_after_the_note_was_written_writes_nothing_and_reads_no_history(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    route = history_route(omni, "room-1").respond(json=CHAT)
    deal = await create_record(client, linked_team, room="room-1")
    outbox_id = await note_row_id(crm_app, "deal", deal["id"])
    await write_note(crm_app, outbox_id, settings)

    outcome = await write_note(crm_app, outbox_id, settings)

    assert outcome is NoteOutcome.NOT_PENDING
    assert route.call_count == 1
    assert await notes_of(crm_app, "deal", deal["id"]) == 1


async def test_a_duplicate_task_while_the_first_runs_does_nothing(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    first_asked, release = asyncio.Event(), asyncio.Event()

    async def answer_when_released(request: httpx.Request) -> httpx.Response:
        first_asked.set()
        async with asyncio.timeout(10):
            await release.wait()
        return httpx.Response(200, json=CHAT)

    route = history_route(omni, "room-1")
    route.side_effect = answer_when_released
    deal = await create_record(client, linked_team, room="room-1")
    outbox_id = await note_row_id(crm_app, "deal", deal["id"])
    first = asyncio.create_task(write_note(crm_app, outbox_id, settings))
    async with asyncio.timeout(10):
        await first_asked.wait()

    duplicate = await write_note(crm_app, outbox_id, settings)
    release.set()

    assert (duplicate, await first) == (NoteOutcome.NOT_PENDING, NoteOutcome.WRITTEN)
    assert route.call_count == 1
    assert await notes_of(crm_app, "deal", deal["id"]) == 1


async def test_a_run_whose_lease_ran_out_cannot_write_a_second_note(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    # The first run is held at Omni past its lease; a second run takes the row again.
    # Both are released together, so both reach the insert: the unique constraint, not
    # luck, keeps the second note out.
    first_asked, both_asking = asyncio.Event(), asyncio.Barrier(2)

    async def answer_when_both_ask(request: httpx.Request) -> httpx.Response:
        first_asked.set()
        async with asyncio.timeout(10):
            await both_asking.wait()
        return httpx.Response(200, json=CHAT)

    history_route(omni, "room-1").side_effect = answer_when_both_ask
    deal = await create_record(client, linked_team, room="room-1")
    outbox_id = await note_row_id(crm_app, "deal", deal["id"])
    first = asyncio.create_task(write_note(crm_app, outbox_id, settings))
    async with asyncio.timeout(10):
        await first_asked.wait()
    async with crm_app.state.session_factory() as session, session.begin():
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == outbox_id)
            .values(next_attempt_at=utcnow() - timedelta(minutes=1))
        )

    second = await write_note(crm_app, outbox_id, settings)

    assert sorted([await first, second]) == [NoteOutcome.ALREADY_WRITTEN, NoteOutcome.WRITTEN]
    assert await notes_of(crm_app, "deal", deal["id"]) == 1


async def test_a_record_deleted_before_the_task_gets_no_note_and_its_row_is_closed(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    route = history_route(omni, "room-1").respond(json=CHAT)
    deal = await create_record(client, linked_team, room="room-1")
    outbox_id = await note_row_id(crm_app, "deal", deal["id"])
    deleted = await client.delete(f"/api/v3.1/deals/{deal['id']}", headers=linked_team.auth)
    assert deleted.status_code == 204

    outcome = await write_note(crm_app, outbox_id, settings)

    assert outcome is NoteOutcome.RECORD_GONE
    assert route.call_count == 0
    assert await notes_of(crm_app, "deal", deal["id"]) == 0
    assert (await outbox_row(crm_app, outbox_id)).status == "delivered"


async def test_a_team_without_an_omnichannel_link_gets_a_note_with_label_and_room_only(
    client: httpx.AsyncClient, crm_app: FastAPI, settings: Settings, omni: respx.MockRouter
) -> None:
    team = await create_team(client, external_company_id="company-unlinked", name="Unlinked")
    await enable_parity(client, team)
    deal = await create_record(client, team, room="room-1", creator_flag="bot")

    outcome = await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert outcome is NoteOutcome.WRITTEN_WITHOUT_EXCERPT
    entry = await only_entry(client, team, "deals", deal["id"])
    assert (entry["excerpt"], entry["room_deeplink"], entry["creator_name"]) == (None, None, "Bot")
    assert entry["channel_room_id"] == "room-1"
    assert len(omni.calls) == 0


async def test_an_empty_room_gives_an_empty_excerpt(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    history_route(omni, "room-1").respond(json=history_page())
    deal = await create_record(client, linked_team, room="room-1")

    outcome = await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert outcome is NoteOutcome.WRITTEN
    assert (await only_entry(client, linked_team, "deals", deal["id"]))["excerpt"] == ""


async def test_malformed_history_entries_are_skipped(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    page = history_page(
        message("Budi", "still here?", "2026-11-27T21:09:00.000000Z"),
        {"sender": "Budi", "created_at": "2026-11-27T21:08:00.000000Z"},
        message("Budi", "no zone", "2026-11-27T21:07:00"),
        "just a string",
        message("Budi", "\x00\x1b", "2026-11-27T21:06:00.000000Z"),
        message("Budi", "hello", "2026-11-27T21:05:00.000000Z"),
    )
    history_route(omni, "room-1").respond(json=page)
    deal = await create_record(client, linked_team, room="room-1")

    await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert (await only_entry(client, linked_team, "deals", deal["id"]))["excerpt"] == (
        "[2026-11-27 21:05 UTC] Budi: hello\n[2026-11-27 21:09 UTC] Budi: still here?"
    )


async def test_long_and_many_messages_give_a_bounded_excerpt_of_the_latest(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    newest_first = [
        message(
            "Budi",
            f"#{99 - index} " + "lorem ipsum " * 800,
            f"2026-11-27T20:{59 - index // 2:02d}:00Z",
        )
        for index in range(100)
    ]
    history_route(omni, "room-1").respond(json=history_page(*newest_first))
    deal = await create_record(client, linked_team, room="room-1")

    await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    excerpt = (await only_entry(client, linked_team, "deals", deal["id"]))["excerpt"]
    lines = excerpt.split("\n")
    assert len(excerpt) <= MAX_EXCERPT_CHARS
    assert all(len(line) == MAX_MESSAGE_CHARS and line.endswith("…") for line in lines)
    assert [line.split("Budi: #")[1].split(" ")[0] for line in lines] == [
        "94",
        "95",
        "96",
        "97",
        "98",
        "99",
    ]


async def test_unicode_chat_is_kept_intact_in_the_excerpt(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    page = history_page(
        message("Zoë", f"مرحبا {family} 🇮🇩 👋🏾", "2026-11-27T21:06:00.000000Z"),
        message("Budi Santoso", "Bisa kirim ke Bandung? cafe\u0301 ☕", "2026-11-27T21:05:00Z"),
    )
    history_route(omni, "room-1").respond(json=page)
    deal = await create_record(client, linked_team, room="room-1")

    await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert (await only_entry(client, linked_team, "deals", deal["id"]))["excerpt"] == (
        "[2026-11-27 21:05 UTC] Budi Santoso: Bisa kirim ke Bandung? cafe\u0301 ☕\n"
        f"[2026-11-27 21:06 UTC] Zoë: مرحبا {family} 🇮🇩 👋🏾"
    )


async def test_a_history_larger_than_the_cap_is_not_read_and_gives_no_excerpt(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("crm_service.timeline.history.MAX_HISTORY_BYTES", 1_000)
    page = history_page(*[message("Budi", "x" * 100, "2026-11-27T21:05:00Z")] * 20)
    history_route(omni, "room-1").respond(json=page)
    deal = await create_record(client, linked_team, room="room-1")

    outcome = await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert outcome is NoteOutcome.WRITTEN_WITHOUT_EXCERPT


async def test_link_to_another_base_url_is_where_history_is_read(
    client: httpx.AsyncClient, crm_app: FastAPI, settings: Settings
) -> None:
    team = await create_team(client, external_company_id="company-eu", name="EU")
    await link_omnichannel(client, team, base_url="http://omni-eu.internal.test/base/")
    await enable_parity(client, team)
    deal = await create_record(client, team, room="room-1")

    with respx.mock(assert_all_called=True) as mock:
        mock.get("http://omni-eu.internal.test/base/api/open/v1/messages/rooms/room-1").respond(
            json=CHAT
        )
        await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    assert (await only_entry(client, team, "deals", deal["id"]))["excerpt"] == CHAT_EXCERPT
