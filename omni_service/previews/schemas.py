"""The poll response. Cards carry the event's display fields under the event's names."""

from __future__ import annotations

from pydantic import BaseModel

from omni_service.previews.models import DealPreview, TicketPreview
from shared_contracts.creators import CreatorFlag
from shared_contracts.events import Money, NamedRef, Timestamp


class DealCard(BaseModel):
    id: int
    slug: str | None
    name: str
    stage: NamedRef
    pipeline: NamedRef
    size: Money | None
    status: str
    creator_flag: CreatorFlag | None
    creator_name: str | None
    external_url: str
    created_at: Timestamp
    updated_at: Timestamp
    version: int

    @classmethod
    def of(cls, row: DealPreview) -> DealCard:
        return cls.model_validate(
            {
                "id": row.record_id,
                "slug": row.slug,
                "name": row.name,
                "stage": {"id": row.stage_id, "name": row.stage_name},
                "pipeline": {"id": row.pipeline_id, "name": row.pipeline_name},
                "size": row.size,
                "status": row.status,
                "creator_flag": row.creator_flag,
                "creator_name": row.creator_name,
                "external_url": row.external_url,
                "created_at": row.crm_created_at,
                "updated_at": row.crm_updated_at,
                "version": row.version,
            }
        )


class TicketCard(BaseModel):
    id: int
    unique_ticket_id: str | None
    name: str
    description: str | None
    status: str
    priority: str | None
    creator_flag: CreatorFlag | None
    creator_name: str | None
    external_url: str
    created_at: Timestamp
    updated_at: Timestamp
    version: int

    @classmethod
    def of(cls, row: TicketPreview) -> TicketCard:
        return cls.model_validate(
            {
                "id": row.record_id,
                "unique_ticket_id": row.unique_ticket_id,
                "name": row.name,
                "description": row.description,
                "status": row.status,
                "priority": row.priority,
                "creator_flag": row.creator_flag,
                "creator_name": row.creator_name,
                "external_url": row.external_url,
                "created_at": row.crm_created_at,
                "updated_at": row.crm_updated_at,
                "version": row.version,
            }
        )


class CallsToAction(BaseModel):
    create_deal: bool
    create_ticket: bool


class RoomPreview(BaseModel):
    room_id: str
    deal: DealCard | None
    ticket: TicketCard | None
    cta: CallsToAction
