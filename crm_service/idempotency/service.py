"""``Idempotency-Key`` for creates.

The key row is claimed in a short transaction of its own, before the work: the unique
(team, key) constraint makes exactly one of several concurrent duplicates the owner;
the others see the claim and answer 409 (still in flight) or, once the owner finished,
the owner's stored status and body. The owner writes its response into the claim inside
the request's own transaction, so the record and the stored response commit together.
A claim whose owner died (crash, failed commit) is taken over after ``STALE_CLAIM``.

A claim is a lease identified by its ``created_at``: completing or releasing it only
touches the row while it still carries that value, so an owner that was presumed dead
and taken over cannot overwrite or free the new owner's claim (its work rolls back).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.database import utcnow
from crm_service.errors import Conflict, Unprocessable
from crm_service.idempotency.models import IdempotencyKey

STALE_CLAIM = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str


@dataclass(frozen=True)
class Claim:
    """This request owns the key; ``claimed_at`` identifies its lease."""

    claimed_at: datetime


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise Unprocessable(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


class IdempotencyService:
    async def claim(
        self,
        factory: async_sessionmaker[AsyncSession],
        *,
        team_id: int,
        key: str,
        fingerprint: str,
        ttl: timedelta,
    ) -> Claim | StoredResponse:
        """A :class:`Claim` when this request now owns the key; the stored response of the
        request that owns it otherwise."""
        for _ in range(3):
            async with factory() as session:
                claimed_at = utcnow()
                session.add(
                    IdempotencyKey(
                        team_id=team_id, key=key, fingerprint=fingerprint, created_at=claimed_at
                    )
                )
                try:
                    await session.commit()
                    return Claim(claimed_at)
                except IntegrityError:
                    await session.rollback()
                existing = await session.scalar(
                    select(IdempotencyKey).where(
                        IdempotencyKey.team_id == team_id, IdempotencyKey.key == key
                    )
                )
                if existing is None:
                    continue  # released between our insert and our read: try again
                now = utcnow()
                expired = existing.created_at < now - ttl
                abandoned = existing.status_code is None and existing.created_at < now - STALE_CLAIM
                if expired or abandoned:
                    taken = await self._take_over(session, existing, fingerprint)
                    if taken is not None:
                        return taken
                    continue
                if existing.fingerprint != fingerprint:
                    raise Unprocessable(
                        "Idempotency-Key was already used with a different request body"
                    )
                if existing.status_code is None or existing.response_body is None:
                    raise Conflict(
                        "a request with this Idempotency-Key is still in progress; retry later"
                    )
                return StoredResponse(existing.status_code, existing.response_body)
        raise Conflict("Idempotency-Key is contended; retry later")

    async def _take_over(
        self, session: AsyncSession, existing: IdempotencyKey, new_fingerprint: str
    ) -> Claim | None:
        claimed_at = utcnow()
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.id == existing.id,
                IdempotencyKey.created_at == existing.created_at,
            )
            .values(
                fingerprint=new_fingerprint,
                created_at=claimed_at,
                status_code=None,
                response_body=None,
            )
        )
        await session.commit()
        return Claim(claimed_at) if result.rowcount else None  # type: ignore[attr-defined]

    async def complete(
        self,
        session: AsyncSession,
        *,
        team_id: int,
        key: str,
        claim: Claim,
        response: StoredResponse,
    ) -> None:
        """Store the response in the request's own transaction (commits with the record).
        If the claim was taken over meanwhile, the work must not commit: 409."""
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.team_id == team_id,
                IdempotencyKey.key == key,
                IdempotencyKey.created_at == claim.claimed_at,
            )
            .values(status_code=response.status_code, response_body=response.body)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise Conflict("this request's Idempotency-Key claim was taken over; retry later")

    async def release(
        self, factory: async_sessionmaker[AsyncSession], *, team_id: int, key: str, claim: Claim
    ) -> None:
        """The request failed before storing a response: free the key for a corrected retry."""
        async with factory() as session:
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.team_id == team_id,
                    IdempotencyKey.key == key,
                    IdempotencyKey.created_at == claim.claimed_at,
                    IdempotencyKey.status_code.is_(None),
                )
            )
            await session.commit()


idempotency_service = IdempotencyService()


async def create_once(
    request: Request,
    session: AsyncSession,
    *,
    team_id: int,
    key: str | None,
    ttl: timedelta,
    create: Callable[[], Awaitable[BaseModel]],
) -> Response:
    """Run ``create`` at most once per ``Idempotency-Key``; answer 201 with the record, or
    the stored response of the first request with the same key."""
    if key is None:
        return _json_response(201, (await create()).model_dump_json())
    key = validate_key(key)
    factory = request.app.state.session_factory
    request_print = fingerprint(request.method, request.url.path, await request.json())
    claim = await idempotency_service.claim(
        factory, team_id=team_id, key=key, fingerprint=request_print, ttl=ttl
    )
    if isinstance(claim, StoredResponse):
        response = _json_response(claim.status_code, claim.body)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        body = (await create()).model_dump_json()
        await idempotency_service.complete(
            session, team_id=team_id, key=key, claim=claim, response=StoredResponse(201, body)
        )
    except BaseException:
        await session.rollback()
        await idempotency_service.release(factory, team_id=team_id, key=key, claim=claim)
        raise
    return _json_response(201, body)


def _json_response(status_code: int, body: str) -> Response:
    return Response(content=body, status_code=status_code, media_type="application/json")
