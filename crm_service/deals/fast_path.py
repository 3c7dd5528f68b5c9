"""``POST /api/v3.1/deals`` answered before FastAPI routes it, for the create a chatbot
sends: a valid deal body for the team's default pipeline, without an Idempotency-Key,
on PostgreSQL.

A create is the API's busiest write. Through the route it costs about ten times the CPU
of the benchmark's bare one-INSERT endpoint: FastAPI's routing, dependency solving and
body handling, and the SQLAlchemy session around two statements, are most of it. This
layer does the same work without them:

- the body is parsed as the route parses it (``json.loads``, then the ``DealCreate``
  model, with the same settings);
- the caller is read with the route's own lookup (``teams/auth.CALLER_COLUMNS_QUERY``,
  the same joins in plain columns) on the API's held asyncpg connections;
- the deal, its contact links and its outbox rows are written by the record service's
  own one statement (``RecordService.write_in_one_statement``), autocommitted like the
  route's keyless create, on the same connections;
- a token's caller is remembered (up to :data:`MAX_CALLERS` tokens), and the next create
  with that token is one round trip: its statement carries a guard
  (``teams/auth.caller_guard``: the token's row, and the team's row with its
  ``caller_version``, which the database bumps on any change to the team's flags,
  pipelines or stages) and writes only while the database still gives that same caller.
  If anything of it changed (the parity flag, the default pipeline or its first stage,
  their names, the company id, the token's identity or expiry, the token itself), the
  statement writes nothing, the caller is read again and the create made with what it
  now is: a change shows on the very next create, on every process, as when every
  create read it;
- the answer is the route's: the same ``DealRead`` as JSON, 201, the same headers, the
  outbox rows handed to the dispatcher once committed (``OutboxDispatcher.hand_over``,
  which returns at once), the created-record metric.

Anything else goes to the route with the body as it came, and the route answers it as
always: a missing, malformed, unknown or expired token (401), a body that is not a JSON
object or fails validation (422), a pipeline or stage named in the body, a team without
a default pipeline, an ``Idempotency-Key``, another content type, SQLite. An exception
propagates as it would from the route (a 500 from the error middleware).

It sits inside the request edge, so the create has a request id, the body limit and the
text guard, and is counted under the route's template.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_service.deals.router import router as deals_router
from crm_service.deals.schemas import DealCreate
from crm_service.deals.service import deal_service
from crm_service.events.dispatch import dispatcher_of
from crm_service.events.outbox import bot_record_in_room
from crm_service.metrics import count_record_created
from crm_service.records import one_statement
from crm_service.records.service import RecordContext
from crm_service.teams.auth import Caller, caller_guard, caller_on_held, digest
from crm_service.teams.features import BOT_AI_CREATION_PARITY, PrefetchedFlags
from service_kit.edge import route_with_path
from service_kit.held_connections import HeldConnections

PATH = "/api/v3.1/deals"
# Fields that choose a placement other than the default: the route resolves those.
PLACEMENT_FIELDS = ("crm_pipeline_id", "crm_stage_id", "crm_pipeline_name", "crm_stage_name")
# Tokens whose caller is remembered; beyond that the oldest is forgotten (a forgotten
# caller costs its next create one more round trip, nothing else).
MAX_CALLERS = 1024


class DealCreateFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = route_with_path(deals_router.routes, PATH)
        self.callers: dict[str, Caller] = {}  # by token digest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: HeldConnections | None = None
        if (
            scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            held = getattr(scope["app"].state, "held_connections", None)
        if held is None:
            await self.app(scope, receive, send)
            return
        messages = await _read_body(receive)
        response = await self._create(scope, held, b"".join(m.get("body", b"") for m in messages))
        if response is None:

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        scope["route"] = self.route  # what the metrics label a request by
        await response(scope, receive, send)

    async def _create(self, scope: Scope, held: HeldConnections, raw: bytes) -> Response | None:
        token = _fast_path_token(scope["headers"])
        if token is None:
            return None
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or any(
                document.get(field) is not None for field in PLACEMENT_FIELDS
            ):
                return None
            body = DealCreate.model_validate(document)
        except (ValueError, ValidationError):  # the route answers the 422
            return None
        token_hash = digest(token)
        remembered = self.callers.get(token_hash)
        if remembered is not None:
            guard = one_statement.Guard(*caller_guard(token_hash, remembered))
            try:
                return await self._write(scope, held, body, remembered, guard)
            except one_statement.GuardFailed:  # nothing written; read the caller again
                self.callers.pop(token_hash, None)
        caller = await caller_on_held(held, token_hash)
        if caller is None or caller.default_placement is None:
            return None
        if len(self.callers) >= MAX_CALLERS:
            del self.callers[next(iter(self.callers))]
        self.callers[token_hash] = caller
        return await self._write(scope, held, body, caller, None)

    async def _write(
        self,
        scope: Scope,
        held: HeldConnections,
        body: DealCreate,
        caller: Caller,
        guard: one_statement.Guard | None,
    ) -> Response:
        assert caller.default_placement is not None
        app = scope["app"]
        context = RecordContext(
            caller=caller,
            settings=app.state.settings,
            flag_cache=PrefetchedFlags(caller.team.id, caller.flags, app.state.flag_cache),
        )
        pipeline, stage = caller.default_placement
        values = deal_service.new_values(
            context, body, **deal_service.deal_fields(body, pipeline, stage)
        )

        async def emits(record: Any) -> bool:
            return bot_record_in_room(record) and caller.flags[BOT_AI_CREATION_PARITY]

        deal, contact_ids, outbox_rows = await deal_service.write_in_one_statement(
            one_statement.on_held(held),
            one_statement.id_blocks(app.state.engine.sync_engine),
            values,
            body,
            lambda deal: deal_service.event_data(context, deal, pipeline, stage),
            emits=emits,
            guard=guard,
        )
        if outbox_rows:  # committed: the statement autocommits, as the route's session does
            dispatcher_of(app).hand_over(outbox_rows)
        count_record_created(str(deal_service.kind), deal.creator_flag)
        read = deal_service.read(context, deal, pipeline, stage, contact_ids)
        return Response(read.model_dump_json(), status_code=201, media_type="application/json")


async def _read_body(receive: Receive) -> list[Message]:
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _fast_path_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of a JSON request without an Idempotency-Key; None when the
    request is anything else (the route then reads the headers itself)."""
    authorization = content_type = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value
        elif name == b"idempotency-key":
            return None
    if authorization is None or content_type is None:
        return None
    if content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
