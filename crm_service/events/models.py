"""The transactional outbox and the delivery log.

An :class:`OutboxEvent` is written in the same transaction as the change it reports.
``kind`` says which task handles it: ``webhook`` (signed delivery to the team's
Omnichannel link) or ``timeline_note`` (the chat-history note; one per record, written
when the worker records the first attempt of the record's create event). The webhook
body is stored as the exact bytes that are signed and resent on every attempt.

``next_attempt_at`` is when the row's task may next run. It doubles as a lease: an
attempt in progress pushes it past the attempt's longest duration, so a row whose
worker died becomes due again and the sweep hands it out once more.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.database import Base, UTCDateTime, utcnow


class OutboxStatus(StrEnum):
    """``pending`` until the row's task is done with it: ``delivered`` (2xx) or ``failed``
    (dead letter: a non-retryable answer, or the retry schedule exhausted)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# The unique index's third column: 1 for a timeline-note job, NULL for any other row.
NOTE_JOB_KEY = "(CASE WHEN kind = 'timeline_note' THEN 1 END)"


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (
        # The claim, the sweep and the deliveries list all filter by kind and status.
        Index("ix_outbox_events_kind_status_next_attempt_at", "kind", "status", "next_attempt_at"),
        # One timeline-note job per record: every recorded attempt of its create event
        # writes it, and this makes all but the first write nothing (migration 0006). Its
        # third column is 1 for a job and NULL for a webhook row, so webhook rows never
        # conflict. It is not a partial index on kind = 'timeline_note' on purpose: a
        # claim of the jobs (kind = 'timeline_note' AND status = 'pending') would match
        # such an index's predicate, and without fresh statistics PostgreSQL chose it
        # and read every job ever written on each claim (make bench: 13-30 ms a claim
        # after 32,000 jobs, PostgreSQL 2.6 -> 8.6 ms of CPU per create).
        Index(
            "uq_outbox_events_timeline_note_record",
            "record_kind",
            "record_id",
            text(NOTE_JOB_KEY),
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Not indexed: nothing looks a row up by it, and it is unique by how it is made (122
    # random bits per row, ``outbox.new_webhook_id``); migration 0005 dropped the index.
    webhook_id: Mapped[str] = mapped_column(String(64))
    # No foreign key: every row is written with a record whose own key checks the team,
    # and a team's delete takes its rows with it by the ``outbox_events_of_deleted_team``
    # trigger (migration 0003), as ``ON DELETE CASCADE`` did.
    team_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(64))
    record_kind: Mapped[str] = mapped_column(String(10))
    record_id: Mapped[int] = mapped_column(Integer)
    room_id: Mapped[str | None] = mapped_column(String(255), default=None)
    body: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_event_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True
    )
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    response_excerpt: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
