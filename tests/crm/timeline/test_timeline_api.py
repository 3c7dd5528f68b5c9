"""``GET /api/mobile/v2.8/{deals|tickets}/{id}/timeline``: tenant-scoped, newest first,
paged."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import select

from crm_service.events.models import OutboxEvent
from crm_service.settings import Settings
from crm_service.timeline.models import HUB_CHANNEL_CHAT, Note
from tests.crm.conftest import TeamHandle, create_team, enable_parity
from tests.crm.timeline.conftest import (
    create_record,
    fetch_timeline,
    history_page,
    history_route,
    link_omnichannel,
    message,
    note_row_id,
    timeline_rows,
    write_note,
    write_note_jobs,
)

T0 = datetime(2026, 11, 27, 21, 5, 29, 123456, tzinfo=UTC)
RFC3339_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def add_notes(
    crm_app: FastAPI, team: TeamHandle, record_kind: str, record_id: int, *moments: datetime
) -> list[int]:
    """One comment-type note per moment, in the given order; returns their ids."""
    async with crm_app.state.session_factory() as session, session.begin():
        notes = [
            Note(
                team_id=team.id,
                record_kind=record_kind,
                record_id=record_id,
                type="comment",
                excerpt=f"note {index}",
                created_at=moment,
            )
            for index, moment in enumerate(moments)
        ]
        session.add_all(notes)
        await session.flush()
        return [note.id for note in notes]


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def write_every_pending_note(crm_app: FastAPI, settings: Settings) -> None:
    """What the worker would do with whatever events the API wrote: write their note jobs
    (as the delivery claims do), then every pending note."""
    await write_note_jobs(crm_app)
    async with crm_app.state.session_factory() as session:
        pending = await session.scalars(
            select(OutboxEvent.id).where(
                OutboxEvent.kind == "timeline_note", OutboxEvent.status == "pending"
            )
        )
        outbox_ids = list(pending)
    for outbox_id in outbox_ids:
        await write_note(crm_app, outbox_id, settings)


async def test_entries_are_listed_newest_first(
    client: httpx.AsyncClient, crm_app: FastAPI, team: TeamHandle
) -> None:
    deal = await create_record(client, team, creator_flag=None)
    first, third, second, also_second = await add_notes(
        crm_app,
        team,
        "deal",
        deal["id"],
        T0,
        T0 + timedelta(minutes=2),
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=1),
    )

    response = await fetch_timeline(client, team, "deals", deal["id"])

    # Equal times: the later note (higher id) first.
    assert ids(response) == [third, also_second, second, first]


async def test_pages_are_numbered_from_one_with_the_total(
    client: httpx.AsyncClient, crm_app: FastAPI, team: TeamHandle
) -> None:
    deal = await create_record(client, team, creator_flag=None)
    oldest_first = await add_notes(
        crm_app, team, "deal", deal["id"], *(T0 + timedelta(minutes=m) for m in range(5))
    )

    response = await fetch_timeline(client, team, "deals", deal["id"], offset=2, limit=2)

    assert ids(response) == [oldest_first[2], oldest_first[1]]
    body = response.json()
    assert (body["offset"], body["limit"], body["total"]) == (2, 2, 5)


async def test_a_page_past_the_end_is_empty(
    client: httpx.AsyncClient, crm_app: FastAPI, team: TeamHandle
) -> None:
    deal = await create_record(client, team, creator_flag=None)
    await add_notes(crm_app, team, "deal", deal["id"], T0, T0)

    response = await fetch_timeline(client, team, "deals", deal["id"], offset=10**12)

    assert (ids(response), response.json()["total"]) == ([], 2)


async def test_the_default_page_is_the_newest_20(
    client: httpx.AsyncClient, crm_app: FastAPI, team: TeamHandle
) -> None:
    deal = await create_record(client, team, creator_flag=None)
    oldest_first = await add_notes(
        crm_app, team, "deal", deal["id"], *(T0 + timedelta(seconds=s) for s in range(25))
    )

    response = await fetch_timeline(client, team, "deals", deal["id"])

    assert ids(response) == oldest_first[:4:-1]
    assert (response.json()["offset"], response.json()["limit"]) == (1, 20)


async def test_a_limit_above_100_is_clamped_to_100(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_record(client, team, creator_flag=None)

    response = await fetch_timeline(client, team, "deals", deal["id"], limit=5_000)

    assert response.status_code == 200, response.text
    assert response.json()["limit"] == 100


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": -3}, {"offset": 0}, {"offset": "first"}],
    ids=["limit-0", "limit-negative", "offset-0", "offset-not-a-number"],
)
async def test_a_page_number_or_size_below_one_is_refused_with_422(
    client: httpx.AsyncClient, team: TeamHandle, params: dict[str, Any]
) -> None:
    deal = await create_record(client, team, creator_flag=None)

    response = await fetch_timeline(client, team, "deals", deal["id"], **params)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


@pytest.mark.parametrize("kind", ["deals", "tickets"])
async def test_another_teams_record_timeline_is_404(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    team: TeamHandle,
    other_team: TeamHandle,
    kind: str,
) -> None:
    record = await create_record(client, team, kind, creator_flag=None)
    await add_notes(crm_app, team, kind[:-1], record["id"], T0)

    response = await fetch_timeline(client, other_team, kind, record["id"])

    assert response.status_code == 404
    assert response.json() == {"detail": f"{kind[:-1]} {record['id']} not found"}


async def test_a_deleted_records_timeline_is_404(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    ticket = await create_record(client, team, "tickets", creator_flag=None)
    deleted = await client.delete(f"/api/v3.1/tickets/{ticket['id']}", headers=team.auth)
    assert deleted.status_code == 204

    response = await fetch_timeline(client, team, "tickets", ticket["id"])

    assert response.status_code == 404


async def test_a_timeline_without_a_company_token_is_401(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_record(client, team, creator_flag=None)

    response = await client.get(f"/api/mobile/v2.8/deals/{deal['id']}/timeline")

    assert response.status_code == 401
    assert response.json() == {"detail": "missing Authorization header"}


async def test_a_timeline_lists_only_its_own_records_notes(
    client: httpx.AsyncClient, crm_app: FastAPI, team: TeamHandle
) -> None:
    deal = await create_record(client, team, creator_flag=None)
    ticket = await create_record(client, team, "tickets", creator_flag=None)
    other_deal = await create_record(client, team, creator_flag=None)
    (own,) = await add_notes(crm_app, team, "deal", deal["id"], T0)
    await add_notes(crm_app, team, "ticket", ticket["id"], T0)
    await add_notes(crm_app, team, "deal", other_deal["id"], T0)

    response = await fetch_timeline(client, team, "deals", deal["id"])

    assert ids(response) == [own]


async def test_an_entry_has_exactly_the_contract_fields(
    client: httpx.AsyncClient, crm_app: FastAPI, settings: Settings
) -> None:
    team = await create_team(client, external_company_id="company-shape", name="Shape")
    await link_omnichannel(client, team)
    await enable_parity(client, team)
    deal = await create_record(client, team, room="room-1", creator_flag="bot")
    with respx.mock(base_url="http://omni.internal.test") as omni:
        history_route(omni, "room-1").respond(
            json=history_page(message("Budi", "hi", "2026-11-27T21:05:29Z"))
        )
        await write_note(crm_app, await note_row_id(crm_app, "deal", deal["id"]), settings)

    (entry,) = (await fetch_timeline(client, team, "deals", deal["id"])).json()["items"]

    assert sorted(entry) == sorted(
        [
            "id",
            "type",
            "excerpt",
            "room_deeplink",
            "creator_flag",
            "creator_name",
            "channel_room_id",
            "channel_organization_id",
            "created_at",
        ]
    )
    assert entry["type"] == HUB_CHANNEL_CHAT
    assert RFC3339_MICROS.match(entry["created_at"]), entry["created_at"]


async def test_a_bot_record_without_a_room_gets_no_note(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    deal = await create_record(client, linked_team, room=None, creator_flag="bot")

    await write_every_pending_note(crm_app, settings)

    assert await timeline_rows(crm_app, "deal", deal["id"]) == []
    assert ids(await fetch_timeline(client, linked_team, "deals", deal["id"])) == []


async def test_a_bot_record_with_the_flag_off_gets_no_note(
    client: httpx.AsyncClient, crm_app: FastAPI, settings: Settings, omni: respx.MockRouter
) -> None:
    team = await create_team(client, external_company_id="company-flag-off", name="Off")
    await link_omnichannel(client, team)
    await enable_parity(client, team, enabled=False)
    ticket = await create_record(client, team, "tickets", room="room-1", creator_flag="bot")

    await write_every_pending_note(crm_app, settings)

    assert await timeline_rows(crm_app, "ticket", ticket["id"]) == []
    assert ids(await fetch_timeline(client, team, "tickets", ticket["id"])) == []


async def test_a_record_made_by_a_person_gets_no_note(
    client: httpx.AsyncClient,
    crm_app: FastAPI,
    settings: Settings,
    linked_team: TeamHandle,
    omni: respx.MockRouter,
) -> None:
    deal = await create_record(client, linked_team, room="room-1", creator_flag=None)

    await write_every_pending_note(crm_app, settings)

    assert await timeline_rows(crm_app, "deal", deal["id"]) == []
    assert ids(await fetch_timeline(client, linked_team, "deals", deal["id"])) == []
