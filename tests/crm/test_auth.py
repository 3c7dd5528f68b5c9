"""Company-token auth: hashed, expiring tokens and the chatbot's 401 → refresh → retry path
(RFC §2.5, "chatbot CRM create token expired")."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.crm.conftest import (
    TeamHandle,
    count_rows,
    create_team,
    crm_settings,
    execute,
    fetch_rows,
    row_counts,
    running_client,
)

PROTECTED = [
    ("POST", "/api/v3.1/contacts", {"first_name": "Budi"}),
    ("GET", "/api/v3.1/contacts?phone=081234567890", None),
    ("GET", "/api/v3.1/pipelines", None),
    ("POST", "/api/v3.1/deals", {"name": "Deal"}),
    ("GET", "/api/v3.1/deals/1", None),
    ("PATCH", "/api/v3.1/deals/1", {"name": "Deal"}),
    ("DELETE", "/api/v3.1/deals/1", None),
    ("POST", "/api/v3.1/tickets", {"name": "Ticket"}),
    ("GET", "/api/v3.1/tickets/1", None),
    ("PATCH", "/api/v3.1/tickets/1", {"name": "Ticket"}),
    ("DELETE", "/api/v3.1/tickets/1", None),
]


async def expire_token(db: AsyncEngine, token: str) -> None:
    await execute(
        db,
        "UPDATE company_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = :h",
        h=hashlib.sha256(token.encode()).hexdigest(),
    )


async def refresh(
    client: httpx.AsyncClient, api_key: str | None, sso_id: str = "chatbot"
) -> httpx.Response:
    headers = {} if api_key is None else {"X-Crm-Api-Key": api_key}
    return await client.post(
        "/api/v3.1/teams/company_token", json={"sso_id": sso_id}, headers=headers
    )


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
async def test_every_api_endpoint_answers_401_json_without_a_token(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    before = await row_counts(db)
    response = await client.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json() == {"detail": "missing Authorization header"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc"],
)
async def test_authorization_that_is_not_a_bearer_token_is_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get("/api/v3.1/pipelines", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


async def test_unknown_token_is_401(client: httpx.AsyncClient, team: TeamHandle) -> None:
    response = await client.get(
        "/api/v3.1/pipelines", headers={"Authorization": f"Bearer {team.access_token}x"}
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid company token"}


async def test_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.get(
        "/api/v3.1/pipelines", headers={"Authorization": f"bearer {team.access_token}"}
    )
    assert response.status_code == 200


async def test_expired_token_is_401_with_the_refresh_path_in_the_message(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    await expire_token(db, team.access_token)
    response = await client.get("/api/v3.1/pipelines", headers=team.auth)
    assert response.status_code == 401
    assert "/api/v3.1/teams/company_token" in response.json()["detail"]


async def test_token_expires_after_crm_token_ttl_seconds(crm_database_url: str) -> None:
    settings = crm_settings(crm_database_url, token_ttl_seconds=1)
    async with running_client(settings) as client:
        team = await create_team(client)
        assert (await client.get("/api/v3.1/pipelines", headers=team.auth)).status_code == 200
        deadline = time.monotonic() + 5
        status = 200
        while status == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            status = (await client.get("/api/v3.1/pipelines", headers=team.auth)).status_code
        assert status == 401


async def test_company_tokens_are_stored_as_sha256_never_raw(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    refreshed = (await refresh(client, team.api_key)).json()["access_token"]
    rows = await fetch_rows(db, "SELECT * FROM company_tokens ORDER BY id")
    stored = {str(value) for row in rows for value in row.values()}
    assert team.access_token not in stored
    assert refreshed not in stored
    assert [row["token_hash"] for row in rows] == [
        hashlib.sha256(team.access_token.encode()).hexdigest(),
        hashlib.sha256(refreshed.encode()).hexdigest(),
    ]


async def test_refresh_with_the_api_key_answers_200_with_a_working_token(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await refresh(client, team.api_key)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86_400
    assert body["access_token"] != team.access_token
    pipelines = await client.get(
        "/api/v3.1/pipelines", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert pipelines.status_code == 200


async def test_refresh_records_the_sso_id_with_the_token(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    token = (await refresh(client, team.api_key, sso_id="agent-7@acme")).json()["access_token"]
    rows = await fetch_rows(
        db,
        "SELECT sso_id FROM company_tokens WHERE token_hash = :h",
        h=hashlib.sha256(token.encode()).hexdigest(),
    )
    assert rows == [{"sso_id": "agent-7@acme"}]


async def test_refresh_does_not_revoke_the_teams_other_tokens(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    await refresh(client, team.api_key)
    response = await client.get("/api/v3.1/pipelines", headers=team.auth)
    assert response.status_code == 200


@pytest.mark.parametrize("api_key", [None, "crm_key_wrong", ""])
async def test_refresh_without_a_valid_api_key_is_401_and_issues_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, api_key: str | None
) -> None:
    before = await count_rows(db, "company_tokens")
    response = await refresh(client, api_key)
    assert response.status_code == 401
    assert "X-Crm-Api-Key" in response.json()["detail"]
    assert await count_rows(db, "company_tokens") == before


async def test_refresh_checks_the_api_key_before_the_body(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    before = await count_rows(db, "company_tokens")
    response = await client.post("/api/v3.1/teams/company_token", json={"sso_id": 42})
    assert response.status_code == 401
    assert await count_rows(db, "company_tokens") == before


async def test_access_token_is_not_an_api_key(client: httpx.AsyncClient, team: TeamHandle) -> None:
    response = await refresh(client, team.access_token)
    assert response.status_code == 401


@pytest.mark.parametrize("body", [{"sso_id": ""}, {"sso_id": "   "}, {}, {"sso_id": 42}])
async def test_refresh_needs_a_non_empty_sso_id_string(
    client: httpx.AsyncClient, team: TeamHandle, body: dict[str, object]
) -> None:
    response = await client.post(
        "/api/v3.1/teams/company_token", json=body, headers={"X-Crm-Api-Key": team.api_key}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sso_id"]


async def test_chatbot_401_then_refresh_then_retry_creates_exactly_one_deal(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    body = {"name": "Deal from bot", "channel_integration_room_id": "room-1", "creator_flag": "bot"}
    await expire_token(db, team.access_token)

    first = await client.post("/api/v3.1/deals", json=body, headers=team.auth)
    assert first.status_code == 401
    assert await count_rows(db, "deals") == 0

    refreshed = await refresh(client, team.api_key, sso_id="chatbot")
    assert refreshed.status_code == 200
    new_auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}

    retry = await client.post("/api/v3.1/deals", json=body, headers=new_auth)
    assert retry.status_code == 201
    assert retry.json()["creator_name"] == "Bot"
    assert await count_rows(db, "deals") == 1


async def test_refresh_with_one_teams_api_key_gives_a_token_of_that_team(
    client: httpx.AsyncClient, team: TeamHandle, other_team: TeamHandle
) -> None:
    token = (await refresh(client, other_team.api_key)).json()["access_token"]
    created = await client.post(
        "/api/v3.1/deals",
        json={"name": "Globex deal"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201
    seen_by_first = await client.get(f"/api/v3.1/deals/{created.json()['id']}", headers=team.auth)
    assert seen_by_first.status_code == 404
