"""One timeline-note job per record, written by the worker

A create wrote two outbox rows: its webhook event and its timeline-note job. The job
is now written by the worker when it records an attempt of the create's event
(``outbox.note_jobs_of_creates``), on every attempt, ``ON CONFLICT DO NOTHING`` on this
index: the first attempt writes it, a retry, a replay or a second worker writes nothing.
The API's create writes one outbox row.

The index is on ``(record_kind, record_id, CASE WHEN kind = 'timeline_note' THEN 1
END)``: webhook rows hold NULL in its third column and never conflict. It is not a
partial index on ``kind = 'timeline_note'``: the claim of the jobs matches that
predicate, and PostgreSQL without fresh statistics (autovacuum off, or not yet run)
chose such an index for it and read every job on each claim.

Rows written before this revision hold one job per record already (a create wrote one),
so the index builds on any existing data.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOTE_JOB_KEY = sa.text("(CASE WHEN kind = 'timeline_note' THEN 1 END)")


def upgrade() -> None:
    op.create_index(
        "uq_outbox_events_timeline_note_record",
        "outbox_events",
        ["record_kind", "record_id", _NOTE_JOB_KEY],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_outbox_events_timeline_note_record", table_name="outbox_events")
