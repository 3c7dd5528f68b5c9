"""The delivery log as the admin API and the CLI show it (DESIGN.md §10)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared_contracts.events import Timestamp

MAX_PAGE = 100
DEFAULT_PAGE = 50


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status_code: int | None
    latency_ms: int
    error: str | None
    created_at: Timestamp


class AttemptDetail(AttemptOut):
    """An attempt with the start of the receiver's answer (at most 1 KiB)."""

    response_excerpt: str | None


class DeliveryOut(BaseModel):
    """One webhook event and its attempts, oldest first. ``attempt_count`` counts the
    attempts of the current run (a replay starts a new run); ``attempts`` is the whole
    history."""

    id: int
    webhook_id: str
    event_type: str
    record_kind: str
    record_id: int
    team_id: int
    room_id: str | None
    status: str
    attempt_count: int
    next_attempt_at: Timestamp | None
    last_error: str | None
    created_at: Timestamp
    completed_at: Timestamp | None
    attempts: list[AttemptOut]


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptDetail]  # type: ignore[assignment]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    limit: int
    offset: int
