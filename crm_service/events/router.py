"""Admin API of the delivery log: ``/admin/deliveries`` (header ``X-Admin-Key``)."""

from __future__ import annotations

from fastapi import APIRouter

from crm_service.dependencies import SessionDep
from crm_service.events.models import OutboxStatus
from crm_service.events.schemas import DEFAULT_PAGE, DeliveryDetail, DeliveryOut, DeliveryPage
from crm_service.events.service import delivery_service
from crm_service.teams.auth import AdminOnly
from service_kit.bounds import PageSize, PathId, QueryId, RowOffset
from shared_contracts.events import EventType

admin_router = APIRouter(prefix="/admin/deliveries", tags=["admin"], dependencies=[AdminOnly])

DeliveryId = PathId


@admin_router.get("")
async def list_deliveries(
    session: SessionDep,
    status: OutboxStatus | None = None,
    event_type: EventType | None = None,
    team_id: QueryId | None = None,
    # Above the maximum is clamped by the service, not refused (DESIGN.md §10).
    limit: PageSize = DEFAULT_PAGE,
    offset: RowOffset = 0,
) -> DeliveryPage:
    return await delivery_service.list(
        session,
        status=status,
        event_type=event_type,
        team_id=team_id,
        limit=limit,
        offset=offset,
    )


@admin_router.get("/{delivery_id}")
async def get_delivery(delivery_id: DeliveryId, session: SessionDep) -> DeliveryDetail:
    return await delivery_service.get(session, delivery_id)


@admin_router.post("/{delivery_id}/replay", status_code=202)
async def replay_delivery(delivery_id: DeliveryId, session: SessionDep) -> DeliveryOut:
    return await delivery_service.replay(session, delivery_id)
