"""The baseline of ``bench/crm_create.py``: the least an HTTP endpoint can do to create a
deal. A FastAPI app with a raw asyncpg pool; each ``POST /deals`` inserts one row into the
CRM's own ``deals`` table (same columns, indexes and foreign keys) and returns it. No
auth, no tenant scoping, no contacts, no outbox: one statement per request.

    BENCH_DATABASE_DSN=postgresql://postgres@127.0.0.1:5432/crm \\
    BENCH_TEAM_ID=1 BENCH_PIPELINE_ID=1 BENCH_STAGE_ID=1 \\
    .venv/bin/python -m uvicorn bench.bare_insert_app:app --port 8100
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, status
from pydantic import BaseModel, Field

POOL_SIZE = 10  # the CRM engine's pool_size, so both sides hold as many connections

INSERT = """
INSERT INTO deals (
    team_id, slug, name, pipeline_id, stage_id, size, status, crm_source_id,
    channel_integration_room_id, creator_flag, created_by, version, created_at, updated_at
)
VALUES ($1, $2, $3, $4, $5, $6, 'open', NULL, $7, $8, 'bench', 1, $9, $9)
RETURNING id, slug, name, pipeline_id, stage_id, size, status, channel_integration_room_id,
          creator_flag, created_at, updated_at, version
"""


class DealIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    size: Decimal | None = None
    channel_integration_room_id: str | None = Field(default=None, max_length=255)
    creator_flag: str | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.ids = (
        int(os.environ["BENCH_TEAM_ID"]),
        int(os.environ["BENCH_PIPELINE_ID"]),
        int(os.environ["BENCH_STAGE_ID"]),
    )
    pool = await asyncpg.create_pool(
        os.environ["BENCH_DATABASE_DSN"], min_size=POOL_SIZE, max_size=POOL_SIZE
    )
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(title="bare insert baseline", lifespan=lifespan)


@app.post("/deals", status_code=status.HTTP_201_CREATED)
async def create_deal(deal: DealIn, request: Request) -> dict[str, Any]:
    team_id, pipeline_id, stage_id = request.app.state.ids
    row = await request.app.state.pool.fetchrow(
        INSERT,
        team_id,
        uuid.uuid4().hex,
        deal.name,
        pipeline_id,
        stage_id,
        deal.size,
        deal.channel_integration_room_id,
        deal.creator_flag,
        datetime.now(UTC),
    )
    return dict(row)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
