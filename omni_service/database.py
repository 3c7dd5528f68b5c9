"""The Omni database: its declarative base, the request's session, and the shared
plumbing its code imports.

One ``AsyncSession`` per request: the dependency commits once when the endpoint returns,
before the response is sent, and rolls back on any error. Services never commit, so a
2xx always means the change is durable and a failure leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

from service_kit.database import (
    NAMING_CONVENTION,
    UTCDateTime,
    create_engine,
    insert_ignoring_conflict,
    run_after_commit,
    run_after_rollback,
    session_factory,
    utcnow,
)

__all__ = [
    "Base",
    "SessionDep",
    "UTCDateTime",
    "create_engine",
    "get_session",
    "insert_ignoring_conflict",
    "session_factory",
    "unit_of_work",
    "utcnow",
]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block ends, then the after-commit callbacks; on
    any error roll back, then the after-rollback callbacks."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            await run_after_rollback(session)
            raise
        await run_after_commit(session)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: commit when the endpoint returns, roll back on error."""
    async with unit_of_work(request.app.state.session_factory) as session:
        yield session


# ``scope="function"`` runs the commit before the response is sent; FastAPI's default
# ("request") would send the 2xx first and commit afterwards.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
