"""``teams.caller_version`` moves on every change to what a token's caller is read from
beyond its token and team rows (the team's ``team_features``, ``pipelines`` and
``stages`` rows), whoever makes it, on PostgreSQL and on SQLite: the triggers of
migration 0004. The deal create's fast path writes with a remembered caller only while
the version it read still holds (``teams/auth.caller_guard``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

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

OF_TEAM = "pipeline_id IN (SELECT id FROM pipelines WHERE team_id = :team)"
# Each change touches rows of the team ``:team`` only (``:other`` is the other team), in
# this order; the last moves a stage from one team's pipeline to the other's.
CHANGES = [
    (
        "feature inserted",
        "INSERT INTO team_features (team_id, name, enabled, updated_at)"
        " SELECT team_id, 'another_feature', enabled, updated_at FROM team_features"
        " WHERE team_id = :team",
    ),
    ("feature updated", "UPDATE team_features SET enabled = NOT enabled WHERE team_id = :team"),
    (
        "feature deleted",
        "DELETE FROM team_features WHERE team_id = :team AND name = 'another_feature'",
    ),
    (
        "pipeline inserted",
        "INSERT INTO pipelines (team_id, name, is_default) VALUES (:team, 'Extra', false)",
    ),
    ("pipeline updated", "UPDATE pipelines SET name = 'Renamed' WHERE team_id = :team"),
    (
        "stage inserted",
        "INSERT INTO stages (pipeline_id, name, position)"
        " SELECT id, 'Extra stage', 99 FROM pipelines WHERE team_id = :team AND is_default",
    ),
    ("stage updated", f"UPDATE stages SET position = position + 1 WHERE {OF_TEAM}"),
    ("stage deleted", f"DELETE FROM stages WHERE name = 'Extra stage' AND {OF_TEAM}"),
    ("pipeline deleted", "DELETE FROM pipelines WHERE team_id = :team AND NOT is_default"),
]
MOVE_A_STAGE = (
    "UPDATE stages SET pipeline_id = (SELECT min(id) FROM pipelines WHERE team_id = :other)"
    f" WHERE id = (SELECT max(id) FROM stages WHERE {OF_TEAM})"
)
VERSIONS = "SELECT id, caller_version FROM teams ORDER BY id"

Run = Callable[[str, dict[str, Any]], Awaitable[dict[int, int]]]


async def _two_teams(client: httpx.AsyncClient) -> tuple[TeamHandle, TeamHandle]:
    changed = await create_team(client, external_company_id="company-changed", name="Changed")
    other = await create_team(client, external_company_id="company-other", name="Other")
    for team in (changed, other):
        await enable_parity(client, team)
    return changed, other


async def _every_change_moves_its_teams_version(
    run: Run, changed: TeamHandle, other: TeamHandle
) -> None:
    ids = {"team": changed.id, "other": other.id}
    versions = await run("SELECT 1", ids)
    for name, sql in CHANGES:
        after = await run(sql, ids)
        assert after[changed.id] > versions[changed.id], name
        assert after[other.id] == versions[other.id], name
        versions = after
    after = await run(MOVE_A_STAGE, ids)
    assert after[changed.id] > versions[changed.id] and after[other.id] > versions[other.id]


async def test_every_change_to_a_caller_moves_its_teams_version_on_postgresql(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    changed, other = await _two_teams(client)

    async def run(sql: str, params: dict[str, Any]) -> dict[int, int]:
        await execute(db, sql, **params)
        return {row["id"]: row["caller_version"] for row in await fetch_rows(db, VERSIONS)}

    await _every_change_moves_its_teams_version(run, changed, other)


async def test_every_change_to_a_caller_moves_its_teams_version_on_sqlite(
    sqlite_file: Path,
) -> None:
    async with running_client(crm_settings(f"sqlite+aiosqlite:///{sqlite_file}")) as client:
        changed, other = await _two_teams(client)

    async def run(sql: str, params: dict[str, Any]) -> dict[int, int]:
        with closing(sqlite3.connect(sqlite_file)) as connection:
            connection.execute(sql, params)
            connection.commit()
            return dict(connection.execute(VERSIONS).fetchall())

    await _every_change_moves_its_teams_version(run, changed, other)


async def test_records_and_tokens_leave_the_version_alone(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    """Creates (deals, tickets and the team's ticket counter) must not move it: every
    create would then throw away every remembered caller of its team."""
    team, _ = await _two_teams(client)
    before = await fetch_rows(db, VERSIONS)
    await create_deal(client, team, channel_integration_room_id="room-1", creator_flag="bot")
    response = await client.post(
        "/api/v3.1/tickets", json={"name": "Ticket", "creator_flag": "bot"}, headers=team.auth
    )
    assert response.status_code == 201, response.text
    assert await fetch_rows(db, VERSIONS) == before
