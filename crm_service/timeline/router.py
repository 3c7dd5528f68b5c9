"""``GET /api/mobile/v2.8/{deals|tickets}/{id}/timeline``: a record's timeline, newest
first, paged like Omni's history (``offset`` is a 1-based page number, ``limit`` the page
size, clamped to 100)."""

from __future__ import annotations

from fastapi import APIRouter

from crm_service.dependencies import SessionDep
from crm_service.records.schemas import RecordId
from crm_service.teams.auth import CurrentCaller
from crm_service.timeline.schemas import TimelineEntry, TimelinePage
from crm_service.timeline.service import timeline_service
from service_kit.bounds import PageNumber, PageSize
from shared_contracts.events import RecordKind

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20

router = APIRouter(prefix="/api/mobile/v2.8", tags=["timeline"])


async def _timeline(
    session: SessionDep,
    caller: CurrentCaller,
    kind: RecordKind,
    record_id: int,
    offset: int,
    limit: int,
) -> TimelinePage:
    # Above the maximum is clamped, not refused (DESIGN.md §10).
    page_size = min(limit, MAX_PAGE_SIZE)
    notes, total = await timeline_service.entries(
        session, caller.team.id, kind, record_id, page=offset, page_size=page_size
    )
    return TimelinePage(
        items=[TimelineEntry.model_validate(note, from_attributes=True) for note in notes],
        offset=offset,
        limit=page_size,
        total=total,
    )


@router.get("/deals/{record_id}/timeline")
async def deal_timeline(
    record_id: RecordId,
    session: SessionDep,
    caller: CurrentCaller,
    offset: PageNumber = 1,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> TimelinePage:
    """The deal's timeline entries, newest first, with their `total`. Today these are
    the chat-history notes written after a bot or an AI agent created the deal in a
    chat room: who created it, in which room, an excerpt of the chat, a link to the room.

    Paged like Omni's history: `offset` is a 1-based page number and `limit` the page
    size (20 by default; above 100 is clamped to 100); a page past the end is empty.
    `excerpt` is null when the chat history could not be read. Another team's deal, a
    deleted one or a missing one is 404.
    """
    return await _timeline(session, caller, RecordKind.DEAL, record_id, offset, limit)


@router.get("/tickets/{record_id}/timeline")
async def ticket_timeline(
    record_id: RecordId,
    session: SessionDep,
    caller: CurrentCaller,
    offset: PageNumber = 1,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> TimelinePage:
    """The ticket's timeline entries, newest first, with their `total`. Today these are
    the chat-history notes written after a bot or an AI agent created the ticket in a
    chat room: who created it, in which room, an excerpt of the chat, a link to the room.

    Paged like Omni's history: `offset` is a 1-based page number and `limit` the page
    size (20 by default; above 100 is clamped to 100); a page past the end is empty.
    `excerpt` is null when the chat history could not be read. Another team's ticket, a
    deleted one or a missing one is 404.
    """
    return await _timeline(session, caller, RecordKind.TICKET, record_id, offset, limit)
