from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from crm_service.records.schemas import RecordCreateFields, RecordUpdateFields
from shared_contracts.creators import CreatorFlag
from shared_contracts.events import Timestamp

TicketStatus = Literal["open", "pending", "resolved", "closed"]
TicketPriority = Literal["low", "medium", "high", "urgent"]


class TicketCreate(RecordCreateFields):
    description: str | None = Field(default=None, max_length=10_000)
    status: TicketStatus = "open"
    priority: TicketPriority = "medium"


class TicketUpdate(RecordUpdateFields):
    description: str | None = Field(default=None, max_length=10_000)
    status: TicketStatus | None = None
    priority: TicketPriority | None = None


class TicketRead(BaseModel):
    id: int
    unique_ticket_id: str
    name: str
    description: str | None
    status: TicketStatus
    priority: TicketPriority
    channel_integration_room_id: str | None
    creator_flag: CreatorFlag | None
    creator_name: str
    crm_lead_ids: list[int]
    external_url: str
    created_at: Timestamp
    updated_at: Timestamp
    version: int
