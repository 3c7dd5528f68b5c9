"""The outbox sweep: the safety net under the after-commit hand-off (DESIGN.md §5).

A pending row whose ``next_attempt_at`` lies more than a grace period in the past was
never handed to the broker (broker down at commit, API process crashed), or its task was
lost (worker killed mid-attempt: the claim's lease ran out). The sweep re-enqueues such
rows of every kind — webhooks and timeline notes — in bounded batches. A row its task is
still working on is never overdue (the claim pushed ``next_attempt_at`` ahead), and a
row that is enqueued twice is harmless (the task claims it once).

It is also the dispatcher of retries due too late for a countdown task (longer than
``MAX_COUNTDOWN_SECONDS``, which stays far inside the broker's visibility timeout): such a
row is left with ``enqueued_at`` NULL, and the first sweep after it falls due sends it.

It also purges idempotency keys past their lifetime.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.database import utcnow
from crm_service.events.dispatch import OutboxItem
from crm_service.events.models import OutboxEvent, OutboxStatus
from crm_service.idempotency.models import IdempotencyKey

SWEEP_BATCH = 500


def overdue_grace(sweep_seconds: float) -> timedelta:
    """Two sweep intervals: a row handed over normally is picked up well within that."""
    return timedelta(seconds=2 * sweep_seconds)


async def claim_overdue(
    sessions: async_sessionmaker[AsyncSession],
    *,
    kinds: Iterable[str],
    grace: timedelta,
    batch: int = SWEEP_BATCH,
) -> list[OutboxItem]:
    """Mark up to ``batch`` pending rows of each kind that are overdue, or due and parked
    for the sweep (a retry with no task on its way), as just enqueued and return them.
    A batch per kind: a backlog of one kind (its workers down) never starves another.

    ``next_attempt_at`` moves to now, so a row stays due for its task but is not overdue
    again (and re-enqueued again) until another grace period passes.
    """
    now = utcnow()
    items: list[OutboxItem] = []
    async with sessions() as session:
        for kind in kinds:
            overdue = (
                select(OutboxEvent.id)
                .where(
                    OutboxEvent.kind == kind,
                    OutboxEvent.status == OutboxStatus.PENDING,
                    or_(
                        OutboxEvent.next_attempt_at < now - grace,
                        and_(
                            OutboxEvent.enqueued_at.is_(None),
                            OutboxEvent.attempt_count > 0,
                            OutboxEvent.next_attempt_at <= now,
                        ),
                    ),
                )
                .order_by(OutboxEvent.next_attempt_at)
                .limit(batch)
                # Two sweeps at once (two beats by mistake) split the rows between them.
                .with_for_update(skip_locked=True)
            )
            rows = await session.scalars(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(overdue.scalar_subquery()))
                .values(next_attempt_at=now, enqueued_at=now)
                .returning(OutboxEvent.id)
                .execution_options(synchronize_session=False)
            )
            items.extend((outbox_id, kind) for outbox_id in sorted(rows))
        await session.commit()
    return items


async def purge_idempotency_keys(
    sessions: async_sessionmaker[AsyncSession], *, ttl: timedelta
) -> int:
    """Delete keys older than their lifetime; a late duplicate then creates anew, as the
    24-hour contract says."""
    async with sessions() as session:
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - ttl)
        )
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
