"""The embedded mode: the same API on a SQLite file migrated by Alembic, with the same
assertions as on PostgreSQL for the core flows."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from crm_service.database import create_engine, session_factory
from crm_service.events.delivery import DeliveryPolicy, Outcome, deliver_batch
from crm_service.teams.features import LocalFlagCache
from tests.crm.conftest import (
    EnqueueRecorder,
    TeamHandle,
    create_contact,
    create_record,
    create_team,
    crm_settings,
    enable_parity,
    running_client,
)

KINDS = ["deals", "tickets"]


@pytest.fixture
async def lite(sqlite_file: Path, enqueued: EnqueueRecorder) -> AsyncIterator[httpx.AsyncClient]:
    settings = crm_settings(f"sqlite+aiosqlite:///{sqlite_file}")
    async with running_client(settings, enqueued) as client:
        yield client


@pytest.fixture
async def lite_team(lite: httpx.AsyncClient) -> TeamHandle:
    return await create_team(lite)


def stored(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as connection:
        return list(connection.execute(sql))


async def test_readyz_is_ok_on_sqlite(lite: httpx.AsyncClient) -> None:
    response = await lite.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})


async def test_a_new_team_has_the_default_pipeline_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle
) -> None:
    [pipeline] = (await lite.get("/api/v3.1/pipelines", headers=lite_team.auth)).json()["items"]
    assert [stage["name"] for stage in pipeline["stages"]] == [
        "New",
        "Qualified",
        "Proposal",
        "Won",
        "Lost",
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_get_answers_what_create_answered_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle, kind: str
) -> None:
    record = await create_record(
        lite, lite_team, kind, name="Ñandú 🦤", creator_flag="BOT", channel_integration_room_id="r"
    )
    assert (record["creator_flag"], record["creator_name"], record["version"]) == ("bot", "Bot", 1)
    assert record["created_at"].endswith("Z") and len(record["created_at"]) == 27
    fetched = await lite.get(f"/api/v3.1/{kind}/{record['id']}", headers=lite_team.auth)
    assert fetched.json() == record


@pytest.mark.parametrize("kind", KINDS)
async def test_a_preview_update_bumps_the_version_and_a_room_change_is_422_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle, kind: str
) -> None:
    record = await create_record(lite, lite_team, kind, channel_integration_room_id="room-1")
    url = f"/api/v3.1/{kind}/{record['id']}"
    renamed = await lite.patch(url, json={"name": "Renamed"}, headers=lite_team.auth)
    assert (renamed.status_code, renamed.json()["version"]) == (200, 2)
    moved = await lite.patch(
        url, json={"channel_integration_room_id": "room-2"}, headers=lite_team.auth
    )
    assert moved.status_code == 422


@pytest.mark.parametrize("kind", KINDS)
async def test_delete_answers_204_and_then_404_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle, sqlite_file: Path, kind: str
) -> None:
    record = await create_record(lite, lite_team, kind)
    url = f"/api/v3.1/{kind}/{record['id']}"
    assert (await lite.delete(url, headers=lite_team.auth)).status_code == 204
    assert (await lite.get(url, headers=lite_team.auth)).status_code == 404
    assert stored(sqlite_file, f"SELECT version FROM {kind}") == [(2,)]


@pytest.mark.parametrize("kind", KINDS)
async def test_contacts_are_united_skipped_and_linked_once_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle, sqlite_file: Path, kind: str
) -> None:
    first, second = await create_contact(lite, lite_team), await create_contact(lite, lite_team)
    record = await create_record(
        lite, lite_team, kind, crm_lead_ids=[first["id"], 999], contact_id=second["id"]
    )
    assert record["crm_lead_ids"] == [first["id"], second["id"]]
    relinked = await lite.patch(
        f"/api/v3.1/{kind}/{record['id']}",
        json={"crm_lead_ids": [second["id"]]},
        headers=lite_team.auth,
    )
    assert relinked.json()["crm_lead_ids"] == [first["id"], second["id"]]
    link_table = f"{kind[:-1]}_contacts"
    assert stored(sqlite_file, f"SELECT count(*) FROM {link_table}") == [(2,)]


async def test_unique_ticket_ids_count_up_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle
) -> None:
    numbers = [(await create_record(lite, lite_team, "tickets"))["unique_ticket_id"] for _ in "ab"]
    assert numbers == ["TCK-000001", "TCK-000002"]


async def test_idempotency_key_replays_the_first_response_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle, sqlite_file: Path
) -> None:
    headers = {**lite_team.auth, "Idempotency-Key": "k-1"}
    first = await lite.post("/api/v3.1/deals", json={"name": "Deal"}, headers=headers)
    again = await lite.post("/api/v3.1/deals", json={"name": "Deal"}, headers=headers)
    different = await lite.post("/api/v3.1/deals", json={"name": "Other"}, headers=headers)
    assert (first.status_code, again.status_code, different.status_code) == (201, 201, 422)
    assert again.json() == first.json()
    assert stored(sqlite_file, "SELECT count(*) FROM deals") == [(1,)]


async def test_phone_lookup_finds_every_spelling_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle
) -> None:
    contact = await create_contact(lite, lite_team, phone="+62 812-3456-7890")
    for spelling in ("0812-3456-7890", "6281234567890"):
        found = await lite.get(
            "/api/v3.1/contacts", params={"phone": spelling}, headers=lite_team.auth
        )
        assert [item["id"] for item in found.json()["items"]] == [contact["id"]]


async def test_a_bot_deal_in_a_room_writes_outbox_rows_on_sqlite(
    lite: httpx.AsyncClient,
    lite_team: TeamHandle,
    sqlite_file: Path,
    enqueued: EnqueueRecorder,
) -> None:
    await enable_parity(lite, lite_team)
    deal = await create_record(
        lite, lite_team, "deals", creator_flag="bot", channel_integration_room_id="room-1"
    )
    rows = stored(sqlite_file, "SELECT kind, record_id FROM outbox_events ORDER BY id")
    assert rows == [("webhook", deal["id"])]
    assert [kind for _, kind in enqueued.items] == ["webhook"]


async def test_the_claim_of_a_create_writes_its_note_job_once_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle, sqlite_file: Path
) -> None:
    """The worker's claim on the embedded database: no Omnichannel link yet, so the
    attempt fails and retries, and the job is written all the same, with the first attempt."""
    await enable_parity(lite, lite_team)
    deal = await create_record(
        lite, lite_team, "deals", creator_flag="bot", channel_integration_room_id="room-1"
    )
    [(event,)] = stored(sqlite_file, "SELECT id FROM outbox_events")
    event_id = int(str(event))
    engine = create_engine(f"sqlite+aiosqlite:///{sqlite_file}")
    policy = DeliveryPolicy.from_settings(crm_settings(f"sqlite+aiosqlite:///{sqlite_file}"))
    try:
        async with httpx.AsyncClient() as webhooks:
            sessions = session_factory(engine)
            flags = LocalFlagCache()
            first = await deliver_batch(sessions, webhooks, flags, event_id, policy)
            stored_jobs = stored(
                sqlite_file,
                "SELECT id, record_id, room_id, status FROM outbox_events"
                " WHERE kind = 'timeline_note'",
            )
            with closing(sqlite3.connect(sqlite_file)) as connection:
                connection.execute("UPDATE outbox_events SET next_attempt_at = '2000-01-01'")
                connection.commit()
            second = await deliver_batch(sessions, webhooks, flags, event_id, policy)
    finally:
        await engine.dispose()

    assert first.own.outcome is second.own.outcome is Outcome.RETRY
    assert [(record, room, status) for _, record, room, status in stored_jobs] == [
        (deal["id"], "room-1", "pending")
    ]
    assert first.note_jobs == [stored_jobs[0][0]] and second.note_jobs == []
    assert len(stored(sqlite_file, "SELECT id FROM outbox_events")) == 2


async def test_a_rejected_create_writes_nothing_on_sqlite(
    lite: httpx.AsyncClient, lite_team: TeamHandle, sqlite_file: Path
) -> None:
    response = await lite.post(
        "/api/v3.1/deals", json={"name": "Deal", "crm_stage_id": 999_999}, headers=lite_team.auth
    )
    assert response.status_code == 422
    assert stored(sqlite_file, "SELECT count(*) FROM deals") == [(0,)]
