"""``Annotated`` dependency aliases used by every router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.database import run_after_commit
from crm_service.events.dispatch import dispatcher_of, pending_outbox_ids
from crm_service.settings import Settings


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# a worker thread, a hand-off that costs more than the work on every request.
async def get_settings_from_app(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: commit once when the endpoint returns (before the
    response is sent), roll back on any error. Outbox rows written in it are handed to
    the app's dispatcher only after the commit, which returns at once (a slow or absent
    broker never delays or fails the caller; the outbox sweep catches up)."""
    async with request.app.state.session_factory() as session:
        if writes_in_one_statement(request) and session.get_bind().dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        await run_after_commit(session)
        outbox_ids = pending_outbox_ids(session)
        if outbox_ids:
            dispatcher_of(request.app).hand_over(outbox_ids)


ONE_STATEMENT = "writes_in_one_statement"


def writes_in_one_statement(request: Request) -> bool:
    """Whether the request's endpoint declared that it writes in a single statement (a
    record's create on PostgreSQL) and nothing asks for more: without an Idempotency-Key,
    whose stored response commits together with the record. Its session then runs in
    autocommit: each statement is atomic on its own, and the request saves the BEGIN and
    COMMIT round trips."""
    route = request.scope.get("route")
    endpoint = getattr(route, "endpoint", None)
    return getattr(endpoint, ONE_STATEMENT, False) and "idempotency-key" not in request.headers


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_from_app)]
