"""Latest-wins previews per room (DESIGN.md §4 "Ordering", §7).

Rules, applied under the room's lock so concurrent events of one room take turns:

* Per record: create and update events both carry the full display state and apply only
  when their ``version`` is newer than the one held; an update that arrives before its
  create is simply the first state seen. A delete is final: it leaves a tombstone (even
  when it is the first event seen), and nothing applies to a tombstone afterwards.
* Per room and kind: the record with the greatest (CRM ``created_at``, ``id``) among all
  the room has seen, deleted ones included, is the room's newest. It is the active
  preview unless it is deleted, in which case the room shows its call to action; records
  it replaced never come back.

Every rule depends only on the set of events seen, not on their order, so any arrival
order (and any duplication) ends in the state in-order delivery gives.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omni_service.previews.models import DealPreview, PreviewState, TicketPreview
from omni_service.previews.schemas import CallsToAction, DealCard, RoomPreview, TicketCard
from omni_service.rooms import service as rooms_service
from shared_contracts.events import (
    DealData,
    DealDeleteData,
    RecordKind,
    TicketData,
    TicketDeleteData,
)

Preview = TypeVar("Preview", DealPreview, TicketPreview)
RecordState = DealData | TicketData
RecordDelete = DealDeleteData | TicketDeleteData


async def apply_event(
    session: AsyncSession,
    organization_id: int,
    kind: RecordKind,
    data: RecordState | RecordDelete,
    *,
    now: datetime,
) -> bool:
    """Apply one create, update (``RecordState``) or delete event of a record.

    Returns whether it changed what is held; ``False`` means the event was stale.
    """
    if kind is RecordKind.DEAL:
        return await _apply(session, DealPreview, organization_id, data, now=now)
    return await _apply(session, TicketPreview, organization_id, data, now=now)


async def _apply(
    session: AsyncSession,
    model: type[Preview],
    organization_id: int,
    data: RecordState | RecordDelete,
    *,
    now: datetime,
) -> bool:
    room_id = data.channel_integration_room_id
    await rooms_service.lock_room(session, organization_id, room_id)
    row = await session.scalar(
        select(model).where(model.organization_id == organization_id, model.record_id == data.id)
    )
    if row is not None and row.room_id != room_id:
        # The CRM sets a record's room once, at create; an event naming another room
        # cannot be in order with what we hold, so it must not move the record.
        return False
    if row is not None and row.state == PreviewState.DELETED:
        return False

    if isinstance(data, DealDeleteData | TicketDeleteData):
        if row is None:
            row = model(
                organization_id=organization_id,
                room_id=room_id,
                record_id=data.id,
                crm_created_at=data.created_at,
                version=data.version,
            )
            session.add(row)
        # A delete wins whatever its version: it is the record's last event.
        row.version = max(row.version, data.version)
        row.state = PreviewState.DELETED
        row.deleted_at = now
    elif row is None:
        row = model(
            organization_id=organization_id,
            room_id=room_id,
            record_id=data.id,
            crm_created_at=data.created_at,
            # Settled below: it becomes active only if it is the room's newest.
            state=PreviewState.REPLACED,
        )
        row.show(data)
        session.add(row)
    elif data.version > row.version:
        # ``crm_created_at`` is the record's identity in the room's order; it is kept from
        # the first event so a record cannot change places.
        row.show(data)
    else:
        return False

    await session.flush()
    await _settle_room(session, model, organization_id, room_id)
    return True


async def _settle_room(
    session: AsyncSession, model: type[Preview], organization_id: int, room_id: str
) -> None:
    """Make the room's newest record its active preview, unless it is deleted."""
    in_room = (model.organization_id == organization_id, model.room_id == room_id)
    newest = await session.scalar(
        select(model)
        .where(*in_room)
        .order_by(model.crm_created_at.desc(), model.record_id.desc())
        .limit(1)
    )
    assert newest is not None, "settled right after writing a row of this room"
    # Demote before promoting: the partial unique index allows one active row at any time.
    await session.execute(
        update(model)
        .where(*in_room, model.state == PreviewState.ACTIVE, model.id != newest.id)
        .values(state=PreviewState.REPLACED)
    )
    if newest.state == PreviewState.REPLACED:
        newest.state = PreviewState.ACTIVE
        await session.flush()


async def room_preview(session: AsyncSession, organization_id: int, room_id: str) -> RoomPreview:
    """What the inbox shows for the room: this organization's active previews only."""
    deal = await session.scalar(
        select(DealPreview).where(
            DealPreview.organization_id == organization_id,
            DealPreview.room_id == room_id,
            DealPreview.state == PreviewState.ACTIVE,
        )
    )
    ticket = await session.scalar(
        select(TicketPreview).where(
            TicketPreview.organization_id == organization_id,
            TicketPreview.room_id == room_id,
            TicketPreview.state == PreviewState.ACTIVE,
        )
    )
    return RoomPreview(
        room_id=room_id,
        deal=DealCard.of(deal) if deal else None,
        ticket=TicketCard.of(ticket) if ticket else None,
        cta=CallsToAction(create_deal=deal is None, create_ticket=ticket is None),
    )
