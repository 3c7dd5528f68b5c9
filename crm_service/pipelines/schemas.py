from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    position: int


class PipelineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    is_default: bool
    stages: list[StageRead]


class PipelineList(BaseModel):
    items: list[PipelineRead]
