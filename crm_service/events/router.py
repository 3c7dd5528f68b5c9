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
    """The webhook delivery log, newest first: each event sent (or to be sent) to Omni,
    with its status (`pending`, `delivered`, `failed`) and every attempt so far.

    For the operator, as `crm-parity deliveries list` is. Filter by `status`,
    `event_type` and `team_id`; page with `limit` (clamped to 100) and `offset` (in rows).
    """
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
    """One delivery with all its attempts, each with the start of the receiver's answer
    (at most 1 KiB): what to read when an event failed (as `crm-parity deliveries inspect`).
    An id that is not a webhook delivery is 404.
    """
    return await delivery_service.get(session, delivery_id)


@admin_router.post("/{delivery_id}/replay", status_code=202)
async def replay_delivery(delivery_id: DeliveryId, session: SessionDep) -> DeliveryOut:
    """Send a delivered or failed event again and answer 202 once it is queued.

    The same row and the same `webhook-id` (so a receiver that already applied it
    de-duplicates it), a fresh retry schedule, the attempt history kept. An event still
    `pending` is 409: its attempts are under way or scheduled. An unknown id is 404.
    """
    return await delivery_service.replay(session, delivery_id)
