"""The four endpoints of a record kind, written once for deals and tickets.

No ``from __future__ import annotations`` here: FastAPI reads the body models from the
annotations at runtime, and they are the factory's arguments.
"""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import BaseModel

from crm_service.dependencies import SessionDep
from crm_service.idempotency.service import create_once
from crm_service.records.dependencies import RecordContextDep
from crm_service.records.schemas import RecordId


def record_router(
    service: Any,
    create_model: type[BaseModel],
    update_model: type[BaseModel],
    read_model: type[BaseModel],
) -> APIRouter:
    segment = service.url_segment
    router = APIRouter(prefix=f"/api/v3.1/{segment}", tags=[segment])

    @router.post("", status_code=status.HTTP_201_CREATED, response_model=read_model)
    async def create(
        body: create_model,  # type: ignore[valid-type]
        request: Request,
        session: SessionDep,
        context: RecordContextDep,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        return await create_once(
            request,
            session,
            team_id=context.caller.team.id,
            key=idempotency_key,
            ttl=timedelta(seconds=context.settings.idempotency_ttl_seconds),
            create=lambda: service.create(session, context, body),
        )

    @router.get("/{record_id}", response_model=read_model)
    async def fetch(record_id: RecordId, session: SessionDep, context: RecordContextDep) -> Any:
        return await service.fetch(session, context, record_id)

    @router.patch("/{record_id}", response_model=read_model)
    async def update(
        record_id: RecordId,
        body: update_model,  # type: ignore[valid-type]
        session: SessionDep,
        context: RecordContextDep,
    ) -> Any:
        return await service.update(session, context, record_id, body)

    @router.delete("/{record_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete(record_id: RecordId, session: SessionDep, context: RecordContextDep) -> None:
        await service.delete(session, context, record_id)

    return router
