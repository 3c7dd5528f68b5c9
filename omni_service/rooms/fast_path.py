"""The chat history the CRM reads for every timeline note, answered before FastAPI
routes it: ``GET /api/open/v1/messages/rooms/{room_id}`` with a cached token.

Every bot or AI record with a room gets a note, and every note reads its room's history
once. Through the route that read cost Omni about as much CPU as the CRM's event for the
same record: routing, dependency solving, a pooled SQLAlchemy session with two queries
and ORM loading, response validation. When the token is in the organization cache (the
route's ``current_organization_id`` reads it there too) and the query is one the route
would take, this layer reads the same page in one statement on the receiver's held
asyncpg connections (``service_kit.held_connections``) and answers with the route's
bytes: the same ``MessagePage``, rendered as FastAPI renders it, the same headers.

Anything else goes to the route, which answers as it always did: a missing or malformed
token (401), a token the cache does not hold (read, then cached), an offset or limit the
route refuses (422) or that is not a plain number, a repeated parameter, SQLite. An
exception propagates as it would from the route (a 500 from the error middleware).

It sits inside the request edge, so a fast answer has a request id and is counted under
the route's template.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from omni_service.organizations.service import hash_token
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH
from omni_service.rooms.router import router as rooms_router
from omni_service.rooms.schemas import MAX_PAGE_SIZE, MessageOut, MessagePage
from service_kit.edge import route_with_path
from service_kit.held_connections import HeldConnections

PREFIX = "/api/open/v1/messages/rooms/"
TEMPLATE = PREFIX + "{room_id}"
# Past this page the route answers (it skips the query for a page past the end, and a
# page this far out is no note's read anyway).
MAX_FAST_PAGE = 1_000_000
# The total and the page in one round trip: the count always comes back, the page's
# columns are null when the page is empty.
PAGE_SQL = (
    "SELECT total.n, page.id, page.room_id, page.sender, page.sender_type, page.text,"
    " page.created_at"
    " FROM (SELECT count(*) AS n FROM messages"
    " WHERE organization_id = $1 AND room_id = $2) AS total"
    " LEFT JOIN LATERAL (SELECT id, room_id, sender, sender_type, text, created_at"
    " FROM messages WHERE organization_id = $1 AND room_id = $2"
    " ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT $4) AS page ON true"
    " ORDER BY page.created_at DESC, page.id DESC"
)


class HistoryFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = route_with_path(rooms_router.routes, TEMPLATE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        room_id = _history_room(scope)
        if room_id is not None:
            response = await self._answer(scope, room_id)
            if response is not None:
                scope["route"] = self.route  # what the metrics label a request by
                scope["path_params"] = {"room_id": room_id}
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, room_id: str) -> Response | None:
        state = scope["app"].state
        held: HeldConnections | None = state.receiver_database.held
        paging = _paging(scope["query_string"])
        token = _bearer_token(scope["headers"])
        if held is None or paging is None or token is None:
            return None
        organization_id = state.organization_cache.tokens.get(hash_token(token))
        if organization_id is None:
            return None
        page, limit = paging
        page_size = min(limit, MAX_PAGE_SIZE)
        rows = await held.fetch(
            PAGE_SQL, organization_id, room_id, (page - 1) * page_size, page_size
        )
        items = [
            MessageOut(
                id=row["id"],
                room_id=row["room_id"],
                sender=row["sender"],
                sender_type=row["sender_type"],
                text=row["text"],
                created_at=row["created_at"],
            )
            for row in rows
            if row["id"] is not None
        ]
        answer = MessagePage(items=items, offset=page, limit=page_size, total=rows[0]["n"])
        return Response(_render(answer.model_dump(mode="json")), media_type="application/json")


def _render(content: Any) -> bytes:
    """What FastAPI's ``JSONResponse`` makes of the route's returned model."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _history_room(scope: Scope) -> str | None:
    """The room of a history read the route would take (its path parameter rules)."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    room_id = path[len(PREFIX) :]
    if not 0 < len(room_id) <= ROOM_ID_MAX_LENGTH or "/" in room_id:
        return None
    return room_id


def _paging(query_string: bytes) -> tuple[int, int] | None:
    """``(offset, limit)`` when each is absent (the route's defaults) or given once as a
    plain number within the route's bounds; None for anything the route should judge."""
    given: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in given:
            return None
        given[name] = value
    values = {"offset": given.get("offset", "1"), "limit": given.get("limit", str(MAX_PAGE_SIZE))}
    if not all(value.isascii() and value.isdigit() for value in values.values()):
        return None
    page, limit = int(values["offset"]), int(values["limit"])
    if not (1 <= page <= MAX_FAST_PAGE and 1 <= limit <= 2**31 - 1):
        return None
    return page, limit


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token as the route's ``Header()`` reads it (the first Authorization)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None
