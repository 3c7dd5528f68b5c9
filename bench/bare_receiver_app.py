"""The baseline of the Omni receiver benchmark: the least a ``POST /webhooks/crm`` can do.

A FastAPI app with a raw asyncpg pool of 10. Each request verifies the Standard Webhooks
signature with the project's own helper (``shared_contracts.signatures.verify``) against
one secret, then runs ONE statement: an ``INSERT ... ON CONFLICT DO UPDATE`` of the
event's display state into Omni's own preview table (``deal_previews`` or
``ticket_previews``, the rows the real receiver writes), newer versions only. It answers
200 ``{"status": "applied"}`` as the real receiver does (``"ignored"`` for a stale
version), 401 on a bad signature. No organization lookup, no de-duplication by webhook
id, no room lock, no ordering between records of a room, no validation beyond ``json``.

    BENCH_DATABASE_DSN=postgresql://postgres@127.0.0.1:5432/omni_bench \\
    BENCH_WEBHOOK_SECRET=whsec_... BENCH_ORGANIZATION_ID=1 \\
    .venv/bin/python -m uvicorn bench.bare_receiver_app:app --port 8102

``BENCH_ORGANIZATION_ID`` must name an existing row of ``organizations`` (the foreign
key holds). Every record is written ``active``, so send at most one deal and one ticket
record per room (the partial unique index allows one active row per room and kind), as
``bench/omni_wrk.py``'s receiver events do (a create racing an update of the same record
is retried once).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, Response, status

from shared_contracts.signatures import SignatureError, verify

POOL_SIZE = 10  # the Omni engine's pool_size, so both sides hold as many connections

_COMMON = (
    "organization_id, room_id, record_id, state, version, crm_created_at, name, status,"
    " creator_flag, creator_name, external_url, crm_updated_at, changed_at"
)
_COMMON_UPDATE = (
    "version = EXCLUDED.version, name = EXCLUDED.name, status = EXCLUDED.status,"
    " creator_flag = EXCLUDED.creator_flag, creator_name = EXCLUDED.creator_name,"
    " external_url = EXCLUDED.external_url, crm_updated_at = EXCLUDED.crm_updated_at,"
    " changed_at = EXCLUDED.changed_at"
)

UPSERT_DEAL = f"""
INSERT INTO deal_previews ({_COMMON}, slug, stage_id, stage_name, pipeline_id, pipeline_name, size)
VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (organization_id, record_id) DO UPDATE SET {_COMMON_UPDATE},
    slug = EXCLUDED.slug, stage_id = EXCLUDED.stage_id, stage_name = EXCLUDED.stage_name,
    pipeline_id = EXCLUDED.pipeline_id, pipeline_name = EXCLUDED.pipeline_name,
    size = EXCLUDED.size
WHERE deal_previews.version < EXCLUDED.version
RETURNING id
"""

UPSERT_TICKET = f"""
INSERT INTO ticket_previews ({_COMMON}, unique_ticket_id, description, priority)
VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (organization_id, record_id) DO UPDATE SET {_COMMON_UPDATE},
    unique_ticket_id = EXCLUDED.unique_ticket_id, description = EXCLUDED.description,
    priority = EXCLUDED.priority
WHERE ticket_previews.version < EXCLUDED.version
RETURNING id
"""


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _common(organization_id: int, data: dict[str, Any]) -> list[Any]:
    return [
        organization_id,
        data["channel_integration_room_id"],
        data["id"],
        data["version"],
        _time(data["created_at"]),
        data["name"],
        data["status"],
        data.get("creator_flag"),
        data.get("creator_name"),
        data["external_url"],
        _time(data["updated_at"]),
        datetime.now(UTC),
    ]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.secret = os.environ["BENCH_WEBHOOK_SECRET"]
    app.state.organization_id = int(os.environ["BENCH_ORGANIZATION_ID"])
    pool = await asyncpg.create_pool(
        os.environ["BENCH_DATABASE_DSN"], min_size=POOL_SIZE, max_size=POOL_SIZE
    )
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(title="bare receiver baseline", lifespan=lifespan)


@app.post("/webhooks/crm")
async def receive(request: Request) -> Response:
    body = await request.body()
    try:
        verify(body, request.headers, request.app.state.secret)
    except SignatureError:
        return Response(b'{"detail":"invalid webhook signature"}', status.HTTP_401_UNAUTHORIZED)
    document = json.loads(body)
    data = document["data"]
    parameters = _common(request.app.state.organization_id, data)
    if document["type"].startswith("qontak.crm.deal."):
        size = data.get("size")
        statement = UPSERT_DEAL
        parameters += [
            data.get("slug"),
            data["stage"]["id"],
            data["stage"]["name"],
            data["pipeline"]["id"],
            data["pipeline"]["name"],
            None if size is None else Decimal(str(size)),
        ]
    else:
        statement = UPSERT_TICKET
        parameters += [data.get("unique_ticket_id"), data.get("description"), data.get("priority")]
    try:
        written = await request.app.state.pool.fetchval(statement, *parameters)
    except asyncpg.UniqueViolationError:
        # A create and an update of one record racing: both rows are ``active`` in one
        # room, and the room's partial unique index (not the ON CONFLICT arbiter) fires
        # first. The second attempt finds the committed row and updates it.
        written = await request.app.state.pool.fetchval(statement, *parameters)
    outcome = "applied" if written is not None else "ignored"
    return Response(b'{"status":"' + outcome.encode() + b'"}', media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
