"""Timeline notes: writing the chat-history note of a bot/AI record, reading a record's
timeline, and purging old notes (DESIGN.md §6).

Writing runs in three steps so that no database transaction stays open while Omni is
called: claim the outbox row and read what the note needs; fetch the history (bounded by
the Omni timeout); insert the note and close the outbox row in one transaction. The
claim keeps a duplicate task from asking Omni again; the insert is ``ON CONFLICT DO
NOTHING`` on the (record, type, room) constraint, so even a run whose claim ran out
writes no second note.

Unreadable history (Omni down, slow, an error, a malformed answer) and a team without an
Omnichannel link still get their note, without excerpt (CDTC-S04 ERR-2): the sales
manager sees at once who made the record and in which room, and nothing is held back
for a configuration that may never come.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.database import utcnow
from crm_service.deals.service import deal_service
from crm_service.errors import NotFound
from crm_service.events.models import OutboxEvent, OutboxStatus
from crm_service.events.outbox import TIMELINE_NOTE, claim_due_row
from crm_service.metrics import TIMELINE_LOG_CREATION_FAILED
from crm_service.records.service import RecordService
from crm_service.settings import Settings
from crm_service.teams.models import OmnichannelLink, Team
from crm_service.tickets.service import ticket_service
from crm_service.timeline.excerpt import build_excerpt
from crm_service.timeline.history import HistoryUnavailable, OmniLink, fetch_history
from crm_service.timeline.models import HUB_CHANNEL_CHAT, Note
from shared_contracts.creators import creator_label
from shared_contracts.events import RecordKind

log = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 1_000
# A row is taken a little before its ``next_attempt_at`` by this worker's clock, so that a
# worker host whose clock runs behind the API's does not leave a fresh row to the sweep.
CLOCK_SKEW = timedelta(seconds=1)

RECORD_SERVICES: dict[RecordKind, RecordService[Any]] = {
    RecordKind.DEAL: deal_service,
    RecordKind.TICKET: ticket_service,
}


class NoteOutcome(StrEnum):
    WRITTEN = "written"
    WRITTEN_WITHOUT_EXCERPT = "written_without_excerpt"
    ALREADY_WRITTEN = "already_written"  # another run's note won the unique constraint
    RECORD_GONE = "record_gone"  # deleted before its note: none written, row closed
    NOT_PENDING = "not_pending"  # done, or held by another run: nothing to do


@dataclass(frozen=True)
class NoteSource:
    """What the note is built from, read in the first step."""

    outbox_id: int
    team_id: int
    record_kind: RecordKind
    record_id: int
    room_id: str
    creator_flag: str | None
    organization_id: str
    link: OmniLink | None


def lease(settings: Settings) -> timedelta:
    """Longer than any run can take: the Omni call is cut at its timeout, and the two
    database transactions around it are short."""
    return timedelta(seconds=2 * settings.omni_timeout_seconds + 2)


def room_deeplink(settings: Settings, link: OmniLink, room_id: str) -> str:
    return settings.omni_room_url_template.format(
        omni_public_url=link.public_url.rstrip("/"), room_id=quote(room_id, safe="")
    )


class TimelineService:
    async def write_for_outbox_row(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox_id: int,
        http_client: httpx.AsyncClient,
        settings: Settings,
    ) -> NoteOutcome:
        """Write the note a ``timeline_note`` outbox row asks for, and close the row."""
        async with sessions() as session, session.begin():
            claimed = await self._claim(session, outbox_id, settings)
            if claimed is None:
                return NoteOutcome.NOT_PENDING
            source = await self._load_source(session, claimed)
            if source is None:
                await self._close_row(session, outbox_id, error="record deleted before its note")
                return NoteOutcome.RECORD_GONE

        excerpt, failure = await self._excerpt(source, http_client, settings)
        async with sessions() as session, session.begin():
            inserted = await self._insert_note(session, source, excerpt, settings)
            await self._close_row(session, outbox_id, error=failure)
        if not inserted:
            return NoteOutcome.ALREADY_WRITTEN
        if failure is not None:
            # Counted once the note without excerpt is committed, so a duplicate run
            # that also fails does not count the same note twice.
            TIMELINE_LOG_CREATION_FAILED.inc()
            return NoteOutcome.WRITTEN_WITHOUT_EXCERPT
        return NoteOutcome.WRITTEN

    async def _claim(
        self, session: AsyncSession, outbox_id: int, settings: Settings
    ) -> OutboxEvent | None:
        """Take the row if it is pending and nobody holds it, as webhook deliveries do:
        ``next_attempt_at`` moves past the longest a run can take (the lease), so a
        duplicate task finds nothing to take and Omni is asked once. A run that dies
        leaves a lease that expires, and the outbox sweep sends the row again."""
        now = utcnow()
        row: OutboxEvent | None = await session.scalar(
            claim_due_row(
                outbox_id, TIMELINE_NOTE, now=now, lease=lease(settings), early=CLOCK_SKEW
            ).returning(OutboxEvent)
        )
        return row

    async def _load_source(self, session: AsyncSession, row: OutboxEvent) -> NoteSource | None:
        """What the note is made of; ``None`` when the record is gone (deleted meanwhile)."""
        kind = RecordKind(row.record_kind)
        try:
            record = await RECORD_SERVICES[kind].get(session, row.team_id, row.record_id)
        except NotFound:
            return None
        team, link = (
            await session.execute(
                select(Team, OmnichannelLink)
                .outerjoin(OmnichannelLink, OmnichannelLink.team_id == Team.id)
                .where(Team.id == row.team_id)
            )
        ).one()
        return NoteSource(
            outbox_id=row.id,
            team_id=row.team_id,
            record_kind=kind,
            record_id=row.record_id,
            room_id=record.channel_integration_room_id or row.room_id or "",
            creator_flag=record.creator_flag,
            organization_id=team.external_company_id,
            link=None
            if link is None
            else OmniLink(
                base_url=link.base_url, public_url=link.public_url, api_token=link.api_token
            ),
        )

    async def _excerpt(
        self, source: NoteSource, http_client: httpx.AsyncClient, settings: Settings
    ) -> tuple[str | None, str | None]:
        """``(excerpt, None)``, or ``(None, why)`` when the history could not be read."""
        if source.link is None:
            failure = "team has no Omnichannel link"
        else:
            try:
                messages = await fetch_history(
                    http_client,
                    source.link,
                    source.room_id,
                    deadline_seconds=settings.omni_timeout_seconds,
                )
            except HistoryUnavailable as error:
                failure = f"chat history unavailable: {error}"
            else:
                return build_excerpt(messages), None
        log.warning(
            "timeline note written without excerpt",
            extra={
                "outbox_id": source.outbox_id,
                "record_kind": str(source.record_kind),
                "record_id": source.record_id,
                "room_id": source.room_id,
                "reason": failure,
            },
        )
        return None, failure

    async def _insert_note(
        self, session: AsyncSession, source: NoteSource, excerpt: str | None, settings: Settings
    ) -> bool:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        statement = (
            insert(Note)
            .values(
                team_id=source.team_id,
                record_kind=str(source.record_kind),
                record_id=source.record_id,
                type=HUB_CHANNEL_CHAT,
                excerpt=excerpt,
                room_deeplink=None
                if source.link is None
                else room_deeplink(settings, source.link, source.room_id),
                creator_flag=source.creator_flag,
                creator_name=creator_label(source.creator_flag),
                channel_room_id=source.room_id,
                channel_organization_id=source.organization_id,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(
                index_elements=["record_kind", "record_id", "type", "channel_room_id"]
            )
            .returning(Note.id)
        )
        return (await session.scalar(statement)) is not None

    async def _close_row(self, session: AsyncSession, outbox_id: int, *, error: str | None) -> None:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == outbox_id, OutboxEvent.status == OutboxStatus.PENDING)
            .values(
                status=OutboxStatus.DELIVERED,
                completed_at=utcnow(),
                last_error=error,
            )
        )

    async def entries(
        self,
        session: AsyncSession,
        team_id: int,
        kind: RecordKind,
        record_id: int,
        *,
        page: int,
        page_size: int,
    ) -> tuple[list[Note], int]:
        """One page (1-based) of a live record's timeline, newest first, and the total.
        Another team's, a deleted or a missing record is 404."""
        await RECORD_SERVICES[kind].get(session, team_id, record_id)
        of_record = (
            Note.team_id == team_id,
            Note.record_kind == str(kind),
            Note.record_id == record_id,
        )
        total = await session.scalar(select(func.count()).select_from(Note).where(*of_record)) or 0
        skip = (page - 1) * page_size
        # A page past the end is empty; not querying it also keeps an absurd page number
        # from overflowing the database's OFFSET type.
        if skip >= total:
            return [], total
        notes = await session.scalars(
            select(Note)
            .where(*of_record)
            .order_by(Note.created_at.desc(), Note.id.desc())
            .offset(skip)
            .limit(page_size)
        )
        return list(notes), total

    async def purge_expired(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retention_days: int,
        *,
        now: datetime | None = None,
        batch_size: int = PURGE_BATCH_SIZE,
    ) -> int:
        """Delete chat notes older than the retention (OQ-7), one short transaction per
        batch so a large backlog never holds long locks. Returns how many went."""
        cutoff = (now or utcnow()) - timedelta(days=retention_days)
        purged = 0
        while True:
            expired = (
                select(Note.id)
                .where(Note.type == HUB_CHANNEL_CHAT, Note.created_at < cutoff)
                .limit(batch_size)
                .scalar_subquery()
            )
            async with sessions() as session, session.begin():
                result = await session.execute(delete(Note).where(Note.id.in_(expired)))
            deleted = int(getattr(result, "rowcount", 0) or 0)
            purged += deleted
            if deleted < batch_size:
                return purged


timeline_service = TimelineService()
