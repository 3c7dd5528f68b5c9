"""Column types, engines and sessions: the database plumbing both services use.

Each service keeps its own declarative ``Base`` (its own ``MetaData`` with
:data:`NAMING_CONVENTION`), so the two schemas never mix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on PostgreSQL and SQLite alike (microseconds kept)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def libpq_dsn(url: str | URL) -> str | None:
    """The plain ``postgresql://`` DSN of a PostgreSQL SQLAlchemy URL (what asyncpg
    connects with, password included), None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(url: str, **overrides: Any) -> AsyncEngine:
    """An async engine for ``url``; ``overrides`` are passed to SQLAlchemy as they are.

    The defaults suit workers, CLIs and migrations: pre-ping every checkout, a pool of
    10 + 20 on servers. A caller on a hot path overrides them (the CRM API trades the
    pre-ping's round trips for ``pool_recycle``). SQLite files get their directory, a
    lock timeout and WAL with foreign keys on.
    """
    parsed = make_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options = {"connect_args": {"timeout": 30}}
    else:
        options.update(pool_size=10, max_overflow=20)
    options.update(overrides)
    engine = create_async_engine(url, **options)
    if parsed.get_backend_name() == "sqlite":
        _tune_sqlite(engine)
    return engine


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def insert_ignoring_conflict(
    session: AsyncSession,
    table: Any,
    values: Mapping[str, Any],
    conflict_columns: Sequence[str],
) -> Insert:
    """``INSERT ... ON CONFLICT (...) DO NOTHING`` in the session's dialect.

    The unique constraint, not a prior SELECT, decides who wins a race; the loser sees no
    returned row instead of an error that would abort its whole transaction.
    """
    statement = (
        postgresql.insert(table)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(table)
    )
    return statement.values(**values).on_conflict_do_nothing(index_elements=list(conflict_columns))


AfterCommit = Callable[[], Awaitable[None]]


def on_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once the request's transaction has committed (cache updates etc.)."""
    session.info.setdefault("after_commit", []).append(callback)


def on_rollback(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` if the request's transaction is rolled back instead."""
    session.info.setdefault("after_rollback", []).append(callback)


async def run_after_rollback(session: AsyncSession) -> None:
    """Run the callbacks :func:`on_rollback` registered (the owner calls this after its
    rollback); the commit callbacks are dropped."""
    session.info.pop("after_commit", None)
    callbacks: list[AfterCommit] = session.info.pop("after_rollback", [])
    for callback in callbacks:
        await callback()


async def run_after_commit(session: AsyncSession) -> None:
    """Run the callbacks :func:`on_commit` registered; the session's owner calls this
    after its commit, so a rolled-back transaction runs none of them."""
    session.info.pop("after_rollback", None)
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        await callback()
