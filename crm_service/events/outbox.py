"""The transactional outbox (DESIGN.md §4-§5): writing rows, and claiming one for a run.

Webhook rows are written by the record services inside the request's transaction: they
commit with the change or not at all, and are handed to the broker after the commit.
A create's timeline-note job is written by the worker, from the create's webhook row,
when it records an attempt of that row (:func:`note_jobs_of_creates`): the busiest write
of the API writes one outbox row, not two. The tasks that work on the rows (webhook delivery,
timeline note) take a row with the same claim.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Integer, Table, Update, bindparam, exists, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.database import UTCDateTime
from crm_service.events.dispatch import remember_for_dispatch
from crm_service.events.models import OutboxEvent, OutboxStatus
from crm_service.teams.features import BOT_AI_CREATION_PARITY, FlagCache, is_enabled
from service_kit.ids import uuid4_hex
from shared_contracts.events import Action, Payload, RecordKind, build_envelope, event_type_for

WEBHOOK = "webhook"
TIMELINE_NOTE = "timeline_note"
# The event types whose webhook row brings its record's timeline-note job with it.
CREATE_EVENT_TYPES = frozenset(str(event_type_for(kind, Action.CREATE)) for kind in RecordKind)
# A note job's ``webhook_id`` is its create event's with this suffix: nothing sends it,
# and a job is found by its record (``uq_outbox_events_timeline_note_record``).
NOTE_JOB_ID_SUFFIX = ".note"


class EmittingRecord(Protocol):
    id: int
    team_id: int
    creator_flag: str | None
    channel_integration_room_id: str | None


def new_webhook_id() -> str:
    return f"msg_{uuid4_hex()}"


def bot_record_in_room(record: EmittingRecord) -> bool:
    """A record with a creator flag and a room: one that has events when its team has
    the parity flag on."""
    return record.creator_flag is not None and bool(record.channel_integration_room_id)


async def parity_applies(session: AsyncSession, cache: FlagCache, record: EmittingRecord) -> bool:
    """Events and notes exist only for bot/AI records in a room, flag on (RFC branch
    catalog: no room ⇒ no event, no note; no creator flag ⇒ the manual flow, untouched)."""
    if not bot_record_in_room(record):
        return False
    return await is_enabled(session, cache, record.team_id, BOT_AI_CREATION_PARITY)


async def record_change(
    session: AsyncSession,
    *,
    kind: RecordKind,
    action: Action,
    record: EmittingRecord,
    data: Payload,
) -> OutboxEvent:
    """Add the webhook event of one change (a create's brings its timeline-note job along
    when the worker claims it: :func:`note_jobs_of_creates`)."""
    event_type = event_type_for(kind, action)
    row = OutboxEvent(
        webhook_id=new_webhook_id(),
        team_id=record.team_id,
        kind=WEBHOOK,
        event_type=str(event_type),
        record_kind=str(kind),
        record_id=record.id,
        room_id=record.channel_integration_room_id,
        body=build_envelope(event_type, data),
    )
    session.add(row)
    await session.flush()
    remember_for_dispatch(session, row.id, row.kind)
    return row


@functools.cache
def note_jobs_of_creates(dialect: str) -> Any:
    """The INSERT that writes the timeline-note job of each create event among the
    webhook rows ``ids``, due ``now``: its record, room, team and event type, and its
    create event's ``webhook_id`` with :data:`NOTE_JOB_ID_SUFFIX`. Run with the
    parameters ``ids`` and ``now``; returns the id of each job it wrote.

    A delivery runs it for every create event it attempts, in the transaction that
    records the attempts, on every attempt: ``ON CONFLICT DO NOTHING`` on
    ``uq_outbox_events_timeline_note_record`` (one job per record) makes a retry, a replay
    or a second worker write nothing, and a worker that died before that commit leaves a
    lease that runs out, after which the sweep hands the event out again and its next
    attempt writes the job. So every create event whose attempt is recorded has its job,
    written once."""
    table: Table = OutboxEvent.__table__  # type: ignore[assignment]
    c = table.c
    now = bindparam("now", type_=UTCDateTime)
    columns = [
        "webhook_id",
        "team_id",
        "kind",
        "event_type",
        "record_kind",
        "record_id",
        "room_id",
        "status",
        "attempt_count",
        "next_attempt_at",
        "created_at",
    ]
    source = select(
        c.webhook_id + NOTE_JOB_ID_SUFFIX,
        c.team_id,
        literal(TIMELINE_NOTE),
        c.event_type,
        c.record_kind,
        c.record_id,
        c.room_id,
        literal(str(OutboxStatus.PENDING)),
        literal(0),
        now,
        now,
    ).where(
        c.id.in_(bindparam("ids", expanding=True)),
        c.kind == WEBHOOK,
        c.event_type.in_(sorted(CREATE_EVENT_TYPES)),
    )
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).from_select(columns, source).on_conflict_do_nothing().returning(c.id)


def claim_due_row(
    outbox_id: int, kind: str, *, now: datetime, lease: timedelta, early: timedelta
) -> Update:
    """The conditional UPDATE that takes a pending, due row of ``kind`` for one run.

    It bumps ``attempt_count`` and moves ``next_attempt_at`` past the run's longest
    duration (the lease): a duplicate task for the row finds nothing to take, and a run
    that dies leaves a lease that expires, after which the sweep sends the row again.
    ``early`` lets a task whose worker clock runs a little behind take its row anyway.
    Callers add the ``RETURNING`` they need."""
    return (
        update(OutboxEvent)
        .where(
            OutboxEvent.id == outbox_id,
            OutboxEvent.kind == kind,
            OutboxEvent.status == OutboxStatus.PENDING,
            OutboxEvent.next_attempt_at <= now + early,
        )
        .values(attempt_count=OutboxEvent.attempt_count + 1, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )


@functools.cache
def claim_due_batch(kind: str, limit: int) -> Update:
    """:func:`claim_due_row` for one row plus up to ``limit - 1`` other due rows of
    ``kind``, oldest due first, in one statement. Built once per ``(kind, limit)``; run it
    with the parameters ``outbox_id`` (the task's row), ``due_by`` (now + the early
    tolerance) and ``lease_until`` (now + the lease).

    The others are taken only when row ``outbox_id`` is: a task whose row is already
    claimed or done (a duplicate, or a row an earlier batch took) takes nothing. Rows are
    locked ``FOR UPDATE SKIP LOCKED``, so two claimers at once never take the same row;
    a row skipped because another transaction holds it is that transaction's to send or
    to hand out again (a claim, the sweep, a replay). SQLite (one process, one writer at
    a time) ignores the locking clause: its write lock serialises the whole statement.
    Callers add the ``RETURNING`` they need."""
    due = (
        OutboxEvent.kind == kind,
        OutboxEvent.status == OutboxStatus.PENDING,
        OutboxEvent.next_attempt_at <= bindparam("due_by", type_=UTCDateTime),
    )
    own_id = bindparam("outbox_id", type_=Integer)
    own = (
        select(OutboxEvent.id)
        .where(OutboxEvent.id == own_id, *due)
        .with_for_update(skip_locked=True)
        .cte("own")
    )
    taken = select(own.c.id)
    if limit > 1:
        others = (
            select(OutboxEvent.id)
            .where(OutboxEvent.id != own_id, *due, exists(select(own.c.id)))
            .order_by(OutboxEvent.next_attempt_at, OutboxEvent.id)
            .limit(limit - 1)
            .with_for_update(skip_locked=True)
            .cte("others")
        )
        taken = taken.union_all(select(others.c.id))  # type: ignore[assignment]
    return (
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(taken))
        .values(
            attempt_count=OutboxEvent.attempt_count + 1,
            next_attempt_at=bindparam("lease_until", type_=UTCDateTime),
        )
        .execution_options(synchronize_session=False)
    )
