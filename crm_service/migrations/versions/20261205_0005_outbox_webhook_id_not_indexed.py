"""The outbox's webhook ids are no longer a unique index

A create writes two outbox rows, and each paid for an entry in the unique index on
``webhook_id``: about 11 µs of PostgreSQL CPU per row on the busiest write, for an index
nothing reads (rows are found by id, kind, status, team; never by webhook id). The ids
are unique by how they are made: ``msg_`` and 122 random bits from the kernel's CSPRNG
(``service_kit.ids.uuid4_hex``), one per row, never reused; a retry or a replay re-sends
the same row with its own id, which is what the receiver de-duplicates by.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@contextmanager
def _rebuilt_as_named() -> Iterator[None]:
    """On SQLite, a batch change copies the table and renames the copy back, and the
    rename would fail on the trigger on ``teams`` that names ``outbox_events`` (0003) while
    the table is away. The legacy rename leaves triggers alone, and once the copy has the
    old name the trigger means what it meant."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("PRAGMA legacy_alter_table = ON")
    try:
        yield
    finally:
        if sqlite:
            op.execute("PRAGMA legacy_alter_table = OFF")


def upgrade() -> None:
    with _rebuilt_as_named(), op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outbox_events_webhook_id", type_="unique")


def downgrade() -> None:
    with _rebuilt_as_named(), op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_outbox_events_webhook_id", ["webhook_id"])
