"""``POST /webhooks/crm``: the CRM's signed events."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from omni_service.database import utcnow
from omni_service.dependencies import SettingsDep
from omni_service.errors import DomainError, PayloadTooLarge
from omni_service.metrics import RECEIVED_EVENTS
from omni_service.receiver import service
from omni_service.receiver.schemas import Receipt
from omni_service.settings import Settings

WEBHOOK_PATH = "/webhooks/crm"
router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)


def rejected(request: Request, error: DomainError) -> DomainError:
    """Count and log a refused event with the reason the caller is given (the webhook id
    as sent, cut short: it is not authenticated yet); returns ``error`` to raise."""
    RECEIVED_EVENTS.labels(outcome="rejected").inc()
    log.warning(
        "webhook rejected",
        extra={
            "webhook_id": (request.headers.get("webhook-id") or "")[:80] or None,
            "status_code": error.status_code,
            "reason": error.detail,
        },
    )
    return error


async def limited_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw body (signatures cover the exact bytes), refused beyond the limit.

    The declared length is checked first; the streamed size too, since a chunked body
    declares none and a declared length can lie.
    """
    limit = settings.max_webhook_body_bytes
    too_large = PayloadTooLarge(f"body larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise rejected(request, too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise rejected(request, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    WEBHOOK_PATH,
    summary="Receive a signed CRM event",
    description="Verifies the Standard Webhooks signature and timestamp, de-duplicates by "
    "`webhook-id`, and applies the event to the room's preview (see the CRM's OpenAPI "
    "`webhooks` section for the six event types). The body is read raw: the signature "
    "covers its exact bytes.",
)
async def receive_crm_event(
    request: Request,
    body: Annotated[bytes, Depends(limited_body)],
    settings: SettingsDep,
) -> Receipt:
    return await receive_event(request, body, settings)


async def receive_event(request: Request, body: bytes, settings: Settings) -> Receipt:
    """Apply one signed event (what the route does with its body; the receiver's fast
    path, ``fast_path.py``, calls it too); a refused event raises its counted, logged
    :class:`DomainError`."""
    state = request.app.state
    try:
        outcome = await service.receive(
            state.receiver_database,
            body,
            request.headers,
            settings=settings,
            now=utcnow(),
            organizations=state.organization_cache,
            changes=state.change_feed,
        )
    except DomainError as error:
        raise rejected(request, error) from None
    RECEIVED_EVENTS.labels(outcome=outcome.value).inc()
    return Receipt(status=outcome)
