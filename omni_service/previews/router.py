"""The preview the inbox polls for a room.

Answered from the process's :class:`~omni_service.previews.caching.PreviewCache` when it
holds the room (no database round trip: the token comes from the organization cache
too), else read in a short transaction of its own and offered to the cache.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response, status

from omni_service.inbox.auth import ReadingOrganizationId
from omni_service.metrics import DEAL_PREVIEW_DISPLAYED
from omni_service.previews import caching, service
from omni_service.previews.caching import CachedPreview, PreviewCache
from omni_service.previews.schemas import RoomPreview
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH

router = APIRouter(tags=["previews"])


async def current_preview(request: Request, organization_id: int, room_id: str) -> CachedPreview:
    cache: PreviewCache = request.app.state.change_feed.cache
    key = (organization_id, room_id)
    cached = cache.lookup(key)
    if cached is not None:
        return cached
    ticket = cache.ticket()
    async with request.app.state.session_factory() as session:
        preview = await service.room_preview(session, organization_id, room_id)
    body = preview.model_dump_json().encode()
    cached = CachedPreview(caching.etag_of(body), body, preview.deal is not None)
    cache.store(key, ticket, cached)
    return cached


@router.get(
    "/api/v1/rooms/{room_id}/crm_preview",
    response_model=RoomPreview,
    responses={304: {"description": "Unchanged since the ETag given in If-None-Match"}},
)
async def room_preview(
    request: Request,
    room_id: Annotated[str, Path(min_length=1, max_length=ROOM_ID_MAX_LENGTH)],
    organization_id: ReadingOrganizationId,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """What the inbox shows next to a chat room: the room's current deal and ticket
    cards, and which "create" calls to action to offer (`cta`).

    Built from the CRM's events as they arrived, never by calling the CRM. A room the
    organization has no record for (even one another organization uses) answers 200 with
    `deal` and `ticket` null and both calls to action true. Meant to be polled: each
    answer carries an `ETag`, and a request whose `If-None-Match` matches it gets an
    empty 304. The bearer token or the inbox page's session cookie is accepted. Answers
    come from a per-process cache that the change feed invalidates, so a 304 costs no
    database round trip.
    """
    preview = await current_preview(request, organization_id, room_id)
    headers = {
        "ETag": preview.etag,
        "Cache-Control": caching.POLL_CACHE_CONTROL,
        # The body depends on who asks (token or the inbox page's cookie), not only the URL.
        "Vary": "Authorization, Cookie",
    }
    if preview.has_deal:
        DEAL_PREVIEW_DISPLAYED.inc()
    if caching.matches(if_none_match, preview.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(preview.body, media_type="application/json", headers=headers)
