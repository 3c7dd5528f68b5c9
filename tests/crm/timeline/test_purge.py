"""Retention of chat notes (OQ-7): older than the retention ⇒ purged, with backdated rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select

from crm_service.timeline.models import HUB_CHANNEL_CHAT, Note
from crm_service.timeline.service import timeline_service
from tests.crm.conftest import TeamHandle

NOW = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


async def add_note(
    crm_app: FastAPI, team: TeamHandle, *, age: timedelta, type: str = HUB_CHANNEL_CHAT
) -> int:
    async with crm_app.state.session_factory() as session, session.begin():
        note = Note(
            team_id=team.id,
            record_kind="deal",
            record_id=1,
            type=type,
            channel_room_id=f"room-{age.total_seconds():.0f}-{type}",
            created_at=NOW - age,
        )
        session.add(note)
        await session.flush()
        return note.id


async def remaining(crm_app: FastAPI) -> list[int]:
    async with crm_app.state.session_factory() as session:
        return list(await session.scalars(select(Note.id).order_by(Note.id)))


async def test_chat_notes_older_than_the_retention_are_purged_and_younger_kept(
    crm_app: FastAPI, team: TeamHandle
) -> None:
    await add_note(crm_app, team, age=timedelta(days=400))
    await add_note(crm_app, team, age=timedelta(days=365, seconds=1))
    kept = [
        await add_note(crm_app, team, age=timedelta(days=364, hours=23)),
        await add_note(crm_app, team, age=timedelta(days=1)),
    ]

    purged = await timeline_service.purge_expired(
        crm_app.state.session_factory, retention_days=365, now=NOW
    )

    assert purged == 2
    assert await remaining(crm_app) == kept


async def test_the_retention_is_the_configured_number_of_days(
    crm_app: FastAPI, team: TeamHandle
) -> None:
    await add_note(crm_app, team, age=timedelta(days=31))
    kept = await add_note(crm_app, team, age=timedelta(days=29))

    await timeline_service.purge_expired(crm_app.state.session_factory, retention_days=30, now=NOW)

    assert await remaining(crm_app) == [kept]


async def test_notes_of_other_types_are_never_purged(crm_app: FastAPI, team: TeamHandle) -> None:
    kept = await add_note(crm_app, team, age=timedelta(days=3_000), type="comment")

    purged = await timeline_service.purge_expired(
        crm_app.state.session_factory, retention_days=365, now=NOW
    )

    assert (purged, await remaining(crm_app)) == (0, [kept])


async def test_a_backlog_larger_than_a_batch_is_purged_whole(
    crm_app: FastAPI, team: TeamHandle
) -> None:
    for days in range(400, 407):
        await add_note(crm_app, team, age=timedelta(days=days))
    kept = await add_note(crm_app, team, age=timedelta(days=2))

    purged = await timeline_service.purge_expired(
        crm_app.state.session_factory, retention_days=365, now=NOW, batch_size=3
    )

    assert (purged, await remaining(crm_app)) == (7, [kept])
