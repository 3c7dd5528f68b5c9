"""A deleted team takes its outbox rows (and their delivery attempts) with it, on
PostgreSQL and on SQLite: the ``outbox_events_of_deleted_team`` trigger does what the
rows' ``ON DELETE CASCADE`` key to ``teams`` did before migration 0003."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.database import create_engine, utcnow
from crm_service.events.outbox import note_jobs_of_creates
from tests.crm.conftest import (
    TeamHandle,
    create_deal,
    create_team,
    crm_settings,
    enable_parity,
    execute,
    fetch_rows,
    running_client,
)

BOT_DEAL = {"channel_integration_room_id": "room-1", "creator_flag": "bot"}


async def _two_teams_with_events(client: httpx.AsyncClient) -> tuple[TeamHandle, TeamHandle]:
    doomed = await create_team(client, external_company_id="company-doomed", name="Doomed")
    kept = await create_team(client, external_company_id="company-kept", name="Kept")
    for team in (doomed, kept):
        await enable_parity(client, team)
        await create_deal(client, team, **BOT_DEAL)
    return doomed, kept


async def _write_note_jobs(url: str) -> None:
    """Each create event's note job, as the worker's attempt of the event writes it."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            events = list(
                (await connection.execute(text("SELECT id FROM outbox_events"))).scalars()
            )
            written = await connection.execute(
                note_jobs_of_creates(engine.dialect.name), {"ids": events, "now": utcnow()}
            )
            assert len(written.all()) == len(events) == 2
    finally:
        await engine.dispose()


ATTEMPT = (
    "INSERT INTO delivery_attempts (outbox_event_id, status_code, latency_ms, created_at)"
    " SELECT id, 500, 1, created_at FROM outbox_events"
)
OUTBOX_TEAMS = "SELECT team_id FROM outbox_events ORDER BY id"
ATTEMPT_TEAMS = (
    "SELECT outbox_events.team_id FROM delivery_attempts"
    " JOIN outbox_events ON outbox_events.id = delivery_attempts.outbox_event_id"
)


async def test_deleting_a_team_deletes_its_outbox_rows_on_postgresql(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    doomed, kept = await _two_teams_with_events(client)
    await _write_note_jobs(db.url.render_as_string(hide_password=False))
    await execute(db, ATTEMPT)
    teams = [row["team_id"] for row in await fetch_rows(db, OUTBOX_TEAMS)]
    assert sorted(set(teams)) == sorted({doomed.id, kept.id}) and len(teams) == 4

    await execute(db, "DELETE FROM teams WHERE id = :id", id=doomed.id)

    assert [row["team_id"] for row in await fetch_rows(db, OUTBOX_TEAMS)] == [kept.id] * 2
    assert await fetch_rows(db, "SELECT count(*) AS n FROM delivery_attempts") == [{"n": 2}]
    assert {row["team_id"] for row in await fetch_rows(db, ATTEMPT_TEAMS)} == {kept.id}


async def test_deleting_a_team_deletes_its_outbox_rows_on_sqlite(sqlite_file: Path) -> None:
    path = sqlite_file
    async with running_client(crm_settings(f"sqlite+aiosqlite:///{path}")) as client:
        doomed, kept = await _two_teams_with_events(client)
    await _write_note_jobs(f"sqlite+aiosqlite:///{path}")
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA foreign_keys = ON")  # the attempts' own cascade, as the app
        connection.execute(ATTEMPT)
        assert len(connection.execute(OUTBOX_TEAMS).fetchall()) == 4
        connection.execute("DELETE FROM teams WHERE id = ?", (doomed.id,))
        connection.commit()
        assert connection.execute(OUTBOX_TEAMS).fetchall() == [(kept.id,)] * 2
        assert {team for (team,) in connection.execute(ATTEMPT_TEAMS)} == {kept.id}
        assert connection.execute("SELECT count(*) FROM delivery_attempts").fetchone() == (2,)
