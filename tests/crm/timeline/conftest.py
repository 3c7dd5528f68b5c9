"""Teams linked to a (mocked) Omni, bot/AI records, and running the note service on the
note jobs the worker's deliveries write from the events the API wrote."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import select

from crm_service.database import utcnow
from crm_service.events.models import OutboxEvent
from crm_service.events.outbox import note_jobs_of_creates
from crm_service.settings import Settings
from crm_service.timeline.service import NoteOutcome, timeline_service
from shared_contracts.signatures import generate_secret
from tests.crm.conftest import ADMIN_KEY, TeamHandle, create_team, enable_parity

OMNI_BASE_URL = "http://omni.internal.test"
OMNI_PUBLIC_URL = "https://inbox.example.test"
OMNI_API_TOKEN = "omni-token-7f3a9c0e51d24b8b"


async def link_omnichannel(
    client: httpx.AsyncClient,
    team: TeamHandle,
    *,
    base_url: str = OMNI_BASE_URL,
    public_url: str = OMNI_PUBLIC_URL,
    api_token: str = OMNI_API_TOKEN,
) -> None:
    response = await client.put(
        f"/admin/teams/{team.id}/omnichannel",
        json={
            "base_url": base_url,
            "public_url": public_url,
            "webhook_secret": generate_secret(),
            "api_token": api_token,
        },
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 200, response.text


async def create_record(
    client: httpx.AsyncClient,
    team: TeamHandle,
    kind: str = "deals",
    *,
    room: str | None = "room-1",
    creator_flag: str | None = "bot",
    name: str = "Record from chat",
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if room is not None:
        body["channel_integration_room_id"] = room
    if creator_flag is not None:
        body["creator_flag"] = creator_flag
    response = await client.post(f"/api/v3.1/{kind}", json=body, headers=team.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def timeline_rows(crm_app: FastAPI, record_kind: str, record_id: int) -> list[OutboxEvent]:
    async with crm_app.state.session_factory() as session:
        rows = await session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.kind == "timeline_note",
                OutboxEvent.record_kind == record_kind,
                OutboxEvent.record_id == record_id,
            )
        )
        return list(rows)


async def write_note_jobs(crm_app: FastAPI) -> list[int]:
    """What the deliveries do when they attempt the webhook rows the API wrote: write the
    timeline-note job of each create event among them (the delivery's own statement,
    ``outbox.note_jobs_of_creates``; its place in the claim is tested with the delivery).
    Returns the jobs written (none for an event whose job exists)."""
    async with crm_app.state.session_factory() as session:
        events = list(
            await session.scalars(select(OutboxEvent.id).where(OutboxEvent.kind == "webhook"))
        )
        if not events:
            return []
        dialect = session.get_bind().dialect.name
        jobs = list(
            (
                await session.execute(
                    note_jobs_of_creates(dialect), {"ids": events, "now": utcnow()}
                )
            ).scalars()
        )
        await session.commit()
        return jobs


async def note_row_id(crm_app: FastAPI, record_kind: str, record_id: int) -> int:
    """The record's timeline-note job, once the worker's attempt of its create has written it."""
    await write_note_jobs(crm_app)
    rows = await timeline_rows(crm_app, record_kind, record_id)
    assert len(rows) == 1, rows
    return rows[0].id


async def write_note(crm_app: FastAPI, outbox_id: int, settings: Settings) -> NoteOutcome:
    # A client with long timeouts of its own, like the worker's: the Omni timeout must hold.
    async with httpx.AsyncClient(timeout=60) as http:
        return await timeline_service.write_for_outbox_row(
            crm_app.state.session_factory, outbox_id, http, settings
        )


async def fetch_timeline(
    client: httpx.AsyncClient, team: TeamHandle, kind: str, record_id: int, **params: Any
) -> httpx.Response:
    return await client.get(
        f"/api/mobile/v2.8/{kind}/{record_id}/timeline", params=params, headers=team.auth
    )


_message_ids = itertools.count(1)


def history_page(*messages: Any) -> dict[str, Any]:
    """An Omni history page, newest first as Omni answers."""
    return {"items": list(messages), "offset": 1, "limit": 100, "total": len(messages)}


def message(
    sender: str, text: str, created_at: str, sender_type: str = "customer"
) -> dict[str, Any]:
    return {
        "id": next(_message_ids),
        "room_id": "room-1",
        "sender": sender,
        "sender_type": sender_type,
        "text": text,
        "created_at": created_at,
    }


@pytest.fixture
def omni() -> Iterator[respx.MockRouter]:
    """Omni's edge, mocked (requests to anything else are refused by respx)."""
    with respx.mock(base_url=OMNI_BASE_URL, assert_all_called=False) as router:
        yield router


def history_route(omni: respx.MockRouter, room: str) -> respx.Route:
    return omni.get(f"/api/open/v1/messages/rooms/{room}")


@pytest.fixture
async def linked_team(client: httpx.AsyncClient) -> TeamHandle:
    """A team with the flag on and an Omnichannel link to the mocked Omni."""
    team = await create_team(client, external_company_id="company-linked", name="Linked")
    await link_omnichannel(client, team)
    await enable_parity(client, team)
    return team
