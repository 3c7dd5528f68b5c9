from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, Field, StringConstraints

from crm_service.records.schemas import PositiveId, RecordCreateFields, RecordUpdateFields
from shared_contracts.creators import CreatorFlag
from shared_contracts.events import Money, NamedRef, Timestamp

DealStatus = Literal["open", "won", "lost"]
# Sizes travel as JSON numbers (doubles): 15 significant digits always come back exactly,
# 16 may not (99999999999999.99 reads back as ...98), so 15 is the limit.
Amount = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=2)]
RefName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class DealCreate(RecordCreateFields):
    crm_pipeline_id: PositiveId | None = None
    crm_stage_id: PositiveId | None = None
    crm_pipeline_name: RefName | None = None
    crm_stage_name: RefName | None = None
    size: Amount | None = Field(default=None, validation_alias=AliasChoices("size", "amount"))
    status: DealStatus = "open"
    crm_source_id: PositiveId | None = None


class DealUpdate(RecordUpdateFields):
    crm_pipeline_id: PositiveId | None = None
    crm_stage_id: PositiveId | None = None
    crm_pipeline_name: RefName | None = None
    crm_stage_name: RefName | None = None
    size: Amount | None = Field(default=None, validation_alias=AliasChoices("size", "amount"))
    status: DealStatus | None = None
    crm_source_id: PositiveId | None = None


class DealRead(BaseModel):
    id: int
    slug: str
    name: str
    crm_pipeline_id: int
    crm_stage_id: int
    pipeline: NamedRef
    stage: NamedRef
    size: Money | None
    status: DealStatus
    crm_source_id: int | None
    channel_integration_room_id: str | None
    creator_flag: CreatorFlag | None
    creator_name: str
    crm_lead_ids: list[int]
    external_url: str
    created_at: Timestamp
    updated_at: Timestamp
    version: int
