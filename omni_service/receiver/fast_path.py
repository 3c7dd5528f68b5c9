"""``POST /webhooks/crm`` answered before FastAPI routes it.

The receiver is Omni's busiest write: one per CRM event. Its route has one dependency
(the raw body, within the limit) and one answer model, and FastAPI's routing, dependency
solving and response validation around them cost about as much CPU as the event's own
work (signature check, one database call). This layer runs the same functions as the
route (``router.limited_body`` and ``router.receive_event``) and answers as the route
does: the same JSON receipt, the same error bodies, statuses and headers
(``service_kit.errors.error_response``), the same logs and metrics. Any other exception
propagates exactly as it would from the route (a 500 from the error middleware).

It sits inside the request edge, so the event has a request id and is counted under the
route's template.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from omni_service.errors import DomainError
from omni_service.receiver.router import WEBHOOK_PATH, limited_body, receive_event
from omni_service.receiver.router import router as receiver_router
from service_kit.edge import route_with_path
from service_kit.errors import error_response


class ReceiverFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = route_with_path(receiver_router.routes, WEBHOOK_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != WEBHOOK_PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # what the metrics label a request by
        request = Request(scope, receive)
        settings = scope["app"].state.settings
        response: Response
        try:
            body = await limited_body(request, settings)
            receipt = await receive_event(request, body, settings)
        except DomainError as error:
            response = error_response(error)
        else:
            response = Response(receipt.model_dump_json().encode(), media_type="application/json")
        await response(scope, receive, send)
