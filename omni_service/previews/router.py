"""The preview the inbox polls for a room."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response, status

from omni_service.database import SessionDep
from omni_service.inbox.auth import ReadingOrganization
from omni_service.metrics import DEAL_PREVIEW_DISPLAYED
from omni_service.previews import caching, service
from omni_service.previews.schemas import RoomPreview
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH

router = APIRouter(tags=["previews"])


@router.get(
    "/api/v1/rooms/{room_id}/crm_preview",
    response_model=RoomPreview,
    responses={304: {"description": "Unchanged since the ETag given in If-None-Match"}},
)
async def room_preview(
    room_id: Annotated[str, Path(min_length=1, max_length=ROOM_ID_MAX_LENGTH)],
    organization: ReadingOrganization,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """What the inbox shows next to a chat room: the room's current deal and ticket
    cards, and which "create" calls to action to offer (`cta`).

    Built from the CRM's events as they arrived, never by calling the CRM. A room the
    organization has no record for (even one another organization uses) answers 200 with
    `deal` and `ticket` null and both calls to action true. Meant to be polled: each
    answer carries an `ETag`, and a request whose `If-None-Match` matches it gets an
    empty 304. The bearer token or the inbox page's session cookie is accepted.
    """
    preview = await service.room_preview(session, organization.id, room_id)
    body = preview.model_dump_json().encode()
    etag = caching.etag_of(body)
    headers = {
        "ETag": etag,
        "Cache-Control": caching.POLL_CACHE_CONTROL,
        # The body depends on who asks (token or the inbox page's cookie), not only the URL.
        "Vary": "Authorization, Cookie",
    }
    if preview.deal is not None:
        DEAL_PREVIEW_DISPLAYED.inc()
    if caching.matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
