"""The preview poll answered before FastAPI routes it, when both caches already hold it.

An inbox polls ``GET /api/v1/rooms/{room_id}/crm_preview`` every few seconds, and almost
every poll finds nothing changed. When the token is in the organization cache and the
room's answer is in the preview cache (``caching.PreviewCache``, with all its rules), the
answer is known before any routing, dependency solving or validation: this layer sends
it (the 304 or the 200, with exactly the headers of the route) and counts it in the
route's metrics. Anything else, including every error, falls through to the route, which
answers as it always did: a missing or malformed token (401), a room id too long (422),
a token or room the caches do not hold (read from the database, then cached).

It sits inside the request edge (request id, HTTP metrics, body limit, bad text), so a
fast answer carries a request id and is counted under the route's template.
"""

from __future__ import annotations

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from omni_service.inbox.auth import COOKIES
from omni_service.metrics import DEAL_PREVIEW_DISPLAYED
from omni_service.organizations.service import hash_token
from omni_service.previews import caching
from omni_service.previews.router import router as previews_router
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH
from service_kit.edge import route_with_path

PREFIX = "/api/v1/rooms/"
SUFFIX = "/crm_preview"
TEMPLATE = PREFIX + "{room_id}" + SUFFIX

_CACHE_CONTROL = caching.POLL_CACHE_CONTROL.encode()
_VARY = b"Authorization, Cookie"


class PreviewFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = route_with_path(previews_router.routes, TEMPLATE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        room_id = _polled_room(scope)
        if room_id is not None and await self._answer(scope, room_id, send):
            return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, room_id: str, send: Send) -> bool:
        authorization = cookie = if_none_match = None
        for name, value in scope["headers"]:
            # The first of a repeated header, as the route's ``Header()`` parameters read it.
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"cookie" and cookie is None:
                cookie = value.decode("latin-1")
            elif name == b"if-none-match" and if_none_match is None:
                if_none_match = value.decode("latin-1")
        # The rule of ``inbox.auth.reading_organization_id``: the header wins over the cookie.
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                return False
        else:
            token = (cookie_parser(cookie).get(COOKIES.session) if cookie else None) or ""
            if not token:
                return False
        organization_id = scope["app"].state.organization_cache.tokens.get(hash_token(token))
        if organization_id is None:
            return False
        preview = scope["app"].state.change_feed.cache.lookup((organization_id, room_id))
        if preview is None:
            return False
        scope["route"] = self.route  # what the metrics label a request by
        scope["path_params"] = {"room_id": room_id}
        if preview.has_deal:
            DEAL_PREVIEW_DISPLAYED.inc()
        headers = [
            (b"etag", preview.etag.encode()),
            (b"cache-control", _CACHE_CONTROL),
            (b"vary", _VARY),
        ]
        if caching.matches(if_none_match, preview.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return True
        headers.append((b"content-length", str(len(preview.body)).encode()))
        headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": preview.body})
        return True


def _polled_room(scope: Scope) -> str | None:
    """The room of a preview poll the route would take (its path parameter rules)."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    room_id = path[len(PREFIX) : -len(SUFFIX)]
    if not 0 < len(room_id) <= ROOM_ID_MAX_LENGTH or "/" in room_id:
        return None
    return room_id
