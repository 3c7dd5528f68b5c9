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
from typing import Any, TypeVar

from sqlalchemy import Boolean, ColumnElement, Select, and_, bindparam, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from omni_service.organizations.models import Organization
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


def _record_of(model: type[Preview]) -> Select[Any]:
    return select(model).where(
        model.organization_id == bindparam("organization_id"),
        model.record_id == bindparam("record_id"),
    )


def _newest_in_room(model: type[Preview]) -> Select[Any]:
    return (
        select(model)
        .where(
            model.organization_id == bindparam("organization_id"),
            model.room_id == bindparam("room_id"),
        )
        .order_by(model.crm_created_at.desc(), model.record_id.desc())
        .limit(1)
    )


# Built once at import: every event runs one or both per kind.
_RECORD_OF: dict[type[Any], Select[Any]] = {
    DealPreview: _record_of(DealPreview),
    TicketPreview: _record_of(TicketPreview),
}
_NEWEST_IN_ROOM: dict[type[Any], Select[Any]] = {
    DealPreview: _newest_in_room(DealPreview),
    TicketPreview: _newest_in_room(TicketPreview),
}


def _apply_in_database(kind: RecordKind) -> Select[Any]:
    """The same rules as :func:`_apply`, as the PostgreSQL function migration 0002
    creates: one round trip instead of three to six."""
    function = getattr(func, f"omni_apply_{kind.value}_event")
    return select(
        function(
            bindparam("organization_id"),
            bindparam("record", type_=JSONB),
            bindparam("deleted"),
            bindparam("now"),
            type_=Boolean,
        )
    )


_APPLY_IN_DATABASE = {kind: _apply_in_database(kind) for kind in RecordKind}


def is_delete(data: RecordState | RecordDelete) -> bool:
    return isinstance(data, DealDeleteData | TicketDeleteData)


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
    if session.get_bind().dialect.name == "postgresql":
        changed = await session.scalar(
            _APPLY_IN_DATABASE[kind],
            {
                "organization_id": organization_id,
                "record": data.model_dump(mode="json"),
                "deleted": is_delete(data),
                "now": now,
            },
        )
        return bool(changed)
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
    # The display state a create or update carries; a delete carries none.
    state = None if isinstance(data, DealDeleteData | TicketDeleteData) else data
    await rooms_service.lock_room(session, organization_id, room_id)
    row: Preview | None = await session.scalar(
        _RECORD_OF[model], {"organization_id": organization_id, "record_id": data.id}
    )

    if row is not None:
        if row.room_id != room_id or row.state == PreviewState.DELETED:
            # The CRM sets a record's room once, at create, so an event naming another
            # room cannot be in order with what we hold; and a tombstone is final.
            return False
        # A known record keeps its place in the room's order (``crm_created_at`` is kept
        # from its first event), so only its own row changes.
        if state is None:
            # A delete wins whatever its version: it is the record's last event. Deleting
            # the active preview leaves the room at its call to action, because this
            # record stays the room's newest.
            row.version = max(row.version, data.version)
            row.state = PreviewState.DELETED
            row.deleted_at = now
        elif state.version > row.version:
            row.show(state)
        else:
            return False
        await session.flush()
        return True

    # The record's first event: either it is newer than every record the room has seen
    # and takes the room, or it is kept as replaced (or deleted) and never shows.
    newest: Preview | None = await session.scalar(
        _NEWEST_IN_ROOM[model], {"organization_id": organization_id, "room_id": room_id}
    )
    is_newest = newest is None or (data.created_at, data.id) > (
        newest.crm_created_at,
        newest.record_id,
    )
    if is_newest and newest is not None and newest.state == PreviewState.ACTIVE:
        # Demote before inserting: the partial unique index allows one active row at a time.
        newest.state = PreviewState.REPLACED
        await session.flush()
    row = model(
        organization_id=organization_id,
        room_id=room_id,
        record_id=data.id,
        crm_created_at=data.created_at,
        version=data.version,
    )
    if state is None:
        row.state = PreviewState.DELETED
        row.deleted_at = now
    else:
        row.state = PreviewState.ACTIVE if is_newest else PreviewState.REPLACED
        row.show(state)
    session.add(row)
    await session.flush()
    return True


def _active_in_room(model: type[Preview]) -> ColumnElement[bool]:
    return and_(
        model.organization_id == Organization.id,
        model.room_id == bindparam("room_id"),
        model.state == PreviewState.ACTIVE,
    )


# Both active previews in one round trip, built once at import (the inbox polls it all
# the time). The organization's own row anchors the outer joins so that a room with
# neither preview still gives one row; the partial unique index allows at most one active
# row per room and kind, so the joins never multiply rows.
_ACTIVE_PREVIEWS = (
    select(DealPreview, TicketPreview)
    .select_from(Organization)
    .outerjoin(DealPreview, _active_in_room(DealPreview))
    .outerjoin(TicketPreview, _active_in_room(TicketPreview))
    .where(Organization.id == bindparam("organization_id"))
)


async def room_preview(session: AsyncSession, organization_id: int, room_id: str) -> RoomPreview:
    """What the inbox shows for the room: this organization's active previews only."""
    found = (
        await session.execute(
            _ACTIVE_PREVIEWS, {"organization_id": organization_id, "room_id": room_id}
        )
    ).one_or_none()
    deal, ticket = found if found is not None else (None, None)
    return RoomPreview(
        room_id=room_id,
        deal=DealCard.of(deal) if deal else None,
        ticket=TicketCard.of(ticket) if ticket else None,
        cta=CallsToAction(create_deal=deal is None, create_ticket=ticket is None),
    )
