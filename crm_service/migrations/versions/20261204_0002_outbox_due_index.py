"""One index for the outbox's due rows: (kind, status, next_attempt_at)

Every query that filters outbox rows by status also names the kind: the claim and the
sweep (kind, pending, due by a time, oldest first) and the deliveries list (webhook rows,
by status). One index on the three columns serves them all, in place of
(status, next_attempt_at) and (kind, status). Each row written or updated then has four
index entries to maintain instead of five.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_events_kind_status_next_attempt_at",
            ["kind", "status", "next_attempt_at"],
            unique=False,
        )
        batch_op.drop_index("ix_outbox_events_status_next_attempt_at")
        batch_op.drop_index("ix_outbox_events_kind_status")


def downgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_events_kind_status", ["kind", "status"], unique=False)
        batch_op.create_index(
            "ix_outbox_events_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )
        batch_op.drop_index("ix_outbox_events_kind_status_next_attempt_at")
