"""The delivery log over the admin API: list with filters and paging, detail, replay."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.errors import Unprocessable
from crm_service.events.delivery import deliver
from crm_service.events.models import OutboxEvent
from crm_service.events.service import delivery_service
from crm_service.teams.features import FlagCache
from tests.crm.conftest import ADMIN_KEY, EnqueueRecorder, create_team, enable_parity
from tests.crm.events.conftest import (
    POLICY,
    WEBHOOK_URL,
    LinkedTeam,
    create_record,
    link,
    outbox_rows,
    write_note_jobs,
)

Sessions = async_sessionmaker[AsyncSession]
ADMIN = {"X-Admin-Key": ADMIN_KEY}


async def listed(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await client.get("/admin/deliveries", params=params, headers=ADMIN)


async def items(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await listed(client, **params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


async def fail_delivery(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    outbox_id: int,
) -> None:
    omni.post(WEBHOOK_URL).respond(400, text="bad event")
    await deliver(sessions, webhooks, flags, outbox_id, POLICY)


@pytest.mark.parametrize("headers", [{}, {"X-Admin-Key": "wrong"}])
async def test_the_delivery_log_needs_the_admin_key(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/admin/deliveries", headers=headers)
    assert response.status_code == 401


async def test_entries_show_the_event_and_its_attempts_newest_event_first(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
) -> None:
    first = await create_record(client, linked_team)
    second = await create_record(client, linked_team, "tickets", channel_integration_room_id="r2")
    deal_event, _ticket_event = await outbox_rows(sessions, kind="webhook")
    await fail_delivery(sessions, webhooks, flags, omni, deal_event.id)

    body = (await listed(client)).json()

    assert (body["limit"], body["offset"]) == (50, 0)
    ticket_entry, deal_entry = body["items"]
    assert (ticket_entry["record_id"], deal_entry["record_id"]) == (second["id"], first["id"])
    assert ticket_entry["attempts"] == []
    assert {key: deal_entry[key] for key in ("id", "webhook_id", "event_type", "status")} == {
        "id": deal_event.id,
        "webhook_id": deal_event.webhook_id,
        "event_type": "qontak.crm.deal.create",
        "status": "failed",
    }
    assert deal_entry["team_id"] == linked_team.id
    [attempt] = deal_entry["attempts"]
    assert set(attempt) == {"status_code", "latency_ms", "error", "created_at"}
    assert (attempt["status_code"], attempt["error"]) == (400, "HTTP 400 Bad Request")


async def test_entries_filter_by_status_event_type_and_team(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
) -> None:
    other = await create_team(client, external_company_id="company-other", name="Other")
    await enable_parity(client, other)
    await create_record(client, linked_team)
    await create_record(client, linked_team, "tickets", channel_integration_room_id="r2")
    await create_record(client, other, "tickets", channel_integration_room_id="r3")
    deal_event, ticket_event, other_event = await outbox_rows(sessions, kind="webhook")
    await fail_delivery(sessions, webhooks, flags, omni, deal_event.id)

    assert [e["id"] for e in await items(client, status="failed")] == [deal_event.id]
    assert [e["id"] for e in await items(client, status="pending")] == [
        other_event.id,
        ticket_event.id,
    ]
    assert [e["id"] for e in await items(client, event_type="qontak.crm.ticket.create")] == [
        other_event.id,
        ticket_event.id,
    ]
    assert [e["id"] for e in await items(client, team_id=other.id)] == [other_event.id]


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"event_type": "qontak.crm.contact.create"}, {"limit": 0}]
)
async def test_an_unknown_filter_value_is_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await listed(client, **params)
    assert response.status_code == 422


async def test_the_service_refuses_an_unknown_status_for_the_cli(sessions: Sessions) -> None:
    async with sessions() as session:
        with pytest.raises(Unprocessable, match="status must be one of pending, delivered, failed"):
            await delivery_service.list(session, status="lost")


async def test_a_limit_above_one_hundred_is_clamped_and_offset_pages(
    client: httpx.AsyncClient, linked_team: LinkedTeam
) -> None:
    for room in range(3):
        await create_record(client, linked_team, channel_integration_room_id=f"room-{room}")

    clamped = (await listed(client, limit=500)).json()
    paged = (await listed(client, limit=2, offset=2)).json()

    assert (clamped["limit"], len(clamped["items"])) == (100, 3)
    assert (paged["limit"], paged["offset"], len(paged["items"])) == (2, 2, 1)


async def test_the_detail_shows_the_receivers_answer_excerpt(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
) -> None:
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")
    await fail_delivery(sessions, webhooks, flags, omni, event.id)

    response = await client.get(f"/admin/deliveries/{event.id}", headers=ADMIN)

    assert response.status_code == 200
    [attempt] = response.json()["attempts"]
    assert attempt["response_excerpt"] == "bad event"


async def test_replay_makes_a_failed_event_pending_again_and_enqueues_it(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    enqueued: EnqueueRecorder,
) -> None:
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")
    await fail_delivery(sessions, webhooks, flags, omni, event.id)
    enqueued.items.clear()

    response = await client.post(f"/admin/deliveries/{event.id}/replay", headers=ADMIN)

    assert response.status_code == 202, response.text
    entry = response.json()
    assert (entry["id"], entry["webhook_id"]) == (event.id, event.webhook_id)
    assert (entry["status"], entry["attempt_count"], entry["last_error"]) == ("pending", 0, None)
    assert [a["status_code"] for a in entry["attempts"]] == [400]
    assert enqueued.items == [(event.id, "webhook")]


async def test_a_replayed_event_gets_a_fresh_retry_schedule(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
) -> None:
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")
    async with sessions() as session:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id)
            .values(status="failed", attempt_count=len(POLICY.schedule) + 1)
        )
        await session.commit()
    await client.post(f"/admin/deliveries/{event.id}/replay", headers=ADMIN)
    omni.post(WEBHOOK_URL).respond(503)

    result = await deliver(sessions, webhooks, flags, event.id, POLICY)

    assert result.retry_in is not None


async def test_replaying_a_pending_event_is_409(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")

    response = await client.post(f"/admin/deliveries/{event.id}/replay", headers=ADMIN)

    assert response.status_code == 409
    assert "still pending" in response.json()["detail"]


async def test_replaying_an_unknown_delivery_is_404(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")
    [note_job] = await write_note_jobs(sessions, [event.id])

    unknown = await client.post("/admin/deliveries/999999/replay", headers=ADMIN)
    not_a_webhook = await client.post(f"/admin/deliveries/{note_job}/replay", headers=ADMIN)

    assert (unknown.status_code, not_a_webhook.status_code) == (404, 404)
    assert unknown.json() == {"detail": "delivery 999999 not found"}


async def test_a_relinked_team_gets_replays_at_its_new_address(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
) -> None:
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")
    await fail_delivery(sessions, webhooks, flags, omni, event.id)
    await link(client, linked_team.id, linked_team.webhook_secret, "http://new-omni.test")
    moved = omni.post("http://new-omni.test/webhooks/crm").respond(200)

    await client.post(f"/admin/deliveries/{event.id}/replay", headers=ADMIN)
    await deliver(sessions, webhooks, flags, event.id, POLICY)

    assert moved.call_count == 1
