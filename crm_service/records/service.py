"""What deals and tickets share: loading within the tenant, creator flag, contact links,
version bumps, soft delete, and the events and notes of bot/AI records in a room."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Executable, Integer, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.contacts.models import Contact
from crm_service.database import on_commit, utcnow
from crm_service.errors import NotFound, Unprocessable
from crm_service.events import outbox
from crm_service.events.dispatch import remember_for_dispatch
from crm_service.metrics import count_record_created
from crm_service.records import one_statement
from crm_service.records.models import RecordColumns
from crm_service.records.schemas import RecordCreateFields
from crm_service.settings import Settings
from crm_service.teams.auth import Caller
from crm_service.teams.features import FlagCache
from shared_contracts.creators import creator_label, parse_creator_flag
from shared_contracts.events import Action, Payload, RecordKind, build_envelope, event_type_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordContext:
    """Everything a record operation needs besides the session."""

    caller: Caller
    settings: Settings
    flag_cache: FlagCache


R = TypeVar("R", bound=RecordColumns)
PayloadFactory = Callable[[], Payload]


def parse_creator(raw: object, *, kind: RecordKind) -> str | None:
    """``bot`` | ``agentic_ai``, any case; anything else is stored as null and logged."""
    flag = parse_creator_flag(raw)
    if raw is not None and flag is None:
        log.warning(
            "unrecognised creator_flag stored as null",
            extra={"record_kind": str(kind), "creator_flag": str(raw)[:50]},
        )
    return None if flag is None else str(flag)


def _present(value: int | None) -> list[int]:
    return [] if value is None else [value]


def creator_name(record: RecordColumns) -> str:
    return creator_label(record.creator_flag) or record.created_by


class RecordService(Generic[R]):
    kind: ClassVar[RecordKind]
    model: ClassVar[type[Any]]
    link_model: ClassVar[type[Any]]
    link_column: ClassVar[str]
    preview_fields: ClassVar[frozenset[str]]
    url_segment: ClassVar[str]
    # Whether a create on PostgreSQL writes only its one statement (its session may then
    # autocommit). A ticket's also takes the team's next ticket number first.
    creates_in_one_statement: ClassVar[bool] = False

    def __init__(self) -> None:
        self._link_statements: dict[str, Executable] = {}

    def external_url(self, settings: Settings, record: R) -> str:
        return f"{settings.public_url.rstrip('/')}/{self.url_segment}/{record.id}"

    def identity_fields(self, context: RecordContext, record: R) -> dict[str, Any]:
        """What every event of a record carries, delete events included. Events exist only
        for records in a room, so the room is always set here."""
        return {
            "id": record.id,
            "company_id": context.caller.team.external_company_id,
            "channel_integration_room_id": record.channel_integration_room_id or "",
            "created_at": record.created_at,
            "version": record.version,
        }

    def state_fields(self, context: RecordContext, record: R) -> dict[str, Any]:
        """The shared part of a create or update event (the record's display state)."""
        return {
            **self.identity_fields(context, record),
            "name": record.name,
            "creator_flag": record.creator_flag,
            "creator_name": creator_name(record),
            "external_url": self.external_url(context.settings, record),
            "updated_at": record.updated_at,
        }

    def read_fields(
        self, context: RecordContext, record: R, contact_ids: list[int]
    ) -> dict[str, Any]:
        """The shared part of an API read of a deal or a ticket."""
        return {
            "id": record.id,
            "name": record.name,
            "channel_integration_room_id": record.channel_integration_room_id,
            "creator_flag": record.creator_flag,
            "creator_name": creator_name(record),
            "crm_lead_ids": contact_ids,
            "external_url": self.external_url(context.settings, record),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "version": record.version,
        }

    async def get(
        self, session: AsyncSession, team_id: int, record_id: int, *, for_update: bool = False
    ) -> R:
        """The live record of this team; another team's, a deleted or a missing one is 404."""
        query = select(self.model).where(
            self.model.id == record_id,
            self.model.team_id == team_id,
            self.model.deleted_at.is_(None),
        )
        if for_update:
            query = query.with_for_update()
        record = await session.scalar(query)
        if record is None:
            raise NotFound(f"{self.kind} {record_id} not found")
        return record  # type: ignore[no-any-return]

    async def contact_ids(self, session: AsyncSession, record_id: int) -> list[int]:
        link_record = getattr(self.link_model, self.link_column)
        result = await session.scalars(
            select(self.link_model.contact_id)
            .where(link_record == record_id)
            .order_by(self.link_model.contact_id)
        )
        return list(result)

    async def link_contacts(
        self,
        session: AsyncSession,
        team_id: int,
        record_id: int,
        crm_lead_ids: list[int] | None,
        contact_id: int | None,
    ) -> list[int]:
        """Link the union of both fields (OQ-10 settled) in one statement; ids that are not
        this team's contacts are skipped with a warning (RFC CDTC-S03 ERR-1/2). Re-linking
        is a no-op on the unique pair. Returns the requested ids that are linked now.

        ``INSERT … SELECT … ON CONFLICT DO UPDATE … RETURNING`` checks the team, inserts
        and reports already-linked pairs too, in one round trip."""
        requested = list(dict.fromkeys([*(crm_lead_ids or []), *_present(contact_id)]))
        if not requested:
            return []
        statement = self._link_statement(session.get_bind().dialect.name)
        params = {"record_id": record_id, "team_id": team_id, "contact_ids": requested}
        linked = set(await session.scalars(statement, params))
        self._report_skipped(team_id, requested, linked)
        return [contact for contact in requested if contact in linked]

    @staticmethod
    def _report_skipped(team_id: int, requested: list[int], linked: set[int]) -> None:
        skipped = [contact for contact in requested if contact not in linked]
        if skipped:
            log.warning(
                "contact ids skipped: not contacts of this team",
                extra={"team_id": team_id, "skipped_contact_ids": skipped},
            )

    def _link_statement(self, dialect: str) -> Executable:
        """Built once per dialect: constructing this statement (and its cache key) on every
        call cost more CPU than the database spends running it."""
        statement = self._link_statements.get(dialect)
        if statement is None:
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            # The table, not the mapped class: an ORM insert executed with parameters is
            # an ORM bulk insert of those parameters, not this statement.
            table = self.link_model.__table__
            link = insert(table).from_select(
                [self.link_column, "contact_id"],
                select(bindparam("record_id", type_=Integer), Contact.id).where(
                    Contact.team_id == bindparam("team_id"),
                    Contact.id.in_(bindparam("contact_ids", expanding=True)),
                ),
            )
            statement = link.on_conflict_do_update(
                index_elements=[self.link_column, "contact_id"],
                set_={"contact_id": link.excluded.contact_id},
            ).returning(table.c.contact_id)
            self._link_statements[dialect] = statement
        return statement

    def check_set_once(self, record: R, changes: dict[str, Any]) -> None:
        """The room and the creator flag are fixed at create (DESIGN.md §3)."""
        if "channel_integration_room_id" in changes and (
            changes["channel_integration_room_id"] != record.channel_integration_room_id
        ):
            raise Unprocessable(
                "channel_integration_room_id is set at create and cannot change",
                field="channel_integration_room_id",
            )
        if "creator_flag" in changes:
            flag = parse_creator_flag(changes["creator_flag"])
            if (None if flag is None else str(flag)) != record.creator_flag:
                raise Unprocessable(
                    "creator_flag is set at create and cannot change", field="creator_flag"
                )

    @staticmethod
    def require_values(given: dict[str, Any], *fields: str) -> None:
        for field in fields:
            if field in given and given[field] is None:
                raise Unprocessable(f"{field} cannot be null", field=field)

    def apply_changes(self, record: R, changes: dict[str, Any]) -> set[str]:
        """Set the changed columns; bump ``version`` only when a preview field changed
        (OQ-8 settled). Returns the names of the preview fields that changed."""
        changed: set[str] = set()
        for field, value in changes.items():
            if getattr(record, field) != value:
                setattr(record, field, value)
                changed.add(field)
        if changed:
            record.updated_at = utcnow()
        preview_changed = changed & self.preview_fields
        if preview_changed:
            record.version += 1
        return preview_changed

    def new_values(
        self, context: RecordContext, body: RecordCreateFields, **kind_fields: Any
    ) -> dict[str, Any]:
        """The columns of a new record: the fields every kind has plus ``kind_fields``."""
        now = utcnow()
        return {
            "team_id": context.caller.team.id,
            "name": body.name,
            "channel_integration_room_id": body.channel_integration_room_id,
            "creator_flag": parse_creator(body.creator_flag, kind=self.kind),
            "created_by": context.caller.sso_id,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            **kind_fields,
        }

    async def insert(
        self,
        session: AsyncSession,
        context: RecordContext,
        body: RecordCreateFields,
        event_data: Callable[[R], Payload],
        **kind_fields: Any,
    ) -> tuple[R, list[int]]:
        """Create a record with the fields every kind has plus ``kind_fields``, link its
        contacts, count it and write its create event; returns it with its contact ids.

        On PostgreSQL the row, its links and its outbox rows are one statement
        (:mod:`crm_service.records.one_statement`); elsewhere the ORM writes them."""
        values = self.new_values(context, body, **kind_fields)
        if session.get_bind().dialect.name == "postgresql":
            engine = session.get_bind()
            assert isinstance(engine, Engine)
            record, contact_ids, outbox_rows = await self.write_in_one_statement(
                one_statement.in_session(session),
                one_statement.id_blocks(engine),
                values,
                body,
                event_data,
                emits=lambda record: outbox.parity_applies(session, context.flag_cache, record),
            )
            for outbox_id, row_kind in outbox_rows:
                remember_for_dispatch(session, outbox_id, row_kind)
        else:
            record = self.model(**values)
            session.add(record)
            await session.flush()
            contact_ids = await self.link_contacts(
                session, record.team_id, record.id, body.crm_lead_ids, body.contact_id
            )
            await self._emit(session, context, record, Action.CREATE, lambda: event_data(record))
        self._count_created(session, record)
        return record, sorted(contact_ids)

    async def write_in_one_statement(
        self,
        run: one_statement.RunOne,
        blocks: one_statement.IdBlocks,
        values: dict[str, Any],
        body: RecordCreateFields,
        event_data: Callable[[R], Payload],
        *,
        emits: Callable[[R], Awaitable[bool]],
        guard: one_statement.Guard | None = None,
    ) -> tuple[R, list[int], list[tuple[int, str]]]:
        """The PostgreSQL create: the record (``values``), its contact links and, when
        ``emits`` says the record has events, its webhook event, in one statement (the
        event brings the record's timeline-note job when the worker attempts it). Returns
        the record, the contact ids linked and the outbox rows written, (id, kind), for
        the caller to hand to the broker once committed. With a ``guard`` nothing is
        written unless it gives a row (``GuardFailed``)."""
        table = self.model.__table__
        values["id"] = await blocks.next_id(run, table.name)
        values = one_statement.with_defaults(table, values)
        record: R = one_statement.as_written(self.model, values)
        requested = list(dict.fromkeys([*(body.crm_lead_ids or []), *_present(body.contact_id)]))
        event_type = event_type_for(self.kind, Action.CREATE)
        rows: list[one_statement.OutboxValues] = []
        if await emits(record):
            rows = [
                one_statement.OutboxValues(
                    outbox.new_webhook_id(),
                    outbox.WEBHOOK,
                    build_envelope(event_type, event_data(record)),
                )
            ]
        written = await one_statement.write_record(
            run,
            table=table,
            values=values,
            link_table=self.link_model.__tablename__,
            link_column=self.link_column,
            contact_ids=requested,
            event_type=str(event_type),
            record_kind=str(self.kind),
            outbox=rows,
            guard=guard,
        )
        self._report_skipped(record.team_id, requested, set(written.contact_ids))
        linked = set(written.contact_ids)
        contact_ids = [contact for contact in requested if contact in linked]
        return record, sorted(contact_ids), written.outbox

    def _count_created(self, session: AsyncSession, record: R) -> None:
        kind, flag = str(self.kind), record.creator_flag

        async def count_created() -> None:
            count_record_created(kind, flag)

        # Counted once the record exists: a create that rolls back counts nothing.
        on_commit(session, count_created)

    async def updated(
        self, session: AsyncSession, context: RecordContext, record: R, data: PayloadFactory
    ) -> None:
        await self._emit(session, context, record, Action.UPDATE, data)

    async def delete(self, session: AsyncSession, context: RecordContext, record_id: int) -> None:
        """Soft delete: the record answers 404 from now on; the delete bumps ``version`` so
        receivers order it after every earlier event of the record."""
        record = await self.get(session, context.caller.team.id, record_id, for_update=True)
        record.deleted_at = utcnow()
        record.updated_at = record.deleted_at
        record.version += 1
        await session.flush()
        await self._emit(
            session, context, record, Action.DELETE, lambda: self.delete_data(record, context)
        )

    async def _emit(
        self,
        session: AsyncSession,
        context: RecordContext,
        record: R,
        action: Action,
        data: PayloadFactory,
    ) -> None:
        """The event of one change, only for bot/AI records in a room of a team with the
        flag on (a create's event brings its timeline-note job when the worker attempts it);
        the payload is built only then."""
        if await outbox.parity_applies(session, context.flag_cache, record):
            await outbox.record_change(
                session,
                kind=self.kind,
                action=action,
                record=record,
                data=data(),
            )

    def delete_data(self, record: R, context: RecordContext) -> Payload:
        raise NotImplementedError
