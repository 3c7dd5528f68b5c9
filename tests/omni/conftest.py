from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from omni_service.main import create_app
from omni_service.settings import Settings
from tests.omni.factories import OrgHandle, create_organization, omni_settings


@pytest.fixture
def settings(omni_database_url: str) -> Settings:
    return omni_settings(omni_database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    # ASGITransport does not run the lifespan; enter it here so the engine exists.
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://omni.test") as http:
        yield http


@pytest.fixture
async def org(client: httpx.AsyncClient) -> OrgHandle:
    return await create_organization(client, "company-a")


@pytest.fixture
async def other_org(client: httpx.AsyncClient) -> OrgHandle:
    return await create_organization(client, "company-b")
