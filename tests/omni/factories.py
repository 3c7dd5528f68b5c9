"""Event payloads and signed webhook requests, as the CRM would send them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from omni_service.settings import Settings
from shared_contracts.creators import CreatorFlag
from shared_contracts.events import (
    DealData,
    DealDeleteData,
    EventType,
    NamedRef,
    TicketData,
    TicketDeleteData,
    build_envelope,
)
from shared_contracts.signatures import generate_secret, sign_headers

ADMIN_KEY = "test-admin-key"
T0 = datetime(2026, 11, 27, 21, 5, 29, 123456, tzinfo=UTC)


def omni_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, admin_key=ADMIN_KEY, **overrides)


@dataclass(frozen=True)
class OrgHandle:
    id: int
    name: str
    company_id: str
    token: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_organization(
    client: httpx.AsyncClient, company_id: str, *, secret: str | None = None
) -> OrgHandle:
    secret = secret or generate_secret()
    response = await client.post(
        "/admin/organizations",
        json={"name": f"Org {company_id}", "company_id": company_id, "webhook_secret": secret},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return OrgHandle(body["id"], body["name"], body["company_id"], body["api_token"], secret)


def deal(
    record_id: int,
    *,
    company_id: str,
    room_id: str = "room-1",
    version: int = 1,
    created_at: datetime = T0,
    **overrides: Any,
) -> DealData:
    values: dict[str, Any] = {
        "id": record_id,
        "slug": f"deal-{record_id}",
        "company_id": company_id,
        "channel_integration_room_id": room_id,
        "name": f"Deal {record_id} v{version}",
        "stage": NamedRef(id=11, name="New"),
        "pipeline": NamedRef(id=7, name="Sales"),
        "size": Decimal("1500.50"),
        "status": "open",
        "creator_flag": CreatorFlag.BOT,
        "creator_name": "Bot",
        "external_url": f"https://crm.example.test/deals/{record_id}",
        "created_at": created_at,
        "updated_at": created_at + timedelta(seconds=version),
        "version": version,
    }
    values.update(overrides)
    return DealData(**values)


def ticket(
    record_id: int,
    *,
    company_id: str,
    room_id: str = "room-1",
    version: int = 1,
    created_at: datetime = T0,
    **overrides: Any,
) -> TicketData:
    values: dict[str, Any] = {
        "id": record_id,
        "unique_ticket_id": f"TCK-{record_id:06d}",
        "company_id": company_id,
        "channel_integration_room_id": room_id,
        "name": f"Ticket {record_id} v{version}",
        "description": "Customer cannot log in",
        "status": "open",
        "priority": "high",
        "creator_flag": CreatorFlag.AGENTIC_AI,
        "creator_name": "AI",
        "external_url": f"https://crm.example.test/tickets/{record_id}",
        "created_at": created_at,
        "updated_at": created_at + timedelta(seconds=version),
        "version": version,
    }
    values.update(overrides)
    return TicketData(**values)


def deal_deleted(
    record_id: int,
    *,
    company_id: str,
    room_id: str = "room-1",
    version: int,
    created_at: datetime = T0,
) -> DealDeleteData:
    return DealDeleteData(
        id=record_id,
        company_id=company_id,
        channel_integration_room_id=room_id,
        created_at=created_at,
        version=version,
        slug=f"deal-{record_id}",
    )


def ticket_deleted(
    record_id: int,
    *,
    company_id: str,
    room_id: str = "room-1",
    version: int,
    created_at: datetime = T0,
) -> TicketDeleteData:
    return TicketDeleteData(
        id=record_id,
        company_id=company_id,
        channel_integration_room_id=room_id,
        created_at=created_at,
        version=version,
        unique_ticket_id=f"TCK-{record_id:06d}",
    )


def signed_request(
    event_type: EventType,
    data: DealData | TicketData | DealDeleteData | TicketDeleteData,
    secrets: list[str],
    *,
    webhook_id: str | None = None,
    at: datetime | None = None,
) -> tuple[str, dict[str, str]]:
    body = build_envelope(event_type, data, at=at)
    headers = sign_headers(webhook_id or f"msg_{uuid.uuid4().hex}", body, secrets, at=at)
    return body, {**headers, "content-type": "application/json"}


async def send(
    client: httpx.AsyncClient,
    org: OrgHandle,
    event_type: EventType,
    data: DealData | TicketData | DealDeleteData | TicketDeleteData,
    *,
    webhook_id: str | None = None,
    at: datetime | None = None,
    secrets: list[str] | None = None,
) -> httpx.Response:
    body, headers = signed_request(
        event_type, data, secrets or [org.secret], webhook_id=webhook_id, at=at
    )
    return await client.post("/webhooks/crm", content=body, headers=headers)


async def preview(client: httpx.AsyncClient, org: OrgHandle, room_id: str = "room-1") -> Any:
    response = await client.get(f"/api/v1/rooms/{room_id}/crm_preview", headers=org.auth)
    assert response.status_code == 200, response.text
    return response.json()
