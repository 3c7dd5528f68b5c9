"""A record's create on PostgreSQL in one statement: the row, its contact links and its
outbox row (the webhook event), as one ``WITH … INSERT`` round trip.

The webhook body holds the record's id, so the id is known before the statement runs:
each API process takes ids from the table's own sequence in blocks
(:class:`IdBlocks`, one round trip per :data:`ID_BLOCK` creates). Ids stay
unique and increase within a process; across processes they interleave, as they would
with any sequence cache. A block left unused when a process stops is a gap, as a
rolled-back insert's id always was.

Foreign keys still hold: PostgreSQL checks them at the end of the statement, when the
record row exists. Contacts that are not the team's are skipped by the ``SELECT`` (the
same rule as :meth:`RecordService.link_contacts`); the statement returns the ones linked.
The record is new, so none of its links can exist yet, and the ``SELECT`` gives each
contact once: the links are a plain ``INSERT``, without the ``ON CONFLICT`` arbiter a
re-link on update needs.

A write may carry a :class:`Guard`, a ``SELECT`` the record row is made from: the deal
create's fast path puts its remembered caller's lookup there, so the statement writes
nothing (:class:`GuardFailed`) once that caller is no longer what the database says.

SQLite (embedded mode) keeps the ORM path: it has no data-modifying ``WITH``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, TextClause, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from service_kit.held_connections import HeldConnections, HeldStatement

ID_BLOCK = 64


RunOne = Callable[[TextClause, dict[str, Any]], Awaitable[Sequence[Any] | None]]
"""Runs one statement and returns its first row (None if it gave none): in a request's session
(:func:`in_session`), or on the API's held connections (:func:`on_held`, the deal
create's fast path)."""


def in_session(session: AsyncSession) -> RunOne:
    async def run(statement: TextClause, params: dict[str, Any]) -> Sequence[Any] | None:
        return (await session.execute(statement, params)).first()

    return run


def on_held(held: HeldConnections) -> RunOne:
    async def run(statement: TextClause, params: dict[str, Any]) -> Sequence[Any] | None:
        compiled = HeldStatement.of(statement)
        return await held.fetchrow(compiled.sql, *compiled.args(params))

    return run


_TAKE_IDS = text(
    "SELECT ARRAY(SELECT nextval(pg_get_serial_sequence(:table, 'id'))"
    " FROM generate_series(1, :count))"
)


class IdBlocks:
    """Record ids taken from a table's sequence ahead of the inserts that use them."""

    def __init__(self) -> None:
        self._free: dict[str, deque[int]] = {}
        self._lock = asyncio.Lock()

    async def next_id(self, run: RunOne, table: str) -> int:
        free = self._free.setdefault(table, deque())
        if not free:
            async with self._lock:
                if not free:
                    row = await run(_TAKE_IDS, {"table": table, "count": ID_BLOCK})
                    assert row is not None, "the statement returns one row"
                    (ids,) = row
                    free.extend(sorted(ids))
        return free.popleft()


# One set of blocks per engine (a test process runs many databases, each with its own).
_BLOCKS: weakref.WeakKeyDictionary[Engine, IdBlocks] = weakref.WeakKeyDictionary()


def id_blocks(engine: Engine) -> IdBlocks:
    blocks = _BLOCKS.get(engine)
    if blocks is None:
        blocks = _BLOCKS[engine] = IdBlocks()
    return blocks


@dataclass(frozen=True)
class OutboxValues:
    webhook_id: str
    kind: str
    body: str | None


@dataclass(frozen=True)
class Written:
    contact_ids: list[int]
    outbox: list[tuple[int, str]]  # (outbox row id, kind), in the order given


@dataclass(frozen=True)
class Guard:
    """A ``SELECT`` (SQL with ``:name`` parameters, and their values) the write is made
    from: one row, the write happens; no row, the statement writes nothing at all."""

    sql: str
    params: Mapping[str, Any]


class GuardFailed(Exception):
    """The write's guard gave no row: nothing was written."""


_OUTBOX_COLUMNS = (
    "webhook_id, team_id, kind, event_type, record_kind, record_id, room_id, body,"
    " status, attempt_count, next_attempt_at, created_at"
)
_statements: dict[tuple[str, tuple[str, ...], str, str, bool, int, str | None], TextClause] = {}


def _statement(
    table: Table,
    columns: tuple[str, ...],
    link_table: str,
    link_column: str,
    links: bool,
    rows: int,
    guard: str | None,
) -> TextClause:
    """The write: the record row from its ``VALUES``, or with a ``guard`` made ``FROM``
    it (inserted once per guard row: one or none); the links and each outbox row are
    then made ``FROM`` the record row inserted, so a guard that gives no row writes
    nothing at all. Every value is a bound parameter, typed by the column it goes into.
    Its one row is the contact ids linked, then each outbox row's id; a guard that
    gave no row makes it return none."""
    key = (table.name, columns, link_table, link_column, links, rows, guard)
    statement = _statements.get(key)
    if statement is not None:
        return statement
    # Every name below is a table or column of our own metadata (the guard, a statement
    # of our own), never request input; the values are all bound parameters.
    placeholders = ", ".join(":" + column for column in columns)
    source = (
        f"VALUES ({placeholders})" if guard is None else f"SELECT {placeholders} FROM guard"  # noqa: S608
    )
    parts = [] if guard is None else [f"guard AS ({guard})"]
    parts.append(
        f"record AS (INSERT INTO {table.name} ({', '.join(columns)}) {source} RETURNING id)"
    )
    if links:
        parts.append(
            f"links AS (INSERT INTO {link_table} ({link_column}, contact_id)"  # noqa: S608
            " SELECT record.id, contacts.id FROM record JOIN contacts"
            " ON contacts.team_id = :team_id AND contacts.id = ANY(:contact_ids)"
            " RETURNING contact_id)"
        )
    for n in range(rows):
        parts.append(
            f"outbox_{n} AS (INSERT INTO outbox_events ({_OUTBOX_COLUMNS})"  # noqa: S608
            f" SELECT :outbox_webhook_id_{n}, :team_id, :outbox_kind_{n}, :event_type,"
            f" :record_kind, record.id, :channel_integration_room_id, :outbox_body_{n},"
            " 'pending', 0, :created_at, :created_at FROM record RETURNING id)"
        )
    linked = "ARRAY(SELECT contact_id FROM links)" if links else "ARRAY[]::integer[]"
    outbox_ids = "".join(f", outbox_{n}.id" for n in range(rows))
    sources = "".join(f", outbox_{n}" for n in range(rows))
    statement = _statements[key] = text(
        f"WITH {', '.join(parts)} SELECT {linked}{outbox_ids} FROM record{sources}"  # noqa: S608
    )
    return statement


@dataclass(frozen=True)
class _Layout:
    """What a create needs of a table's columns, read once per table (walking
    ``table.columns`` and their defaults on every create was a measurable share of it)."""

    attributes: tuple[tuple[str, str], ...]  # (mapped attribute key, column name), in order
    defaults: tuple[tuple[str, Any, bool], ...]  # (column, default's arg, whether to call it)


_layouts: dict[Table, _Layout] = {}


def _layout(table: Table) -> _Layout:
    layout = _layouts.get(table)
    if layout is None:
        defaults = []
        for column in table.columns:
            default = column.default
            if getattr(default, "is_scalar", False):
                defaults.append((column.name, default.arg, False))  # type: ignore[union-attr]
            elif getattr(default, "is_callable", False):
                defaults.append((column.name, default.arg, True))  # type: ignore[union-attr]
        layout = _layouts[table] = _Layout(
            attributes=tuple((column.key, column.name) for column in table.columns),
            defaults=tuple(defaults),
        )
    return layout


def with_defaults(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` plus the Python-side scalar or callable default of every other column
    that has one (what the ORM would have filled in)."""
    complete = dict(values)
    for name, arg, call in _layout(table).defaults:
        if name not in complete:
            complete[name] = arg(None) if call else arg
    return complete


def as_written(model: type[Any], row: Mapping[str, Any]) -> Any:
    """The ``model`` instance of ``row`` (every column's value, as :func:`with_defaults`
    gives them), as if loaded from the database: every column set, nothing pending.
    The ORM's constructor (an instrumented ``__set__`` and a change event per column)
    was the largest single Python cost of a create, and the record is never added to a
    session, so it needs none of that."""
    record = model._sa_class_manager.new_instance()
    record.__dict__.update(
        {key: row.get(name) for key, name in _layout(model.__table__).attributes}
    )
    return record


async def write_record(
    run: RunOne,
    *,
    table: Table,
    values: Mapping[str, Any],
    link_table: str,
    link_column: str,
    contact_ids: Sequence[int],
    event_type: str,
    record_kind: str,
    outbox: Sequence[OutboxValues],
    guard: Guard | None = None,
) -> Written:
    """Insert the record row (``values`` as :func:`with_defaults` gives them, its ``id``
    included), link ``contact_ids`` and write the ``outbox`` rows, in one statement; with
    a ``guard``, only if it gives a row (:class:`GuardFailed` if not, nothing written)."""
    columns = tuple(name for _, name in _layout(table).attributes if name in values)
    params: dict[str, Any] = {name: values[name] for name in columns}
    params.update(contact_ids=list(contact_ids), event_type=event_type, record_kind=record_kind)
    for n, row in enumerate(outbox):
        params[f"outbox_webhook_id_{n}"] = row.webhook_id
        params[f"outbox_kind_{n}"] = row.kind
        params[f"outbox_body_{n}"] = row.body
    if guard is not None:
        clash = params.keys() & guard.params.keys()
        assert not clash, f"the guard's parameters {clash} would shadow the write's"
        params.update(guard.params)
    statement = _statement(
        table,
        columns,
        link_table,
        link_column,
        bool(contact_ids),
        len(outbox),
        None if guard is None else guard.sql,
    )
    answer = await run(statement, params)
    if answer is None:
        raise GuardFailed
    linked, *outbox_ids = answer
    return Written(
        contact_ids=list(linked),
        outbox=[(outbox_id, row.kind) for outbox_id, row in zip(outbox_ids, outbox, strict=True)],
    )
