"""The per-process caches of the preview poll and the receiver (README "Omni caches"):
a cached 304 touches no database, every change shows on the next poll, a lost LISTEN
connection turns the cache off, token and secret staleness stay within their bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text

from omni_service.main import create_app
from omni_service.previews.caching import CachedPreview, PreviewCache
from omni_service.settings import Settings
from shared_contracts.events import EventType
from shared_contracts.signatures import generate_secret
from tests.omni.factories import (
    ADMIN_KEY,
    OrgHandle,
    create_organization,
    deal,
    omni_settings,
    preview,
    send,
)
from tests.support.databases import migrate

ROOM = "room-1"
PATH = f"/api/v1/rooms/{ROOM}/crm_preview"


@contextmanager
def counted_statements(app: FastAPI) -> Iterator[list[str]]:
    """Every statement the app's engine sends while the block runs."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.change_feed.listening.wait(), timeout=10)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://omni.test") as client:
            yield app, client


async def test_a_cached_poll_sends_no_statement(app: FastAPI, client: httpx.AsyncClient) -> None:
    await asyncio.wait_for(app.state.change_feed.listening.wait(), timeout=10)
    org = await create_organization(client, "company-a")
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    first = await client.get(PATH, headers=org.auth)
    etag = first.headers["etag"]

    with counted_statements(app) as statements:
        unchanged = await client.get(PATH, headers={**org.auth, "If-None-Match": etag})
        again = await client.get(PATH, headers=org.auth)

    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == etag
    assert again.status_code == 200
    assert again.content == first.content
    assert statements == []


async def test_a_received_change_shows_on_the_next_poll(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await asyncio.wait_for(app.state.change_feed.listening.wait(), timeout=10)
    org = await create_organization(client, "company-a")
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    etag = (await client.get(PATH, headers=org.auth)).headers["etag"]

    update = deal(1, company_id=org.company_id, version=2, name="Renamed")
    assert (await send(client, org, EventType.DEAL_UPDATE, update)).status_code == 200
    response = await client.get(PATH, headers={**org.auth, "If-None-Match": etag})

    assert response.status_code == 200
    assert response.json()["deal"]["name"] == "Renamed"


async def _terminate_listener(database_url: str) -> None:
    """Kill the app's LISTEN connection from the server side, as a failover would."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        terminated = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        )
    finally:
        await connection.close()
    assert terminated == 1


async def test_a_lost_listen_connection_turns_the_cache_off_until_it_is_back(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    feed = app.state.change_feed
    await asyncio.wait_for(feed.listening.wait(), timeout=10)
    org = await create_organization(client, "company-a")
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    await client.get(PATH, headers=org.auth)

    await _terminate_listener(settings.database_url)
    for _ in range(100):
        if not feed.cache.usable:
            break
        await asyncio.sleep(0.01)
    # A change no notification announces (written while nobody listens).
    async with app.state.session_factory() as session:
        await session.execute(text("UPDATE deal_previews SET name = 'Written meanwhile'"))
        await session.commit()
    with counted_statements(app) as statements:
        shown = await preview(client, org, ROOM)

    assert feed.cache.usable is False
    assert statements, "the poll was answered from the cache while nobody listened"
    assert shown["deal"]["name"] == "Written meanwhile"

    await asyncio.wait_for(feed.listening.wait(), timeout=10)
    await preview(client, org, ROOM)
    with counted_statements(app) as statements:
        await preview(client, org, ROOM)
    assert statements == []


async def test_a_notification_that_overtakes_a_read_keeps_its_answer_out() -> None:
    cache = PreviewCache(ttl_seconds=60, max_entries=10)
    cache.usable = True
    key = (1, ROOM)
    ticket = cache.ticket()  # a poll starts reading the old rows...
    cache.invalidate(key)  # ...a commit's notification arrives...
    cache.store(key, ticket, CachedPreview('"old"', b"{}", False))  # ...the read ends.

    assert cache.lookup(key) is None


async def test_a_room_written_by_this_process_is_not_cached_until_the_commit() -> None:
    cache = PreviewCache(ttl_seconds=60, max_entries=10)
    cache.usable = True
    key = (1, ROOM)
    cache.begin_change(key)
    cache.store(key, cache.ticket(), CachedPreview('"before"', b"{}", False))
    assert cache.lookup(key) is None

    cache.end_change(key)
    cache.store(key, cache.ticket(), CachedPreview('"after"', b"{}", False))
    assert cache.lookup(key) == CachedPreview('"after"', b"{}", False)


async def test_the_preview_cache_holds_at_most_its_size() -> None:
    cache = PreviewCache(ttl_seconds=60, max_entries=3)
    cache.usable = True
    for room in range(10):
        cache.store((1, f"room-{room}"), cache.ticket(), CachedPreview('"x"', b"{}", False))

    assert len(cache) == 3
    assert cache.lookup((1, "room-9")) is not None
    assert cache.lookup((1, "room-0")) is None


async def test_a_revoked_token_stops_working_within_the_bound(omni_database_url: str) -> None:
    bound = 0.5
    async with running(omni_settings(omni_database_url, organization_cache_seconds=bound)) as (
        app,
        client,
    ):
        org = await create_organization(client, "company-a")
        assert (await client.get(PATH, headers=org.auth)).status_code == 200
        async with app.state.session_factory() as session:
            await session.execute(
                text("UPDATE organizations SET api_token_hash = 'revoked' WHERE id = :id"),
                {"id": org.id},
            )
            await session.commit()
        await asyncio.sleep(bound + 0.1)

        response = await client.get(PATH, headers=org.auth)

    assert response.status_code == 401


async def test_a_secret_rotated_elsewhere_verifies_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    org = await create_organization(client, "company-a")
    assert (
        await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    ).status_code == 200  # the old secret is now cached
    new_secret = generate_secret()
    # As another process's rotation would: this process's cache is not told.
    async with app.state.session_factory() as session:
        await session.execute(
            text(
                "UPDATE organizations SET previous_webhook_secret = webhook_secret,"
                " webhook_secret = :secret, secret_rotated_at = now() WHERE id = :id"
            ),
            {"secret": new_secret, "id": org.id},
        )
        await session.commit()

    update = deal(1, company_id=org.company_id, version=2)
    with_new = await send(client, org, EventType.DEAL_UPDATE, update, secrets=[new_secret])
    newer = deal(1, company_id=org.company_id, version=3)
    with_old = await send(client, org, EventType.DEAL_UPDATE, newer, secrets=[org.secret])

    assert with_new.status_code == 200
    assert with_old.status_code == 200  # the rotation grace still covers the old one


async def test_a_secret_rotated_through_the_api_is_dropped_from_the_cache(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    org = await create_organization(client, "company-a")
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    assert app.state.organization_cache.companies.get(org.company_id) is not None

    response = await client.put(
        f"/admin/organizations/{org.id}/webhook_secret",
        json={"webhook_secret": generate_secret()},
        headers={"X-Admin-Key": ADMIN_KEY},
    )

    assert response.status_code == 200, response.text
    assert app.state.organization_cache.companies.get(org.company_id) is None


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path / 'omni.db'}"
    migrate("omni", url)
    return omni_settings(url)


async def test_sqlite_invalidates_in_process_and_serves_hits_without_statements(
    sqlite_settings: Settings,
) -> None:
    async with running(sqlite_settings) as (app, client):
        org: OrgHandle = await create_organization(client, "company-a")
        await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
        etag = (await client.get(PATH, headers=org.auth)).headers["etag"]
        with counted_statements(app) as statements:
            hit = await client.get(PATH, headers={**org.auth, "If-None-Match": etag})
        assert (hit.status_code, statements) == (304, [])

        update = deal(1, company_id=org.company_id, version=2, name="Renamed")
        await send(client, org, EventType.DEAL_UPDATE, update)
        changed = await client.get(PATH, headers={**org.auth, "If-None-Match": etag})

    assert changed.status_code == 200
    assert changed.json()["deal"]["name"] == "Renamed"


async def test_an_event_of_a_cached_organization_is_one_statement(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await create_organization(client, "company-a")
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    held = app.state.receiver_database.held
    called: list[str] = []
    real_fetchval = held.fetchval

    async def recorded(query: str, *args: Any) -> Any:
        called.append(query)
        return await real_fetchval(query, *args)

    monkeypatch.setattr(held, "fetchval", recorded)

    with counted_statements(app) as statements:
        update = deal(1, company_id=org.company_id, version=2)
        response = await send(client, org, EventType.DEAL_UPDATE, update)

    assert response.json() == {"status": "applied"}
    # Nothing through the engine's pool: the one call runs on a held connection.
    assert statements == []
    assert len(called) == 1
    assert "omni_receive_event" in called[0]
