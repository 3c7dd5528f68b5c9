"""Liveness and readiness."""

from __future__ import annotations

import httpx

from omni_service.main import create_app
from tests.omni.factories import omni_settings


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_answers_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_answers_503_when_the_database_is_down() -> None:
    # Nothing listens on port 1: connecting fails at once.
    app = create_app(omni_settings("postgresql+asyncpg://postgres@127.0.0.1:1/omni"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://omni.test") as client:
            response = await client.get("/readyz")

    assert (response.status_code, response.json()) == (503, {"detail": "database unavailable"})
