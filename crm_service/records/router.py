"""The four endpoints of a record kind, written once for deals and tickets.

No ``from __future__ import annotations`` here: FastAPI reads the body models from the
annotations at runtime, and they are the factory's arguments.
"""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import BaseModel

from crm_service.dependencies import ONE_STATEMENT, SessionDep
from crm_service.idempotency.service import create_once
from crm_service.records.dependencies import RecordContextDep
from crm_service.records.schemas import RecordId


def record_router(
    service: Any,
    create_model: type[BaseModel],
    update_model: type[BaseModel],
    read_model: type[BaseModel],
    *,
    create_details: str,
) -> APIRouter:
    """``create_details``: what a create of this kind does beyond the shared rules, for
    its OpenAPI description."""
    segment = service.url_segment
    kind = str(service.kind)
    title = kind.capitalize()
    router = APIRouter(prefix=f"/api/v3.1/{segment}", tags=[segment])
    # Whether a change reaches Omni: the rule of ``outbox.parity_applies``.
    emits = (
        f"for a {kind} with a `creator_flag` and a `channel_integration_room_id`, in a team "
        "with `bot_ai_creation_parity` on"
    )
    emits_first = emits[0].upper() + emits[1:]

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        response_model=read_model,
        summary=f"Create {title}",
        description=(
            f"Create a {kind} in the caller's team and answer 201 with it. {create_details}\n\n"
            "`crm_lead_ids` and `contact_id` are linked together; ids that are not this "
            f"team's contacts are skipped (and logged), the {kind} is still created. "
            "`creator_flag` is `bot` or `agentic_ai` in any case; anything else is stored as "
            "null. It and `channel_integration_room_id` are set here once and for all. "
            f"Unknown body fields are ignored.\n\n{emits_first}, the create emits "
            f"`qontak.crm.{kind}.create` to Omni and queues a chat-history note for the "
            f"{kind}'s timeline.\n\n"
            "With an `Idempotency-Key` header the create runs at most once per key and team "
            "(for `CRM_IDEMPOTENCY_TTL_SECONDS`, a day by default): a retry gets the first "
            "response again, marked `Idempotent-Replayed: true`; the same key with another "
            "body is 422; a retry while the first request is still running is 409."
        ),
    )
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

    # On PostgreSQL a create writes the record, its links and its outbox rows in one
    # statement (``records/one_statement.py``). A kind whose create writes nothing else
    # says so, and its session then autocommits (``dependencies.writes_in_one_statement``).
    setattr(create, ONE_STATEMENT, service.creates_in_one_statement)

    @router.get(
        "/{record_id}",
        response_model=read_model,
        summary=f"Fetch {title}",
        description=(
            f"The {kind} with its contacts (`crm_lead_ids`), creator and room. Another "
            f"team's {kind}, a deleted one or a missing one is 404."
        ),
    )
    async def fetch(record_id: RecordId, session: SessionDep, context: RecordContextDep) -> Any:
        return await service.fetch(session, context, record_id)

    @router.patch(
        "/{record_id}",
        response_model=read_model,
        summary=f"Update {title}",
        description=(
            f"Change the fields given and answer with the whole {kind}; fields left out keep "
            "their value. Contact ids given are linked in addition to the current ones. "
            "`channel_integration_room_id` and `creator_flag` cannot change (422), and a "
            "required field cannot be set to null (422).\n\n"
            "A change to a field Omni's preview shows bumps `version` and, "
            f"{emits}, emits `qontak.crm.{kind}.update`; other changes emit nothing. "
            f"Another team's {kind}, a deleted one or a missing one is 404."
        ),
    )
    async def update(
        record_id: RecordId,
        body: update_model,  # type: ignore[valid-type]
        session: SessionDep,
        context: RecordContextDep,
    ) -> Any:
        return await service.update(session, context, record_id, body)

    @router.delete(
        "/{record_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Delete {title}",
        description=(
            f"Soft-delete the {kind} and answer 204; from then on the API answers 404 for "
            "it. The delete bumps `version` so receivers order it after every "
            f"earlier event of the {kind}, and, {emits}, emits `qontak.crm.{kind}.delete`, "
            "so Omni's preview stops showing it. Deleting it again is 404."
        ),
    )
    async def delete(record_id: RecordId, session: SessionDep, context: RecordContextDep) -> None:
        await service.delete(session, context, record_id)

    return router
