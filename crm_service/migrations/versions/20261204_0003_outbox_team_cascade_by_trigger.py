"""The outbox rows of a deleted team go with it by a trigger, not a foreign key

A create writes its record and its outbox rows in one statement, and the record's own
foreign key to ``teams`` already checks (and locks) the team. The outbox rows' key to
``teams`` checked the same team again for each row, a foreign-key trigger per row on the
busiest write; all it did beyond that was cascade a team's delete to its rows. An
``AFTER DELETE`` trigger on ``teams`` now does that cascade, and a create checks the team
once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL_UP = (
    """
    CREATE FUNCTION outbox_events_of_deleted_team() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM outbox_events WHERE team_id = OLD.id;
        RETURN OLD;
    END
    $$
    """,
    """
    CREATE TRIGGER outbox_events_of_deleted_team AFTER DELETE ON teams
    FOR EACH ROW EXECUTE FUNCTION outbox_events_of_deleted_team()
    """,
)
POSTGRESQL_DOWN = (
    "DROP TRIGGER outbox_events_of_deleted_team ON teams",
    "DROP FUNCTION outbox_events_of_deleted_team()",
)
SQLITE_UP = (
    """
    CREATE TRIGGER outbox_events_of_deleted_team AFTER DELETE ON teams FOR EACH ROW
    BEGIN
        DELETE FROM outbox_events WHERE team_id = OLD.id;
    END
    """,
)
SQLITE_DOWN = ("DROP TRIGGER outbox_events_of_deleted_team",)


def _run(postgresql: Sequence[str], sqlite: Sequence[str]) -> None:
    for statement in postgresql if op.get_bind().dialect.name == "postgresql" else sqlite:
        op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_events_team_id_teams", type_="foreignkey")
    _run(POSTGRESQL_UP, SQLITE_UP)


def downgrade() -> None:
    _run(POSTGRESQL_DOWN, SQLITE_DOWN)
    # Rows of teams deleted meanwhile went with them, so the key holds for what is left.
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_outbox_events_team_id_teams", "teams", ["team_id"], ["id"], ondelete="CASCADE"
        )
