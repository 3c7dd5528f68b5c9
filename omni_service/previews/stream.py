"""``GET /api/v1/rooms/{room_id}/crm_preview/stream``: the room preview as server-sent
events, for the inbox page.

Event ``preview`` carries exactly the JSON of ``crm_preview``; its ``id`` is that body's
ETag (without quotes), so a reconnecting ``EventSource`` sends it back as
``Last-Event-ID`` and gets nothing until the preview differs from what it shows. The
stream sends the preview on connect (unless ``Last-Event-ID`` says the client has it),
then whenever a change to the room is announced (``changes.py``), and a comment line as
heartbeat; every heartbeat also re-reads the preview, a safety net for a missed
notification or several SQLite processes. Each read is its own short transaction, so a
stream holds no connection while it waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omni_service.dependencies import SettingsDep
from omni_service.inbox.auth import ReadingOrganizationId
from omni_service.previews import caching, service
from omni_service.previews.changes import ChangeFeed
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH

router = APIRouter(tags=["previews"])

# How long a browser waits before reconnecting a dropped stream (the SSE ``retry`` field).
RECONNECT_MILLISECONDS = 1000


async def _current(
    factory: async_sessionmaker[AsyncSession], organization_id: int, room_id: str
) -> tuple[str, bytes]:
    async with factory() as session:
        preview = await service.room_preview(session, organization_id, room_id)
    body = preview.model_dump_json().encode()
    return caching.etag_of(body).strip('"'), body


def _event(event_id: str, body: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: preview\ndata: " + body + b"\n\n"


@router.get(
    "/api/v1/rooms/{room_id}/crm_preview/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def room_preview_stream(
    request: Request,
    room_id: Annotated[str, Path(min_length=1, max_length=ROOM_ID_MAX_LENGTH)],
    organization_id: ReadingOrganizationId,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The room preview as server-sent events, for the inbox page's `EventSource`.

    Each `preview` event carries exactly the body `crm_preview` would answer, with its
    ETag (unquoted) as the event `id`. The current preview is sent on connect, then again
    whenever it changes; a heartbeat comment keeps the connection open in between. A
    client that reconnects with `Last-Event-ID` gets nothing until the preview differs
    from the one it has. The bearer token or the inbox page's session cookie is accepted
    (`EventSource` cannot send headers).
    """
    feed: ChangeFeed = request.app.state.change_feed
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    heartbeat = settings.stream_heartbeat_seconds

    async def events() -> AsyncIterator[bytes]:
        sent = last_event_id
        yield f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()
        with feed.subscribe(organization_id, room_id) as changed:
            while True:
                # Clear before reading: a change committed after this read sets it again.
                changed.clear()
                event_id, body = await _current(factory, organization_id, room_id)
                if event_id != sent:
                    yield _event(event_id, body)
                    sent = event_id
                try:
                    await asyncio.wait_for(changed.wait(), timeout=heartbeat)
                except TimeoutError:
                    yield b": heartbeat\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-store",
            # Proxies (nginx) must pass events through as they come.
            "X-Accel-Buffering": "no",
        },
    )
