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

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import Row, Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.database import utcnow
from crm_service.deals.service import deal_service
from crm_service.events.models import OutboxEvent, OutboxStatus
from crm_service.events.outbox import TIMELINE_NOTE, claim_due_batch
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
# Rows one run claims at most: its own and up to this many - 1 other due notes, their
# histories fetched at once (as many as a webhook batch sends).
NOTE_BATCH_LIMIT = 20
GONE_ERROR = "record deleted before its note"
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


# Each claimed row's outcome, or the error that left it claimed, by outbox id.
NoteBatch = dict[int, NoteOutcome | Exception]


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


@functools.cache
def _claim_statement(limit: int) -> Any:
    return claim_due_batch(TIMELINE_NOTE, limit).returning(
        OutboxEvent.id,
        OutboxEvent.team_id,
        OutboxEvent.record_kind,
        OutboxEvent.record_id,
        OutboxEvent.room_id,
    )


@functools.cache
def _note_insert(dialect: str) -> Any:
    """The chat note INSERT, built once per dialect and run with one parameter set per
    note (SQLAlchemy sends them as one multi-row statement): ``ON CONFLICT DO NOTHING``
    on the (record, type, room) constraint, returning the key of each note it wrote."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Table = Note.__table__  # type: ignore[assignment]
    notes = table.c
    return (
        insert(table)
        .on_conflict_do_nothing(
            index_elements=["record_kind", "record_id", "type", "channel_room_id"]
        )
        .returning(notes.record_kind, notes.record_id, notes.channel_room_id)
    )


_OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]
_outbox = _OUTBOX.c
# Closing note rows: Core, compiled once (the ORM's bulk-UPDATE bookkeeping is not needed).
_CLOSE_ROWS = (
    update(_OUTBOX)
    .where(_outbox.id.in_(bindparam("ids", expanding=True)), _outbox.status == OutboxStatus.PENDING)
    .values(
        status=OutboxStatus.DELIVERED,
        completed_at=bindparam("completed_at"),
        last_error=bindparam("error"),
    )
)


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
        """Write the note a ``timeline_note`` outbox row asks for, and close the row (that
        row alone; :meth:`write_batch` takes other due rows with it)."""
        written = await self.write_batch(sessions, outbox_id, http_client, settings, limit=1)
        outcome = written.get(outbox_id, NoteOutcome.NOT_PENDING)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def write_batch(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox_id: int,
        http_client: httpx.AsyncClient,
        settings: Settings,
        *,
        limit: int = NOTE_BATCH_LIMIT,
        on_claimed: Callable[[Sequence[int]], None] | None = None,
    ) -> NoteBatch:
        """Write the note of row ``outbox_id`` and of up to ``limit - 1`` other due
        ``timeline_note`` rows claimed with it, and close them; returns each claimed row's
        outcome, or the error that left it claimed (its lease runs out and the sweep sends
        it again). Empty when ``outbox_id`` is not pending or another run holds it: a
        duplicate task asks Omni nothing.

        The three steps of one note, for the whole batch: claim the rows and read what
        their notes need (a query per record kind and one for the teams); fetch the
        histories at once; insert every note and close every row in one transaction.
        ``on_claimed`` is told the claimed ids as soon as the claim has committed."""
        claimed: list[Row[Any]] = []
        try:
            claimed = await self._claim(sessions, outbox_id, settings, limit)
        finally:
            if on_claimed is not None:
                on_claimed([row.id for row in claimed])
        if not claimed:
            return {}
        async with sessions() as session:
            sources, gone = await self._load_sources(session, claimed)
        fetched = await asyncio.gather(
            *(self._excerpt(source, http_client, settings) for source in sources),
            return_exceptions=True,
        )
        outcomes: NoteBatch = {}
        notes: list[tuple[NoteSource, str | None, str | None]] = []
        for source, result in zip(sources, fetched, strict=True):
            if isinstance(result, Exception):
                outcomes[source.outbox_id] = result
            elif isinstance(result, BaseException):
                raise result  # cancelled: the task's deadline
            else:
                notes.append((source, *result))
        async with sessions() as session, session.begin():
            inserted = await self._insert_notes(session, notes, settings)
            closing: dict[str | None, list[int]] = {GONE_ERROR: gone} if gone else {}
            for source, _, failure in notes:
                closing.setdefault(failure, []).append(source.outbox_id)
            for error, ids in closing.items():
                await self._close_rows(session, ids, error=error)
        for gone_id in gone:
            outcomes[gone_id] = NoteOutcome.RECORD_GONE
        for source, _, failure in notes:
            if source.outbox_id not in inserted:
                outcomes[source.outbox_id] = NoteOutcome.ALREADY_WRITTEN
            elif failure is not None:
                # Counted once the note without excerpt is committed, so a duplicate run
                # that also fails does not count the same note twice.
                TIMELINE_LOG_CREATION_FAILED.inc()
                outcomes[source.outbox_id] = NoteOutcome.WRITTEN_WITHOUT_EXCERPT
            else:
                outcomes[source.outbox_id] = NoteOutcome.WRITTEN
        return outcomes

    async def _claim(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox_id: int,
        settings: Settings,
        limit: int,
    ) -> list[Row[Any]]:
        """Take row ``outbox_id`` if it is pending and nobody holds it, and with it up to
        ``limit - 1`` other due note rows, as webhook deliveries do: ``next_attempt_at``
        moves past the longest a run can take (the lease), so a duplicate task finds
        nothing to take and Omni is asked once. A run that dies leaves leases that expire,
        and the outbox sweep sends the rows again. One statement, atomic on its own."""
        now = utcnow()
        async with sessions() as session:
            connection = await session.connection(
                execution_options={"isolation_level": "AUTOCOMMIT"}
            )
            rows = (
                await connection.execute(
                    _claim_statement(limit),
                    {
                        "outbox_id": outbox_id,
                        "due_by": now + CLOCK_SKEW,
                        "lease_until": now + lease(settings),
                    },
                )
            ).all()
        return sorted(rows, key=lambda row: (row.id != outbox_id, row.id))

    async def _load_sources(
        self, session: AsyncSession, rows: Sequence[Row[Any]]
    ) -> tuple[list[NoteSource], list[int]]:
        """What each claimed row's note is made of, and the rows whose record is gone
        (deleted meanwhile)."""
        records: dict[tuple[str, int], Row[Any]] = {}
        for kind in {row.record_kind for row in rows}:
            model = RECORD_SERVICES[RecordKind(kind)].model
            found = await session.execute(
                select(
                    model.id, model.team_id, model.channel_integration_room_id, model.creator_flag
                ).where(
                    model.id.in_([row.record_id for row in rows if row.record_kind == kind]),
                    model.deleted_at.is_(None),
                )
            )
            records.update(((kind, record.id), record) for record in found)
        teams = {
            team.id: team
            for team in await session.execute(
                select(
                    Team.id,
                    Team.external_company_id,
                    OmnichannelLink.base_url,
                    OmnichannelLink.public_url,
                    OmnichannelLink.api_token,
                )
                .outerjoin(OmnichannelLink, OmnichannelLink.team_id == Team.id)
                .where(Team.id.in_({row.team_id for row in rows}))
            )
        }
        sources: list[NoteSource] = []
        gone: list[int] = []
        for row in rows:
            record = records.get((row.record_kind, row.record_id))
            team = teams.get(row.team_id)
            if record is None or team is None or record.team_id != row.team_id:
                gone.append(row.id)
                continue
            sources.append(
                NoteSource(
                    outbox_id=row.id,
                    team_id=row.team_id,
                    record_kind=RecordKind(row.record_kind),
                    record_id=row.record_id,
                    room_id=record.channel_integration_room_id or row.room_id or "",
                    creator_flag=record.creator_flag,
                    organization_id=team.external_company_id,
                    link=None
                    if team.base_url is None
                    else OmniLink(
                        base_url=team.base_url, public_url=team.public_url, api_token=team.api_token
                    ),
                )
            )
        return sources, gone

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

    async def _insert_notes(
        self,
        session: AsyncSession,
        notes: Sequence[tuple[NoteSource, str | None, str | None]],
        settings: Settings,
    ) -> set[int]:
        """One INSERT of every note, ``ON CONFLICT DO NOTHING`` on the (record, type,
        room) constraint; returns the outbox ids whose note it wrote (not a row whose note
        another run wrote, nor a second row of the batch for the same record and room)."""
        if not notes:
            return set()
        now = utcnow()
        connection = await session.connection()
        written_rows = await connection.execute(
            _note_insert(connection.dialect.name),
            [
                {
                    "team_id": source.team_id,
                    "record_kind": str(source.record_kind),
                    "record_id": source.record_id,
                    "type": HUB_CHANNEL_CHAT,
                    "excerpt": excerpt,
                    "room_deeplink": None
                    if source.link is None
                    else room_deeplink(settings, source.link, source.room_id),
                    "creator_flag": source.creator_flag,
                    "creator_name": creator_label(source.creator_flag),
                    "channel_room_id": source.room_id,
                    "channel_organization_id": source.organization_id,
                    "created_at": now,
                }
                for source, excerpt, _ in notes
            ],
        )
        written = {tuple(row) for row in written_rows}
        inserted: set[int] = set()
        for source, _, _ in notes:
            key = (str(source.record_kind), source.record_id, source.room_id)
            if key in written:
                written.discard(key)
                inserted.add(source.outbox_id)
        return inserted

    async def _close_rows(
        self, session: AsyncSession, outbox_ids: Sequence[int], *, error: str | None
    ) -> None:
        connection = await session.connection()
        await connection.execute(
            _CLOSE_ROWS, {"ids": list(outbox_ids), "completed_at": utcnow(), "error": error}
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
