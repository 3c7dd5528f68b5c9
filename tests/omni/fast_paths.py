"""What the tests of Omni's fast paths share: an app's client, the app without one of its
fast-path layers (every request it would take goes through FastAPI's route), and an
answer reduced to what must be the same from either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from omni_service.main import create_app
from omni_service.settings import Settings

Exchange = tuple[int, list[tuple[str, str]], bytes]


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://omni.test") as client:
            yield client


def app_without(settings: Settings, layer: type) -> FastAPI:
    """The app without the fast path ``layer``: what it would answer, the route does."""
    app = create_app(settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not layer]  # type: ignore[comparison-overlap]
    return app


def comparable(response: httpx.Response) -> Exchange:
    """Status, headers and the exact bytes, without the request id."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, headers, response.content
