from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from omni_service.rooms.models import SenderType
from shared_contracts.events import Timestamp

MAX_PAGE_SIZE = 100


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(min_length=1, max_length=255)
    sender_type: SenderType
    text: str = Field(min_length=1, max_length=10_000)


class MessageOut(BaseModel):
    id: int
    room_id: str
    sender: str
    sender_type: SenderType
    text: str
    created_at: Timestamp


class MessagePage(BaseModel):
    items: list[MessageOut]
    offset: int
    limit: int
    total: int
