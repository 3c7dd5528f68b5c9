"""One timeline-note job per record, written by the worker

A create wrote two outbox rows: its webhook event and its timeline-note job. The job
is now written by the worker when it records an attempt of the create's event
(``outbox.note_jobs_of_creates``), on every attempt, ``ON CONFLICT DO NOTHING`` on this
index: the first attempt writes it, a retry, a replay or a second worker writes nothing.
The API's create writes one outbox row.

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

_NOTE_JOBS = sa.text("kind = 'timeline_note'")


def upgrade() -> None:
    op.create_index(
        "uq_outbox_events_timeline_note_record",
        "outbox_events",
        ["record_kind", "record_id"],
        unique=True,
        postgresql_where=_NOTE_JOBS,
        sqlite_where=_NOTE_JOBS,
    )


def downgrade() -> None:
    op.drop_index("uq_outbox_events_timeline_note_record", table_name="outbox_events")
