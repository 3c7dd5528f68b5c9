"""The outbox sweep: re-enqueue what was left behind, and only that."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.database import utcnow
from crm_service.events.models import OutboxEvent
from crm_service.events.sweep import claim_overdue, purge_idempotency_keys
from crm_service.idempotency.models import IdempotencyKey
from crm_service.worker import TASK_BY_KIND
from tests.crm.events.conftest import (
    LinkedTeam,
    create_record,
    outbox_row,
    outbox_rows,
    write_note_jobs,
)

Sessions = async_sessionmaker[AsyncSession]
GRACE = timedelta(seconds=60)


async def set_row(sessions: Sessions, outbox_id: int, **values: object) -> None:
    async with sessions() as session:
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.id == outbox_id).values(**values)
        )
        await session.commit()


async def age(sessions: Sessions, outbox_id: int, seconds: float) -> None:
    await set_row(sessions, outbox_id, next_attempt_at=utcnow() - timedelta(seconds=seconds))


async def test_overdue_pending_rows_of_both_kinds_are_reenqueued(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team)
    [webhook] = await outbox_rows(sessions)
    await write_note_jobs(sessions, [webhook.id])  # as the event's first attempt does
    [note] = await outbox_rows(sessions, kind="timeline_note")
    for row in (webhook, note):
        await age(sessions, row.id, 120)

    items = await claim_overdue(sessions, kinds=TASK_BY_KIND, grace=GRACE)

    assert sorted(items) == sorted([(webhook.id, "webhook"), (note.id, "timeline_note")])


async def test_rows_within_the_grace_period_are_left_to_their_task(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team)
    for row in await outbox_rows(sessions):
        await age(sessions, row.id, 30)

    assert await claim_overdue(sessions, kinds=TASK_BY_KIND, grace=GRACE) == []


async def test_delivered_and_failed_rows_are_never_reenqueued(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team)
    await create_record(client, linked_team, channel_integration_room_id="room-2")
    first, second = await outbox_rows(sessions, kind="webhook")
    await set_row(sessions, first.id, status="delivered")
    await set_row(sessions, second.id, status="failed")
    for row in (first, second):
        await age(sessions, row.id, 120)

    assert await claim_overdue(sessions, kinds=["webhook"], grace=GRACE) == []


async def test_a_reenqueued_row_is_due_but_not_overdue_again_until_another_grace(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    await create_record(client, linked_team)
    [webhook] = await outbox_rows(sessions, kind="webhook")
    await age(sessions, webhook.id, 120)
    before = utcnow()

    first = await claim_overdue(sessions, kinds=["webhook"], grace=GRACE)
    again = await claim_overdue(sessions, kinds=["webhook"], grace=GRACE)

    assert (first, again) == ([(webhook.id, "webhook")], [])
    row = await outbox_row(sessions, webhook.id)
    assert before <= row.next_attempt_at <= utcnow()
    assert row.enqueued_at == row.next_attempt_at


async def test_each_kind_gets_its_own_batch(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    for room in range(3):
        await create_record(client, linked_team, channel_integration_room_id=f"room-{room}")
    await write_note_jobs(sessions, [row.id for row in await outbox_rows(sessions)])
    for row in await outbox_rows(sessions):
        await age(sessions, row.id, 120)

    items = await claim_overdue(sessions, kinds=TASK_BY_KIND, grace=GRACE, batch=2)

    assert sorted(kind for _, kind in items) == ["timeline_note"] * 2 + ["webhook"] * 2


async def test_idempotency_keys_older_than_their_lifetime_are_purged(
    linked_team: LinkedTeam, sessions: Sessions
) -> None:
    now = utcnow()
    async with sessions() as session:
        session.add_all(
            [
                IdempotencyKey(
                    team_id=linked_team.id,
                    key="old",
                    fingerprint="f",
                    created_at=now - timedelta(hours=25),
                ),
                IdempotencyKey(
                    team_id=linked_team.id,
                    key="fresh",
                    fingerprint="f",
                    created_at=now - timedelta(hours=23),
                ),
            ]
        )
        await session.commit()

    purged = await purge_idempotency_keys(sessions, ttl=timedelta(hours=24))

    assert purged == 1
    async with sessions() as session:
        assert list(await session.scalars(select(IdempotencyKey.key))) == ["fresh"]


async def test_a_parked_retry_is_handed_out_as_soon_as_it_falls_due_and_not_before(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    """A retry too far ahead for a countdown task (``enqueued_at`` NULL after an attempt)
    is the sweep's to send: at once when due, no grace period, and never early."""
    await create_record(client, linked_team)
    [webhook] = await outbox_rows(sessions)
    ahead = utcnow() + timedelta(hours=3)
    await set_row(sessions, webhook.id, attempt_count=6, enqueued_at=None, next_attempt_at=ahead)

    assert await claim_overdue(sessions, kinds=["webhook"], grace=GRACE) == []

    await set_row(sessions, webhook.id, next_attempt_at=utcnow() - timedelta(seconds=1))
    assert await claim_overdue(sessions, kinds=["webhook"], grace=GRACE) == [
        (webhook.id, "webhook")
    ]
    row = await outbox_row(sessions, webhook.id)
    assert row.enqueued_at is not None  # handed out: not sent again until overdue
    assert await claim_overdue(sessions, kinds=["webhook"], grace=GRACE) == []


async def test_a_fresh_row_waiting_for_its_first_task_is_not_taken_early(
    client: httpx.AsyncClient, linked_team: LinkedTeam, sessions: Sessions
) -> None:
    """The API hands new rows over itself; the sweep takes them only once overdue."""
    await create_record(client, linked_team)
    [webhook] = await outbox_rows(sessions)
    await age(sessions, webhook.id, 5)

    assert await claim_overdue(sessions, kinds=["webhook"], grace=GRACE) == []
