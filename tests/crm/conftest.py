from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crm_service.events.dispatch import dispatcher_of
from crm_service.main import create_app
from crm_service.models import Base
from crm_service.settings import Settings
from tests.support.databases import POSTGRES_DSN, database_from, migrate

ADMIN_KEY = "test-admin-key"
PUBLIC_URL = "https://crm.example.test"


@dataclass
class EnqueueRecorder:
    """Stands in for the broker in API tests: records what would have been enqueued."""

    items: list[tuple[int, str]] = field(default_factory=list)

    def __call__(self, items: list[tuple[int, str]]) -> None:
        self.items.extend(items)


class DispatchingTransport(httpx.ASGITransport):
    """The app in process. Each exchange ends once the outbox rows it handed to the app's
    dispatcher have been tried, so a test sees them in :class:`EnqueueRecorder` when its
    request returns (the deal create's fast path hands them over and returns at once)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        await dispatcher_of(self.app).idle()
        return response


@dataclass
class TeamHandle:
    id: int
    external_company_id: str
    api_key: str
    access_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def crm_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_key": ADMIN_KEY,
        "public_url": PUBLIC_URL,
        "redis_url": None,
        "celery_broker_url": "memory://",
    }
    values.update(overrides)
    return Settings(**values)


HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def reusable_crm_database(crm_template: str) -> Iterator[str]:
    with database_from(crm_template) as url:
        yield url


def empty_database(url: str) -> None:
    """Back to the state of a fresh migrated copy: every table empty, every id sequence
    restarted. Children first, so no foreign key is ever violated."""
    dsn = f"{POSTGRES_DSN.rsplit('/', 1)[0]}/{url.rsplit('/', 1)[1]}"
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '5s'")
        for table in reversed(Base.metadata.sorted_tables):
            cursor.execute(f'DELETE FROM "{table.name}"')
        cursor.execute(
            "SELECT setval(format('%I', sequencename), 1, false) "
            "FROM pg_sequences WHERE schemaname = 'public'"
        )
    connection.close()


@pytest.fixture
def crm_database_url(request: pytest.FixtureRequest, crm_template: str) -> Iterator[str]:
    """A migrated CRM database with nothing in it, for this test alone.

    The API tests right in this folder run in-process and close every connection when
    they end, so they share one database that is emptied before each test (~5 ms instead
    of ~300 ms for a template copy). Tests in sub-packages start real processes and keep
    a fresh copy each, as the root fixture gives."""
    if request.node.path.parent != HERE:
        with database_from(crm_template) as url:
            yield url
        return
    url: str = request.getfixturevalue("reusable_crm_database")
    empty_database(url)
    yield url


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    """A CRM SQLite file migrated to head (the embedded mode's database)."""
    path = tmp_path / "crm.db"
    migrate("crm", f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def enqueued() -> EnqueueRecorder:
    return EnqueueRecorder()


@pytest.fixture
def settings(crm_database_url: str) -> Settings:
    return crm_settings(crm_database_url)


@pytest.fixture
async def crm_app(settings: Settings, enqueued: EnqueueRecorder) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    app.state.enqueue_outbox = enqueued
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(crm_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = DispatchingTransport(app=crm_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
        yield client


async def create_team(
    client: httpx.AsyncClient, external_company_id: str = "company-1", name: str = "Acme"
) -> TeamHandle:
    response = await client.post(
        "/admin/teams",
        json={"name": name, "external_company_id": external_company_id},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return TeamHandle(
        id=body["id"],
        external_company_id=external_company_id,
        api_key=body["api_key"],
        access_token=body["access_token"],
    )


async def enable_parity(client: httpx.AsyncClient, team: TeamHandle, enabled: bool = True) -> None:
    response = await client.put(
        f"/admin/teams/{team.id}/features/bot_ai_creation_parity",
        json={"enabled": enabled},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def team(client: httpx.AsyncClient) -> TeamHandle:
    return await create_team(client)


@pytest.fixture
async def other_team(client: httpx.AsyncClient) -> TeamHandle:
    return await create_team(client, external_company_id="company-2", name="Globex")


@asynccontextmanager
async def running_client(
    settings: Settings, enqueued: EnqueueRecorder | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process app with these settings (its lifespan run) and a client on it."""
    app = create_app(settings)
    app.state.enqueue_outbox = enqueued if enqueued is not None else EnqueueRecorder()
    async with app.router.lifespan_context(app):
        transport = DispatchingTransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
            yield client


@pytest.fixture
async def db(crm_database_url: str) -> AsyncIterator[AsyncEngine]:
    """A direct engine on the test database, apart from the app's: what is really stored."""
    engine = create_async_engine(crm_database_url)
    yield engine
    await engine.dispose()


async def count_rows(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(text(table))) or 0)


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows per table, for "nothing was written" checks."""
    return {table: await count_rows(engine, table) for table in sorted(Base.metadata.tables)}


async def fetch_rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(text(sql), params)
        return [dict(row._mapping) for row in result]


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)


async def create_contact(
    client: httpx.AsyncClient, team: TeamHandle, first_name: str = "Budi", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v3.1/contacts", json={"first_name": first_name, **fields}, headers=team.auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_record(
    client: httpx.AsyncClient, team: TeamHandle, kind: str, **fields: Any
) -> dict[str, Any]:
    """POST a deal or a ticket (``kind`` = "deals" | "tickets"); 201 expected."""
    body = {"name": f"{kind[:-1].title()} from test", **fields}
    response = await client.post(f"/api/v3.1/{kind}", json=body, headers=team.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_deal(client: httpx.AsyncClient, team: TeamHandle, **fields: Any) -> dict[str, Any]:
    return await create_record(client, team, "deals", **fields)


async def create_ticket(
    client: httpx.AsyncClient, team: TeamHandle, **fields: Any
) -> dict[str, Any]:
    return await create_record(client, team, "tickets", **fields)


async def add_pipeline(
    engine: AsyncEngine, team_id: int, name: str, stages: list[str]
) -> tuple[int, list[int]]:
    """A second pipeline for a team (there is no API for it): its id and its stage ids."""
    async with engine.begin() as connection:
        pipeline_id = await connection.scalar(
            text(
                "INSERT INTO pipelines (team_id, name, is_default) "
                "VALUES (:team_id, :name, false) RETURNING id"
            ),
            {"team_id": team_id, "name": name},
        )
        stage_ids = [
            await connection.scalar(
                text(
                    "INSERT INTO stages (pipeline_id, name, position) "
                    "VALUES (:pipeline_id, :name, :position) RETURNING id"
                ),
                {"pipeline_id": pipeline_id, "name": stage, "position": position},
            )
            for position, stage in enumerate(stages)
        ]
    return int(pipeline_id), [int(stage_id) for stage_id in stage_ids]
