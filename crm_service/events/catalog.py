"""The six event types in the CRM's OpenAPI 3.1 ``webhooks`` section (DESIGN.md §4).

Each entry documents what the CRM POSTs to ``{base_url}/webhooks/crm``: the envelope and
payload schema from :mod:`shared_contracts.catalog` and the Standard Webhooks headers.
The operations are documentation only; nothing here serves a request.
"""

# No ``from __future__ import annotations``: the endpoints' annotations name the model
# of their own event type, a local of the factory, and FastAPI reads them as objects.

from typing import Annotated

from fastapi import FastAPI, Header, Response
from pydantic import BaseModel

from shared_contracts.catalog import EVENT_MODELS
from shared_contracts.events import EventType

WEBHOOK_ID = "The event id (`msg_…`), the same on every retry: de-duplicate by it."
WEBHOOK_TIMESTAMP = "Unix seconds when this attempt was signed; reject if > 5 min off."
WEBHOOK_SIGNATURE = (
    '`v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, '
    "space-separated while a secret rotates (the previous one for 24 h)."
)
RESPONSES: dict[int | str, dict[str, str]] = {
    200: {"description": "Stored (2xx: delivered, no retry)."},
    401: {"description": "Bad signature or timestamp: the CRM retries on its schedule."},
    400: {"description": "Unknown type: the CRM gives up (4xx other than 408/429)."},
    503: {"description": "Any 5xx, 408, 429 or no answer: retried with backoff."},
}


def _endpoint(model: type[BaseModel]):  # type: ignore[no-untyped-def]
    def receive(
        body: model,  # type: ignore[valid-type]
        webhook_id: Annotated[str, Header(description=WEBHOOK_ID)],
        webhook_timestamp: Annotated[str, Header(description=WEBHOOK_TIMESTAMP)],
        webhook_signature: Annotated[str, Header(description=WEBHOOK_SIGNATURE)],
    ) -> Response:
        raise NotImplementedError  # documentation only: never routed

    return receive


def install_event_catalog(app: FastAPI) -> None:
    for event_type, model in EVENT_MODELS.items():
        app.webhooks.add_api_route(
            str(event_type),
            _endpoint(model),
            methods=["POST"],
            summary=_summary(event_type),
            description=(model.__doc__ or "")
            + "\n\nSent as `POST {base_url}/webhooks/crm` to the team's Omnichannel link.",
            operation_id=str(event_type).replace(".", "_"),
            responses=RESPONSES,
            tags=["events"],
        )


def _summary(event_type: EventType) -> str:
    _, _, kind, action = str(event_type).split(".")
    return f"{kind.capitalize()} {action}d"  # created, updated, deleted
