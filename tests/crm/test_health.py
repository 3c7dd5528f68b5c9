"""``/healthz`` (the process is up), ``/readyz`` (the database answers), and the ASGI
entry point ``crm_service.main:app`` serving the API under uvicorn with settings read
from the environment."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.crm.conftest import crm_settings, running_client
from tests.support.processes import free_port, service_env, start_uvicorn

UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:{port}/crm"


async def test_healthz_is_ok_even_without_a_database() -> None:
    settings = crm_settings(UNREACHABLE_DATABASE.format(port=free_port()))
    async with running_client(settings) as client:
        response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})


async def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    settings = crm_settings(UNREACHABLE_DATABASE.format(port=free_port()))
    async with running_client(settings) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


async def test_a_connection_the_database_dropped_fails_one_request_then_the_api_recovers(
    crm_app: FastAPI, db: AsyncEngine
) -> None:
    transport = httpx.ASGITransport(app=crm_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
        assert (await client.get("/readyz")).status_code == 200
        async with db.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        statuses = [(await client.get("/readyz")).status_code for _ in range(3)]
    assert statuses == [503, 200, 200]


@pytest.mark.e2e
def test_uvicorn_serves_the_api_with_settings_from_the_environment(
    crm_database_url: str, tmp_path: Path
) -> None:
    env = service_env(
        CRM_DATABASE_URL=crm_database_url,
        CRM_ADMIN_KEY="e2e-admin-key",
        CRM_PUBLIC_URL="https://crm.e2e.test",
        CRM_TOKEN_TTL_SECONDS=321,
        CELERY_BROKER_URL="memory://",
    )
    process, url = start_uvicorn("crm_service.main:app", env, log_dir=tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/readyz").json() == {"status": "ok", "database": "ok"}
            team = http.post(
                "/admin/teams",
                json={"name": "Acme", "external_company_id": "e2e"},
                headers={"X-Admin-Key": "e2e-admin-key"},
            )
            assert (team.status_code, team.json()["expires_in"]) == (201, 321)
            auth = {"Authorization": f"Bearer {team.json()['access_token']}"}
            deal = http.post("/api/v3.1/deals", json={"name": "Deal"}, headers=auth)
            assert deal.status_code == 201
            assert deal.json()["external_url"] == f"https://crm.e2e.test/deals/{deal.json()['id']}"
            chunked = http.post(
                "/api/v3.1/deals",
                content=(b"x" * 65_536 for _ in range(17)),
                headers={**auth, "Content-Type": "application/json"},
            )
            assert chunked.status_code == 413
    finally:
        process.stop()
