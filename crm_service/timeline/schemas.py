"""The timeline API's response shapes (DESIGN.md §10)."""

from __future__ import annotations

from pydantic import BaseModel

from shared_contracts.events import Timestamp


class TimelineEntry(BaseModel):
    id: int
    type: str
    excerpt: str | None
    room_deeplink: str | None
    creator_flag: str | None
    creator_name: str | None
    channel_room_id: str | None
    channel_organization_id: str | None
    created_at: Timestamp


class TimelinePage(BaseModel):
    items: list[TimelineEntry]
    offset: int
    limit: int
    total: int
