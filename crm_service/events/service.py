"""The delivery log: list webhook events with their attempts, replay one.

Called by the admin API and by the CLI (``crm-parity deliveries list|replay``). Neither
commits here: the caller's transaction does, and hands the replayed row to the broker
after its commit (``pending_outbox_ids``), as for any other outbox row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.database import utcnow
from crm_service.errors import Conflict, NotFound, Unprocessable
from crm_service.events.dispatch import remember_for_dispatch
from crm_service.events.models import DeliveryAttempt, OutboxEvent, OutboxStatus
from crm_service.events.outbox import WEBHOOK
from crm_service.events.schemas import (
    DEFAULT_PAGE,
    MAX_PAGE,
    AttemptDetail,
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
)
from shared_contracts.events import EventType


def _status(value: str | None) -> OutboxStatus | None:
    if value is None:
        return None
    try:
        return OutboxStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in OutboxStatus)
        raise Unprocessable(f"status must be one of {allowed}; got {value!r}") from None


def _event_type(value: str | None) -> EventType | None:
    if value is None:
        return None
    try:
        return EventType(value)
    except ValueError:
        allowed = ", ".join(event.value for event in EventType)
        raise Unprocessable(f"event_type must be one of {allowed}; got {value!r}") from None


class DeliveryService:
    async def list(
        self,
        session: AsyncSession,
        *,
        status: str | None = None,
        event_type: str | None = None,
        team_id: int | None = None,
        limit: int = DEFAULT_PAGE,
        offset: int = 0,
    ) -> DeliveryPage:
        """Webhook events, newest first. ``limit`` is clamped to 1..100."""
        limit = min(max(limit, 1), MAX_PAGE)
        offset = max(offset, 0)
        query = select(OutboxEvent).where(OutboxEvent.kind == WEBHOOK)
        if (wanted_status := _status(status)) is not None:
            query = query.where(OutboxEvent.status == wanted_status)
        if (wanted_type := _event_type(event_type)) is not None:
            query = query.where(OutboxEvent.event_type == wanted_type)
        if team_id is not None:
            query = query.where(OutboxEvent.team_id == team_id)
        events = list(
            await session.scalars(query.order_by(OutboxEvent.id.desc()).limit(limit).offset(offset))
        )
        attempts = await _attempts_by_event(session, [event.id for event in events])
        return DeliveryPage(
            items=[
                _entry(event, [AttemptOut.model_validate(a) for a in attempts[event.id]])
                for event in events
            ],
            limit=limit,
            offset=offset,
        )

    async def get(self, session: AsyncSession, outbox_id: int) -> DeliveryDetail:
        """One event with its attempts and the excerpts of the receiver's answers."""
        event = await self._webhook(session, outbox_id)
        attempts = (await _attempts_by_event(session, [event.id]))[event.id]
        entry = _entry(event, [])
        return DeliveryDetail.model_validate(
            {
                **entry.model_dump(exclude={"attempts"}),
                "attempts": [AttemptDetail.model_validate(a) for a in attempts],
            }
        )

    async def replay(self, session: AsyncSession, outbox_id: int) -> DeliveryOut:
        """Send a delivered or failed event again: same row, same ``webhook-id``, a fresh
        retry schedule, the attempt history kept. An event still pending is refused (its
        attempts are under way or scheduled)."""
        event = await self._webhook(session, outbox_id, for_update=True)
        if event.status == OutboxStatus.PENDING:
            raise Conflict(
                f"delivery {outbox_id} is still pending (next attempt at "
                f"{event.next_attempt_at.isoformat()}); only delivered or failed ones replay"
            )
        event.status = OutboxStatus.PENDING
        event.attempt_count = 0
        event.next_attempt_at = utcnow()
        event.completed_at = None
        event.last_error = None
        await session.flush()
        remember_for_dispatch(session, event.id, WEBHOOK)
        attempts = (await _attempts_by_event(session, [event.id]))[event.id]
        return _entry(event, [AttemptOut.model_validate(a) for a in attempts])

    async def _webhook(
        self, session: AsyncSession, outbox_id: int, *, for_update: bool = False
    ) -> OutboxEvent:
        query = select(OutboxEvent).where(OutboxEvent.id == outbox_id, OutboxEvent.kind == WEBHOOK)
        if for_update:
            query = query.with_for_update()
        event = await session.scalar(query)
        if event is None:
            raise NotFound(f"delivery {outbox_id} not found")
        return event


async def _attempts_by_event(
    session: AsyncSession, outbox_ids: Sequence[int]
) -> dict[int, list[DeliveryAttempt]]:
    """The attempts of several events in one query, oldest first per event."""
    grouped: dict[int, list[DeliveryAttempt]] = defaultdict(list)
    if not outbox_ids:
        return grouped
    attempts = await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.outbox_event_id.in_(outbox_ids))
        .order_by(DeliveryAttempt.id)
    )
    for attempt in attempts:
        grouped[attempt.outbox_event_id].append(attempt)
    return grouped


def _entry(event: OutboxEvent, attempts: list[AttemptOut]) -> DeliveryOut:
    return DeliveryOut(
        id=event.id,
        webhook_id=event.webhook_id,
        event_type=event.event_type,
        record_kind=event.record_kind,
        record_id=event.record_id,
        team_id=event.team_id,
        room_id=event.room_id,
        status=event.status,
        attempt_count=event.attempt_count,
        next_attempt_at=event.next_attempt_at if event.status == OutboxStatus.PENDING else None,
        last_error=event.last_error,
        created_at=event.created_at,
        completed_at=event.completed_at,
        attempts=attempts,
    )


delivery_service = DeliveryService()
