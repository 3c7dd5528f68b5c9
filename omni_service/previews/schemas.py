"""The poll response. Cards carry the event's display fields under the event's names."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from omni_service.previews.models import DealPreview, TicketPreview
from shared_contracts.creators import CreatorFlag
from shared_contracts.events import Money, NamedRef, Timestamp


class _Card(BaseModel):
    """What deal and ticket cards share: identity, creator, link, CRM times, version."""

    id: int
    name: str
    creator_flag: CreatorFlag | None
    creator_name: str | None
    external_url: str
    created_at: Timestamp
    updated_at: Timestamp
    version: int


def _card_fields(row: DealPreview | TicketPreview) -> dict[str, Any]:
    return {
        "id": row.record_id,
        "name": row.name,
        "creator_flag": row.creator_flag,
        "creator_name": row.creator_name,
        "external_url": row.external_url,
        "created_at": row.crm_created_at,
        "updated_at": row.crm_updated_at,
        "version": row.version,
    }


class DealCard(_Card):
    slug: str | None
    stage: NamedRef
    pipeline: NamedRef
    size: Money | None
    status: str

    @classmethod
    def of(cls, row: DealPreview) -> DealCard:
        return cls.model_validate(
            {
                **_card_fields(row),
                "slug": row.slug,
                "stage": {"id": row.stage_id, "name": row.stage_name},
                "pipeline": {"id": row.pipeline_id, "name": row.pipeline_name},
                "size": row.size,
                "status": row.status,
            }
        )


class TicketCard(_Card):
    unique_ticket_id: str | None
    description: str | None
    status: str
    priority: str | None

    @classmethod
    def of(cls, row: TicketPreview) -> TicketCard:
        return cls.model_validate(
            {
                **_card_fields(row),
                "unique_ticket_id": row.unique_ticket_id,
                "description": row.description,
                "status": row.status,
                "priority": row.priority,
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
