"""The chat history read answered before routing (``rooms/fast_path.py``): the route's
bytes for every page it takes, the route's own answer for everything else, and no
token lookup or session for a cached token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from omni_service import metrics
from omni_service.main import create_app
from omni_service.rooms.fast_path import HistoryFastPath
from omni_service.settings import Settings
from tests.omni.factories import OrgHandle, create_organization
from tests.omni.fast_paths import app_without, client_of, comparable
from tests.support.databases import sent_statements

# Texts whose JSON rendering differs between encoders if any does: quotes, escapes,
# control characters, non-ASCII, line separators, an emoji.
TEXTS = [
    "hello",
    'she said "yes" \\ no',
    "line one\nline two\ttabbed\r\n",
    "\x01\x1f\x7f control",
    "Selamat pagi, café ünïcode 日本語",
    "separators \u2028 \u2029",
    "emoji 🎉 and <b>html</b> & amps",
]


@pytest.fixture
async def fast(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with client_of(app) as client:
        yield app, client


@pytest.fixture
async def routed(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app_without(settings, HistoryFastPath)) as client:
        yield client


@pytest.fixture
async def chatty_org(fast: tuple[FastAPI, httpx.AsyncClient]) -> OrgHandle:
    """An organization with the texts above in room-1, and one message in room-2."""
    _, client = fast
    org = await create_organization(client, "company-a")
    for n, text in enumerate(TEXTS):
        sender_type = ("customer", "agent", "bot")[n % 3]
        response = await client.post(
            "/api/v1/rooms/room-1/messages",
            json={"sender": f"Sender {n}", "sender_type": sender_type, "text": text},
            headers=org.auth,
        )
        assert response.status_code == 201, response.text
    response = await client.post(
        "/api/v1/rooms/room-2/messages",
        json={"sender": "Other", "sender_type": "customer", "text": "elsewhere"},
        headers=org.auth,
    )
    assert response.status_code == 201, response.text
    return org


PAGES = [
    "",
    "?offset=1&limit=100",
    "?offset=1&limit=3",
    "?offset=2&limit=3",
    "?offset=3&limit=3",
    "?offset=9&limit=3",
    "?limit=500",
    "?offset=01&limit=2",
    "?offset=1&limit=2&unrelated=x",
]


@pytest.mark.parametrize("query", PAGES)
async def test_a_page_it_takes_is_the_routes_bytes_without_the_engine(
    fast: tuple[FastAPI, httpx.AsyncClient],
    routed: httpx.AsyncClient,
    chatty_org: OrgHandle,
    query: str,
) -> None:
    app, client = fast
    url = f"/api/open/v1/messages/rooms/room-1{query}"
    await client.get(url, headers=chatty_org.auth)  # the token is cached from here on
    with sent_statements(app.state.engine) as sent:
        taken = await client.get(url, headers=chatty_org.auth)
    answered = await routed.get(url, headers=chatty_org.auth)

    assert taken.status_code == 200, taken.text
    assert comparable(taken) == comparable(answered)
    assert sent == []  # the fast path answered: no session, no token lookup
    assert taken.headers["x-request-id"]


@pytest.mark.parametrize(
    "query",
    ["?offset=0", "?limit=0", "?offset=x", "?offset=-1", "?offset=1&offset=2", "?limit=1.5"],
)
async def test_a_query_it_leaves_gets_the_routes_answer(
    fast: tuple[FastAPI, httpx.AsyncClient],
    routed: httpx.AsyncClient,
    chatty_org: OrgHandle,
    query: str,
) -> None:
    _, client = fast
    url = f"/api/open/v1/messages/rooms/room-1{query}"
    await client.get("/api/open/v1/messages/rooms/room-1", headers=chatty_org.auth)
    taken = await client.get(url, headers=chatty_org.auth)
    answered = await routed.get(url, headers=chatty_org.auth)

    assert comparable(taken) == comparable(answered)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-token"}],
)
async def test_a_refused_caller_gets_the_routes_401(
    fast: tuple[FastAPI, httpx.AsyncClient],
    routed: httpx.AsyncClient,
    chatty_org: OrgHandle,
    headers: dict[str, str],
) -> None:
    _, client = fast
    for _ in range(2):  # a refused token is not cached as anything
        taken = await client.get("/api/open/v1/messages/rooms/room-1", headers=headers)
        answered = await routed.get("/api/open/v1/messages/rooms/room-1", headers=headers)
        assert taken.status_code == 401
        assert comparable(taken) == comparable(answered)


async def test_rooms_are_read_within_the_callers_organization(
    fast: tuple[FastAPI, httpx.AsyncClient], chatty_org: OrgHandle
) -> None:
    _, client = fast
    other = await create_organization(client, "company-b")
    for org in (chatty_org, other):
        await client.get("/api/open/v1/messages/rooms/room-1", headers=org.auth)

    mine = await client.get("/api/open/v1/messages/rooms/room-2", headers=chatty_org.auth)
    theirs = await client.get("/api/open/v1/messages/rooms/room-1", headers=other.auth)
    unknown = await client.get("/api/open/v1/messages/rooms/nowhere", headers=chatty_org.auth)

    assert [item["text"] for item in mine.json()["items"]] == ["elsewhere"]
    assert theirs.json() == {"items": [], "offset": 1, "limit": 100, "total": 0}
    assert unknown.json()["total"] == 0


async def test_fast_reads_are_counted_under_the_routes_template(
    fast: tuple[FastAPI, httpx.AsyncClient], chatty_org: OrgHandle
) -> None:
    _, client = fast
    labels = {
        "handler": "/api/open/v1/messages/rooms/{room_id}",
        "method": "GET",
        "status": "200",
    }
    before = metrics.REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    for _ in range(3):
        await client.get("/api/open/v1/messages/rooms/room-1", headers=chatty_org.auth)

    assert metrics.REGISTRY.get_sample_value("http_requests_total", labels) == before + 3


async def test_the_route_reads_a_known_token_from_the_cache(
    routed: httpx.AsyncClient, chatty_org: OrgHandle, settings: Settings
) -> None:
    app = app_without(settings, HistoryFastPath)
    async with client_of(app) as client:
        first = await client.get("/api/open/v1/messages/rooms/room-1", headers=chatty_org.auth)
        with sent_statements(app.state.engine) as sent:
            again = await client.get("/api/open/v1/messages/rooms/room-1", headers=chatty_org.auth)

    assert first.json() == again.json()
    statements = [statement for statement, _ in sent]
    assert not any("organization_tokens" in s or "FROM organizations" in s for s in statements)
    assert any("FROM messages" in s for s in statements)
