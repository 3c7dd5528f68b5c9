"""Request fields that deals and tickets share."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crm_service.database import MAX_INTEGER_ID

PositiveId = Annotated[int, Field(gt=0, le=MAX_INTEGER_ID)]
RecordId = Annotated[int, Path(gt=0, le=MAX_INTEGER_ID)]
RecordName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
RoomId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
MAX_CONTACTS = 100


class RecordCreateFields(BaseModel):
    """Unknown fields are ignored (bots send more than we read); known ones are strict."""

    model_config = ConfigDict(extra="ignore", str_max_length=10_000)

    name: RecordName
    channel_integration_room_id: RoomId | None = None
    crm_lead_ids: list[PositiveId] | None = Field(default=None, max_length=MAX_CONTACTS)
    contact_id: PositiveId | None = None
    # Any JSON value: an unrecognised one is stored as null and logged, never refused.
    creator_flag: Any = None


class RecordUpdateFields(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=10_000)

    name: RecordName | None = None
    channel_integration_room_id: RoomId | None = None
    crm_lead_ids: list[PositiveId] | None = Field(default=None, max_length=MAX_CONTACTS)
    contact_id: PositiveId | None = None
    creator_flag: Any = None
