"""A team's caller version, bumped by triggers whenever its flags or pipelines change

The deal create's fast path remembers a token's caller (the team, its parity flag, its
default pipeline and that pipeline's first stage) and writes its next create only while
the database still gives that same caller. Checking that meant running the whole caller
lookup again inside the create's statement: a five-table join with a correlated
``min(position)``, a sort and a limit, on every create. ``teams.caller_version`` is
bumped, in the same transaction, by every insert, update or delete of a row of
``team_features``, ``pipelines`` or ``stages``, whoever makes it (the API, the command
line, an operator's SQL): the check is now the token's row and the team's row, by their
keys. What lives on those two rows (the token's team, identity and expiry, the team's
company id) is compared there directly.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables whose rows make up a caller beyond its token and team rows, and how a row
# names its team: its own team_id, or (a stage) its pipeline's.
TEAM_OF = {
    "team_features": "SELECT {row}.team_id",
    "pipelines": "SELECT {row}.team_id",
    "stages": "SELECT team_id FROM pipelines WHERE id = {row}.pipeline_id",
}
BUMP = "UPDATE teams SET caller_version = caller_version + 1 WHERE id IN ({teams})"


def _postgresql_up() -> list[str]:
    statements = []
    for table, team in TEAM_OF.items():
        function = f"{table}_bump_caller_version"
        old, new = team.format(row="OLD"), team.format(row="NEW")
        statements += [
            f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    {BUMP.format(teams=new)};
                ELSIF TG_OP = 'DELETE' THEN
                    {BUMP.format(teams=old)};
                ELSE
                    {BUMP.format(teams=f"{old} UNION {new}")};
                END IF;
                RETURN NULL;
            END
            $$
            """,
            f"""
            CREATE TRIGGER {function} AFTER INSERT OR UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {function}()
            """,
        ]
    return statements


def _postgresql_down() -> list[str]:
    statements = []
    for table in TEAM_OF:
        function = f"{table}_bump_caller_version"
        statements += [f"DROP TRIGGER {function} ON {table}", f"DROP FUNCTION {function}()"]
    return statements


SQLITE_ROWS = {"INSERT": ("NEW",), "UPDATE": ("OLD", "NEW"), "DELETE": ("OLD",)}


def _sqlite_up() -> list[str]:
    statements = []
    for table, team in TEAM_OF.items():
        for event, rows in SQLITE_ROWS.items():
            teams = " UNION ".join(team.format(row=row) for row in rows)
            statements.append(
                f"""
                CREATE TRIGGER {table}_bump_caller_version_{event.lower()}
                AFTER {event} ON {table} FOR EACH ROW
                BEGIN
                    {BUMP.format(teams=teams)};
                END
                """
            )
    return statements


def _sqlite_down() -> list[str]:
    return [
        f"DROP TRIGGER {table}_bump_caller_version_{event.lower()}"
        for table in TEAM_OF
        for event in SQLITE_ROWS
    ]


def upgrade() -> None:
    op.add_column(
        "teams", sa.Column("caller_version", sa.BigInteger(), server_default="1", nullable=False)
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _postgresql_up() if postgresql else _sqlite_up():
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _postgresql_down() if postgresql else _sqlite_down():
        op.execute(statement)
    # A plain ALTER TABLE on SQLite too (3.35 and later): a batch copy of ``teams`` would
    # drop the table's own trigger (``outbox_events_of_deleted_team``, revision 0003).
    op.drop_column("teams", "caller_version")
