"""Chat messages: appended by the channel, read back by the CRM for timeline notes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from omni_service.database import SessionDep
from omni_service.organizations.dependencies import CurrentOrganizationId
from omni_service.rooms import service
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH, Message
from omni_service.rooms.schemas import MAX_PAGE_SIZE, MessageCreate, MessageOut, MessagePage
from service_kit.bounds import PageNumber, PageSize

router = APIRouter(tags=["messages"])

RoomId = Annotated[str, Path(min_length=1, max_length=ROOM_ID_MAX_LENGTH)]


def _message_out(message: Message) -> MessageOut:
    return MessageOut.model_validate(message, from_attributes=True)


@router.post("/api/v1/rooms/{room_id}/messages", status_code=status.HTTP_201_CREATED)
async def post_message(
    room_id: RoomId,
    body: MessageCreate,
    organization_id: CurrentOrganizationId,
    session: SessionDep,
) -> MessageOut:
    """Append a chat message to a room of the caller's organization and answer 201 with
    it: what the chat channel does as customers, agents and bots write. The CRM's
    timeline notes quote these messages (`GET /api/open/v1/messages/rooms/{room_id}`).
    """
    message = await service.post_message(
        session,
        organization_id,
        room_id,
        sender=body.sender,
        sender_type=body.sender_type,
        text=body.text,
    )
    return _message_out(message)


@router.get("/api/open/v1/messages/rooms/{room_id}")
async def message_history(
    room_id: RoomId,
    organization_id: CurrentOrganizationId,
    session: SessionDep,
    offset: PageNumber = 1,
    limit: PageSize = MAX_PAGE_SIZE,
) -> MessagePage:
    """A room's chat messages, newest first, with their `total`.

    What the CRM calls (with the organization's token) to quote the chat in a timeline
    note. `offset` is a 1-based page number and `limit` the page size (100 by default;
    above 100 is clamped to 100), so `offset=1&limit=100` is the latest 100 messages. An
    unknown room, or a page past the end, is an empty list.
    """
    # Above the maximum is clamped, not refused (DESIGN.md §10).
    page_size = min(limit, MAX_PAGE_SIZE)
    messages, total = await service.history(
        session, organization_id, room_id, page=offset, page_size=page_size
    )
    return MessagePage(
        items=[_message_out(message) for message in messages],
        offset=offset,
        limit=page_size,
        total=total,
    )
