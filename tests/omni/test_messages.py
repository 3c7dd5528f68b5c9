"""Chat messages: append, and the history the CRM reads (newest first, 1-based pages)."""

from __future__ import annotations

import httpx
import pytest

from tests.omni.factories import OrgHandle

POST_URL = "/api/v1/rooms/room-1/messages"
HISTORY_URL = "/api/open/v1/messages/rooms/room-1"


async def post(client: httpx.AsyncClient, org: OrgHandle, text: str) -> httpx.Response:
    body = {"sender": "Ana", "sender_type": "customer", "text": text}
    return await client.post(POST_URL, json=body, headers=org.auth)


async def history_texts(client: httpx.AsyncClient, org: OrgHandle, query: str = "") -> list[str]:
    response = await client.get(f"{HISTORY_URL}{query}", headers=org.auth)
    assert response.status_code == 200, response.text
    return [item["text"] for item in response.json()["items"]]


async def test_posted_message_is_returned_with_201(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await post(client, org, "Hello, I need help")

    assert response.status_code == 201
    body = response.json()
    assert {key: body[key] for key in ("room_id", "sender", "sender_type", "text")} == {
        "room_id": "room-1",
        "sender": "Ana",
        "sender_type": "customer",
        "text": "Hello, I need help",
    }
    assert isinstance(body["id"], int)
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 27


@pytest.mark.parametrize(
    "override",
    [
        {"text": ""},
        {"text": "x" * 10_001},
        {"sender": ""},
        {"sender": "x" * 256},
        {"sender_type": "robot"},
    ],
)
async def test_invalid_message_is_unprocessable(
    client: httpx.AsyncClient, org: OrgHandle, override: dict[str, str]
) -> None:
    body = {"sender": "Ana", "sender_type": "customer", "text": "hello", **override}

    response = await client.post(POST_URL, json=body, headers=org.auth)

    assert response.status_code == 422


async def test_posting_requires_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.post(
        POST_URL, json={"sender": "Ana", "sender_type": "customer", "text": "hi"}
    )

    assert response.status_code == 401


async def test_history_is_newest_first(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for text in ("one", "two", "three"):
        await post(client, org, text)

    assert await history_texts(client, org) == ["three", "two", "one"]


async def test_history_reports_its_paging(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for text in ("one", "two", "three"):
        await post(client, org, text)

    response = await client.get(f"{HISTORY_URL}?offset=1&limit=2", headers=org.auth)

    body = response.json()
    assert (body["offset"], body["limit"], body["total"]) == (1, 2, 3)


async def test_offset_is_a_one_based_page_number(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for text in ("one", "two", "three", "four", "five"):
        await post(client, org, text)

    assert await history_texts(client, org, "?offset=2&limit=2") == ["three", "two"]
    assert await history_texts(client, org, "?offset=3&limit=2") == ["one"]
    assert await history_texts(client, org, "?offset=4&limit=2") == []


async def test_page_far_past_the_end_is_empty(client: httpx.AsyncClient, org: OrgHandle) -> None:
    await post(client, org, "one")

    assert await history_texts(client, org, f"?offset={2**62}&limit=100") == []


async def test_limit_above_the_maximum_is_clamped(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.get(f"{HISTORY_URL}?offset=1&limit=1000", headers=org.auth)

    assert response.status_code == 200
    assert response.json()["limit"] == 100


async def test_first_page_holds_the_latest_hundred(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    for number in range(1, 106):
        await post(client, org, f"message {number}")

    texts = await history_texts(client, org, "?offset=1&limit=100")

    assert (len(texts), texts[0], texts[-1]) == (100, "message 105", "message 6")


@pytest.mark.parametrize("query", ["?offset=0", "?limit=0", "?offset=-1", "?offset=abc"])
async def test_invalid_paging_is_unprocessable(
    client: httpx.AsyncClient, org: OrgHandle, query: str
) -> None:
    response = await client.get(f"{HISTORY_URL}{query}", headers=org.auth)

    assert response.status_code == 422


async def test_unknown_room_has_an_empty_history(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.get("/api/open/v1/messages/rooms/never-used", headers=org.auth)

    assert response.status_code == 200
    assert response.json() == {"items": [], "offset": 1, "limit": 100, "total": 0}


async def test_history_of_another_organization_room_is_empty(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    await post(client, other_org, "their secret")

    assert await history_texts(client, org) == []


async def test_history_requires_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.get(HISTORY_URL)

    assert response.status_code == 401


async def test_an_unknown_token_is_refused_every_time(client: httpx.AsyncClient) -> None:
    wrong = {"Authorization": "Bearer not-a-token"}
    for _ in range(2):
        response = await client.get(HISTORY_URL, headers=wrong)
        assert response.status_code == 401
        assert response.json() == {"detail": "invalid bearer token"}
