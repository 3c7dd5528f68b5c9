"""The CRM webhook receiver (DESIGN.md §4, §7).

Checks run cheapest and least revealing first: signature headers and timestamp (401)
before anything is looked up, then the body's company and the signature with that
organization's secrets (401 either way, with one body: an unauthenticated caller cannot
tell which company ids exist; the reason is logged), the event type (400) and its
payload (422). Only then is the webhook id claimed and the event applied, in one
transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from omni_service.database import insert_ignoring_conflict
from omni_service.errors import BadRequest, Unauthorized, Unprocessable
from omni_service.organizations import service as organizations_service
from omni_service.organizations.models import Organization
from omni_service.previews import service as previews_service
from omni_service.previews.changes import ChangeFeed
from omni_service.previews.service import RecordDelete, RecordState
from omni_service.receiver.models import WEBHOOK_ID_MAX_LENGTH, Outcome, ReceivedEvent
from omni_service.settings import Settings
from service_kit.request_guard import find_bad_text
from shared_contracts.events import EventEnvelope, EventType, split_event_type
from shared_contracts.signatures import SignatureError, verify

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
INVALID_SIGNATURE = "invalid webhook signature"

logger = logging.getLogger(__name__)


async def receive(
    session: AsyncSession,
    body: bytes,
    headers: Mapping[str, str],
    *,
    settings: Settings,
    now: datetime,
    changes: ChangeFeed | None = None,
) -> Outcome:
    webhook_id = _check_signature_headers(headers, now, settings.webhook_tolerance_seconds)
    document = _json_object(body)
    organization = await _organization_of(session, document)
    grace = timedelta(seconds=settings.secret_rotation_grace_seconds)
    _verify_signature(body, headers, organization.verifying_secrets(now, grace))
    event_type = _event_type(document)
    if len(webhook_id) > WEBHOOK_ID_MAX_LENGTH:
        raise BadRequest(f"webhook-id is longer than {WEBHOOK_ID_MAX_LENGTH} characters")
    data = _payload(document)

    # Claim the id first: a concurrent duplicate waits here on the unique index until this
    # transaction ends, then sees the id taken and applies nothing.
    received_id = await session.scalar(
        insert_ignoring_conflict(
            session,
            ReceivedEvent,
            {
                "organization_id": organization.id,
                "webhook_id": webhook_id,
                "event_type": event_type.value,
                "outcome": Outcome.APPLIED.value,
                "received_at": now,
            },
            ["organization_id", "webhook_id"],
        ).returning(ReceivedEvent.id)
    )
    if received_id is None:
        return _received(Outcome.DUPLICATE, webhook_id, event_type, data, organization)
    kind, _action = split_event_type(event_type)
    changed = await previews_service.apply_event(session, organization.id, kind, data, now=now)
    if changed:
        if changes is not None:
            await changes.announce(session, organization.id, data.channel_integration_room_id)
        return _received(Outcome.APPLIED, webhook_id, event_type, data, organization)
    await session.execute(
        update(ReceivedEvent)
        .where(ReceivedEvent.id == received_id)
        .values(outcome=Outcome.IGNORED.value)
    )
    return _received(Outcome.IGNORED, webhook_id, event_type, data, organization)


def _received(
    outcome: Outcome,
    webhook_id: str,
    event_type: EventType,
    data: RecordState | RecordDelete,
    organization: Organization,
) -> Outcome:
    """One line per accepted event, with the ids the CRM's delivery lines carry."""
    logger.info(
        "webhook received",
        extra={
            "webhook_id": webhook_id,
            "event_type": event_type.value,
            "record_id": data.id,
            "room_id": data.channel_integration_room_id,
            "organization_id": organization.id,
            "outcome": outcome.value,
        },
    )
    return outcome


def _check_signature_headers(
    headers: Mapping[str, str], now: datetime, tolerance_seconds: int
) -> str:
    """The webhook id, once the headers are present and the timestamp is fresh."""
    if any(not headers.get(name) for name in SIGNATURE_HEADERS):
        raise Unauthorized("missing webhook signature headers")
    try:
        timestamp = int(headers["webhook-timestamp"])
    except ValueError as error:
        raise Unauthorized("malformed webhook-timestamp") from error
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise Unauthorized("webhook-timestamp is too far from the current time")
    return headers["webhook-id"]


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("body is not JSON") from error
    if not isinstance(document, dict):
        raise BadRequest("body is not a JSON object")
    # Checked before the company is looked up, as malformed input: text the database
    # cannot store (a NUL, an unpaired surrogate) must not reach a query, signed or not.
    found = find_bad_text(document, [])
    if found is not None:
        location, reason = found
        raise BadRequest(f"{reason}, at {'.'.join(map(str, location)) or 'the top level'}")
    return document


async def _organization_of(session: AsyncSession, document: dict[str, Any]) -> Organization:
    data = document.get("data")
    company_id = data.get("company_id") if isinstance(data, dict) else None
    if not isinstance(company_id, str) or not company_id:
        raise BadRequest("data.company_id is missing")
    organization = await organizations_service.by_company_id(session, company_id)
    if organization is None:
        # Answered exactly like a bad signature, so company ids cannot be probed.
        logger.warning("webhook refused: unknown company %r", company_id)
        raise Unauthorized(INVALID_SIGNATURE)
    return organization


def _verify_signature(body: bytes, headers: Mapping[str, str], secrets: list[str]) -> None:
    """Any listed signature may match any secret still valid (rotation on either side)."""
    for secret in secrets:
        try:
            verify(body, headers, secret)
        except SignatureError:
            continue
        return
    raise Unauthorized(INVALID_SIGNATURE)


def _event_type(document: dict[str, Any]) -> EventType:
    raw = document.get("type")
    try:
        return EventType(raw if isinstance(raw, str) else "")
    except ValueError as error:
        raise BadRequest(f"unknown event type {raw!r}") from error


def _payload(document: dict[str, Any]) -> RecordState | RecordDelete:
    try:
        return EventEnvelope.model_validate(document).parsed_data()
    except ValidationError as error:
        raise Unprocessable(json.loads(error.json(include_url=False))) from error
