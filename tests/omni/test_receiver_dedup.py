"""De-duplication by webhook id, and concurrency on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from omni_service.previews.models import DealPreview, PreviewState
from omni_service.receiver.models import ReceivedEvent
from shared_contracts.events import EventType
from tests.omni.factories import T0, OrgHandle, deal, preview, send, signed_request


async def test_resent_event_is_answered_as_duplicate(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [org.secret]
    )
    first = await client.post("/webhooks/crm", content=body, headers=headers)

    again = await client.post("/webhooks/crm", content=body, headers=headers)

    assert (first.json(), again.json()) == ({"status": "applied"}, {"status": "duplicate"})


async def test_duplicate_id_is_not_applied_even_with_another_body(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(
        client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id), webhook_id="msg_1"
    )

    response = await send(
        client,
        org,
        EventType.DEAL_UPDATE,
        deal(1, company_id=org.company_id, version=2),
        webhook_id="msg_1",
    )

    assert response.json() == {"status": "duplicate"}
    assert (await preview(client, org))["deal"]["version"] == 1


async def test_received_event_is_stored_with_its_outcome(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(
        client,
        org,
        EventType.DEAL_UPDATE,
        deal(1, company_id=org.company_id, version=2),
        webhook_id="msg_a",
    )
    await send(
        client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id), webhook_id="msg_b"
    )

    async with app.state.session_factory() as session:
        rows = (
            await session.execute(
                select(
                    ReceivedEvent.webhook_id, ReceivedEvent.event_type, ReceivedEvent.outcome
                ).order_by(ReceivedEvent.id)
            )
        ).all()

    assert [tuple(row) for row in rows] == [
        ("msg_a", "qontak.crm.deal.update", "applied"),
        ("msg_b", "qontak.crm.deal.create", "ignored"),
    ]


async def test_concurrent_duplicates_are_applied_once(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [org.secret]
    )

    responses = await asyncio.gather(
        *(client.post("/webhooks/crm", content=body, headers=headers) for _ in range(12))
    )

    statuses = sorted(response.json()["status"] for response in responses)
    assert statuses == ["applied"] + ["duplicate"] * 11
    async with app.state.session_factory() as session:
        assert len((await session.scalars(select(ReceivedEvent))).all()) == 1


async def test_same_webhook_id_from_two_organizations_is_applied_for_each(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    mine = await send(
        client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id), webhook_id="msg_1"
    )

    theirs = await send(
        client,
        other_org,
        EventType.DEAL_CREATE,
        deal(2, company_id=other_org.company_id),
        webhook_id="msg_1",
    )

    assert (mine.json(), theirs.json()) == ({"status": "applied"}, {"status": "applied"})


async def test_concurrent_creates_for_one_room_leave_exactly_the_newest_active(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    records = list(range(1, 21))
    # Sent newest first, so the natural finishing order is the wrong one.
    sends = [
        send(
            client,
            org,
            EventType.DEAL_CREATE,
            deal(record, company_id=org.company_id, created_at=T0 + timedelta(seconds=record)),
        )
        for record in reversed(records)
    ]

    responses = await asyncio.gather(*sends)

    assert {response.status_code for response in responses} == {200}
    async with app.state.session_factory() as session:
        active = (
            await session.scalars(
                select(DealPreview.record_id).where(DealPreview.state == PreviewState.ACTIVE)
            )
        ).all()
    assert active == [20]
    assert (await preview(client, org))["deal"]["id"] == 20
