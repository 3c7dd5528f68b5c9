"""The CRM webhook receiver (DESIGN.md §4, §7).

Checks run cheapest and least revealing first: signature headers and timestamp (401)
before anything is looked up, then the body's company and the signature with that
organization's secrets (401 either way, with one body: an unauthenticated caller cannot
tell which company ids exist; the reason is logged), the event type (400) and its
payload (422). Only then is the webhook id claimed and the event applied, in one
transaction.

The organization comes from the process's cache (``organizations/cache.py``); a
signature the cached secrets refuse is checked again against a fresh read, so a rotated
secret is honoured at once. On PostgreSQL the transaction is one autocommitted call of
``omni_receive_event`` (migration 0002): claim, room lock, apply and notification in one
round trip, on one of the receiver's held connections (``connections.py``). On SQLite
the same steps run in Python in one session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from omni_service.database import insert_ignoring_conflict, unit_of_work
from omni_service.errors import BadRequest, Unauthorized, Unprocessable
from omni_service.organizations import service as organizations_service
from omni_service.organizations.cache import OrganizationCache, SigningIdentity
from omni_service.previews import service as previews_service
from omni_service.previews.changes import CHANNEL, ChangeFeed
from omni_service.previews.service import RecordDelete, RecordState
from omni_service.receiver.models import WEBHOOK_ID_MAX_LENGTH, Outcome, ReceivedEvent
from omni_service.settings import Settings
from service_kit.database import libpq_dsn
from service_kit.held_connections import HeldConnections
from service_kit.request_guard import find_bad_text
from shared_contracts.events import EventEnvelope, EventType, RecordKind, split_event_type
from shared_contracts.signatures import SignatureError, verify

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
INVALID_SIGNATURE = "invalid webhook signature"

logger = logging.getLogger(__name__)

# Positional parameters, in this order: organization, webhook id, event type, record
# kind, record (JSON text), deleted, now, notification channel.
RECEIVE_IN_DATABASE = "SELECT omni_receive_event($1, $2, $3, $4, $5::jsonb, $6, $7, $8)"


@dataclass(frozen=True)
class ReceiverDatabase:
    """Where events are written: the session factory (SQLite path, organization reads)
    and, on PostgreSQL, the receiver's held connections (one call per event)."""

    sessions: async_sessionmaker[AsyncSession]
    held: HeldConnections | None

    @classmethod
    def of(
        cls, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
    ) -> ReceiverDatabase:
        dsn = libpq_dsn(engine.url)
        return cls(sessions, None if dsn is None else HeldConnections(dsn))

    async def close(self) -> None:
        if self.held is not None:
            await self.held.close()


async def receive(
    database: ReceiverDatabase,
    body: bytes,
    headers: Mapping[str, str],
    *,
    settings: Settings,
    now: datetime,
    organizations: OrganizationCache,
    changes: ChangeFeed,
) -> Outcome:
    webhook_id = _check_signature_headers(headers, now, settings.webhook_tolerance_seconds)
    document = _json_object(body)
    organization = await _verified_organization(
        database,
        organizations,
        _company_id(document),
        body,
        headers,
        now=now,
        grace=timedelta(seconds=settings.secret_rotation_grace_seconds),
    )
    event_type = _event_type(document)
    if len(webhook_id) > WEBHOOK_ID_MAX_LENGTH:
        raise BadRequest(f"webhook-id is longer than {WEBHOOK_ID_MAX_LENGTH} characters")
    data = _payload(document)
    kind, _action = split_event_type(event_type)
    if database.held is not None:
        outcome = await _receive_in_database(
            database.held, changes, organization.id, webhook_id, event_type, kind, data, now
        )
    else:
        async with unit_of_work(database.sessions) as session:
            outcome = await _receive_in_session(
                session, changes, organization.id, webhook_id, event_type, kind, data, now
            )
    return _received(outcome, webhook_id, event_type, data, organization.id)


async def _receive_in_database(
    held: HeldConnections,
    changes: ChangeFeed,
    organization_id: int,
    webhook_id: str,
    event_type: EventType,
    kind: RecordKind,
    data: RecordState | RecordDelete,
    now: datetime,
) -> Outcome:
    # The room is pending in this process's preview cache until the call has committed.
    key = (organization_id, data.channel_integration_room_id)
    changes.cache.begin_change(key)
    try:
        outcome = await held.fetchval(
            RECEIVE_IN_DATABASE,
            organization_id,
            webhook_id,
            event_type.value,
            kind.value,
            data.model_dump_json(),
            previews_service.is_delete(data),
            now,
            CHANNEL,
        )
    finally:
        changes.cache.end_change(key)
    # The function always answers one of the three outcomes; None would be a bug there.
    return Outcome(str(outcome))


async def _receive_in_session(
    session: AsyncSession,
    changes: ChangeFeed,
    organization_id: int,
    webhook_id: str,
    event_type: EventType,
    kind: RecordKind,
    data: RecordState | RecordDelete,
    now: datetime,
) -> Outcome:
    # Claim the id first: a concurrent duplicate waits here on the unique index until this
    # transaction ends, then sees the id taken and applies nothing.
    received_id = await session.scalar(
        insert_ignoring_conflict(
            session,
            ReceivedEvent,
            {
                "organization_id": organization_id,
                "webhook_id": webhook_id,
                "event_type": event_type.value,
                "outcome": Outcome.APPLIED.value,
                "received_at": now,
            },
            ["organization_id", "webhook_id"],
        ).returning(ReceivedEvent.id)
    )
    if received_id is None:
        return Outcome.DUPLICATE
    changed = await previews_service.apply_event(session, organization_id, kind, data, now=now)
    if changed:
        await changes.announce(session, organization_id, data.channel_integration_room_id)
        return Outcome.APPLIED
    await session.execute(
        update(ReceivedEvent)
        .where(ReceivedEvent.id == received_id)
        .values(outcome=Outcome.IGNORED.value)
    )
    return Outcome.IGNORED


def _received(
    outcome: Outcome,
    webhook_id: str,
    event_type: EventType,
    data: RecordState | RecordDelete,
    organization_id: int,
) -> Outcome:
    """One line per accepted event, with the ids the CRM's delivery lines carry."""
    logger.info(
        "webhook received",
        extra={
            "webhook_id": webhook_id,
            "event_type": event_type.value,
            "record_id": data.id,
            "room_id": data.channel_integration_room_id,
            "organization_id": organization_id,
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


def _company_id(document: dict[str, Any]) -> str:
    data = document.get("data")
    company_id = data.get("company_id") if isinstance(data, dict) else None
    if not isinstance(company_id, str) or not company_id:
        raise BadRequest("data.company_id is missing")
    return company_id


async def _verified_organization(
    database: ReceiverDatabase,
    organizations: OrganizationCache,
    company_id: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime,
    grace: timedelta,
) -> SigningIdentity:
    """The company's organization once one of its secrets verifies the signature.

    Cached secrets first; if they refuse (or nothing is cached), a fresh read decides,
    so a secret rotated on another process is never refused for being cached."""
    cached = organizations.companies.get(company_id)
    if cached is not None and _verifies(body, headers, cached.verifying_secrets(now, grace)):
        return cached
    async with database.sessions() as session:
        organization = await organizations_service.by_company_id(session, company_id)
    if organization is None:
        # Answered exactly like a bad signature, so company ids cannot be probed.
        logger.warning("webhook refused: unknown company %r", company_id)
        raise Unauthorized(INVALID_SIGNATURE)
    identity = SigningIdentity.of(organization)
    organizations.companies.put(company_id, identity)
    if not _verifies(body, headers, identity.verifying_secrets(now, grace)):
        raise Unauthorized(INVALID_SIGNATURE)
    return identity


def _verifies(body: bytes, headers: Mapping[str, str], secrets: list[str]) -> bool:
    """Any listed signature may match any secret still valid (rotation on either side)."""
    for secret in secrets:
        try:
            verify(body, headers, secret)
        except SignatureError:
            continue
        return True
    return False


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
