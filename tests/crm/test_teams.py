"""Admin API of teams: creation, the Omnichannel link and feature flags (DESIGN.md §3)."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.settings import Settings
from shared_contracts.signatures import generate_secret
from tests.crm.conftest import (
    ADMIN_KEY,
    TeamHandle,
    create_team,
    fetch_rows,
    row_counts,
)

ADMIN = {"X-Admin-Key": ADMIN_KEY}


def link_body(secret: str | None = None) -> dict[str, str]:
    return {
        "base_url": "http://omni.internal:9000/",
        "public_url": "https://inbox.example.test",
        "webhook_secret": secret or generate_secret(),
        "api_token": "omni-api-token-123",
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/admin/teams", {"name": "Acme", "external_company_id": "c-9"}),
        ("PUT", "/admin/teams/1/omnichannel", link_body()),
        ("PUT", "/admin/teams/1/features/bot_ai_creation_parity", {"enabled": True}),
    ],
)
@pytest.mark.parametrize("admin_key", [None, "wrong-key"])
async def test_admin_endpoints_answer_401_json_without_the_right_admin_key(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    method: str,
    path: str,
    body: dict[str, object],
    admin_key: str | None,
) -> None:
    before = await row_counts(db)
    headers = {} if admin_key is None else {"X-Admin-Key": admin_key}
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or wrong X-Admin-Key"}
    assert await row_counts(db) == before


async def test_create_team_returns_id_api_key_access_token_and_expiry(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/admin/teams", json={"name": "Acme", "external_company_id": "c-1"}, headers=ADMIN
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "api_key", "access_token", "expires_in"}
    assert body["name"] == "Acme"
    assert body["external_company_id"] == "c-1"
    assert body["expires_in"] == settings.token_ttl_seconds
    assert body["api_key"] != body["access_token"]


async def test_first_access_token_of_a_new_team_works(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.get("/api/v3.1/pipelines", headers=team.auth)
    assert response.status_code == 200


async def test_new_team_has_the_default_pipeline(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    pipelines = (await client.get("/api/v3.1/pipelines", headers=team.auth)).json()["items"]
    assert [(p["name"], p["is_default"]) for p in pipelines] == [("Sales", True)]
    assert [stage["name"] for stage in pipelines[0]["stages"]] == [
        "New",
        "Qualified",
        "Proposal",
        "Won",
        "Lost",
    ]


async def test_api_key_is_stored_as_its_sha256_only(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    rows = await fetch_rows(db, "SELECT * FROM teams WHERE id = :id", id=team.id)
    assert rows[0]["api_key_hash"] == hashlib.sha256(team.api_key.encode()).hexdigest()
    assert team.api_key not in {str(value) for value in rows[0].values()}


async def test_duplicate_external_company_id_is_409_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    before = await row_counts(db)
    response = await client.post(
        "/admin/teams",
        json={"name": "Copycat", "external_company_id": team.external_company_id},
        headers=ADMIN,
    )
    assert response.status_code == 409
    assert team.external_company_id in response.json()["detail"]
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "external_company_id": "c-1"},
        {"name": "Acme"},
        {"name": "Acme", "external_company_id": "c-1", "plan": "gold"},
        {"name": "x" * 256, "external_company_id": "c-1"},
    ],
    ids=["blank-name", "missing-company", "unknown-field", "name-too-long"],
)
async def test_invalid_team_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, body: dict[str, str]
) -> None:
    before = await row_counts(db)
    response = await client.post("/admin/teams", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert await row_counts(db) == before


async def test_feature_flag_is_stored_per_team(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, other_team: TeamHandle
) -> None:
    response = await client.put(
        f"/admin/teams/{team.id}/features/bot_ai_creation_parity",
        json={"enabled": True},
        headers=ADMIN,
    )
    assert response.status_code == 200
    assert response.json()["enabled"] is True
    assert response.json()["flag"] == "bot_ai_creation_parity"
    rows = await fetch_rows(db, "SELECT team_id, name, enabled FROM team_features")
    assert rows == [{"team_id": team.id, "name": "bot_ai_creation_parity", "enabled": True}]


async def test_feature_flag_can_be_switched_off_again(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    path = f"/admin/teams/{team.id}/features/bot_ai_creation_parity"
    await client.put(path, json={"enabled": True}, headers=ADMIN)
    response = await client.put(path, json={"enabled": False}, headers=ADMIN)
    assert response.json()["enabled"] is False
    rows = await fetch_rows(db, "SELECT enabled FROM team_features WHERE team_id = :t", t=team.id)
    assert rows == [{"enabled": False}]


async def test_unknown_feature_flag_is_404(client: httpx.AsyncClient, team: TeamHandle) -> None:
    response = await client.put(
        f"/admin/teams/{team.id}/features/dark_mode", json={"enabled": True}, headers=ADMIN
    )
    assert response.status_code == 404
    assert "bot_ai_creation_parity" in response.json()["detail"]


async def test_feature_flag_of_an_unknown_team_is_404(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/admin/teams/999/features/bot_ai_creation_parity", json={"enabled": True}, headers=ADMIN
    )
    assert response.status_code == 404


@pytest.mark.parametrize("team_id", ["0", "-1", str(2**31), str(2**63), "abc"])
async def test_team_id_in_an_admin_path_that_names_no_row_is_422(
    client: httpx.AsyncClient, team_id: str
) -> None:
    response = await client.put(
        f"/admin/teams/{team_id}/features/bot_ai_creation_parity",
        json={"enabled": True},
        headers=ADMIN,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "team_id"]


async def test_omnichannel_link_is_stored_and_secrets_are_not_echoed(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    body = link_body()
    response = await client.put(f"/admin/teams/{team.id}/omnichannel", json=body, headers=ADMIN)
    assert response.status_code == 200
    answer = response.json()
    assert answer["base_url"] == "http://omni.internal:9000"
    assert answer["public_url"] == "https://inbox.example.test"
    assert body["webhook_secret"] not in response.text
    assert body["api_token"] not in response.text
    rows = await fetch_rows(db, "SELECT * FROM omnichannel_links WHERE team_id = :t", t=team.id)
    assert rows[0]["webhook_secret"] == body["webhook_secret"]
    assert rows[0]["api_token"] == body["api_token"]


async def test_changing_the_webhook_secret_keeps_the_previous_one_for_rotation(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    first, second = link_body(), link_body()
    await client.put(f"/admin/teams/{team.id}/omnichannel", json=first, headers=ADMIN)
    response = await client.put(f"/admin/teams/{team.id}/omnichannel", json=second, headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["secret_rotated_at"] is not None
    rows = await fetch_rows(db, "SELECT * FROM omnichannel_links WHERE team_id = :t", t=team.id)
    assert rows[0]["webhook_secret"] == second["webhook_secret"]
    assert rows[0]["previous_webhook_secret"] == first["webhook_secret"]


async def test_relinking_with_the_same_secret_is_not_a_rotation(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    body = link_body()
    await client.put(f"/admin/teams/{team.id}/omnichannel", json=body, headers=ADMIN)
    response = await client.put(
        f"/admin/teams/{team.id}/omnichannel",
        json={**body, "base_url": "http://omni-2.internal"},
        headers=ADMIN,
    )
    assert response.json()["secret_rotated_at"] is None
    assert response.json()["base_url"] == "http://omni-2.internal"


@pytest.mark.parametrize(
    "change",
    [
        {"webhook_secret": "not-a-whsec-secret"},
        {"webhook_secret": "whsec_c2hvcnQ="},
        {"base_url": "not a url"},
        {"api_token": ""},
    ],
    ids=["no-prefix", "too-short", "bad-url", "blank-token"],
)
async def test_invalid_omnichannel_link_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, change: dict[str, str]
) -> None:
    before = await row_counts(db)
    response = await client.put(
        f"/admin/teams/{team.id}/omnichannel", json={**link_body(), **change}, headers=ADMIN
    )
    assert response.status_code == 422
    assert await row_counts(db) == before


async def test_omnichannel_link_of_an_unknown_team_is_404(client: httpx.AsyncClient) -> None:
    response = await client.put("/admin/teams/4242/omnichannel", json=link_body(), headers=ADMIN)
    assert response.status_code == 404


async def test_each_team_gets_its_own_default_pipeline(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    second = await create_team(client, external_company_id="company-x")
    first_pipelines = (await client.get("/api/v3.1/pipelines", headers=team.auth)).json()
    second_pipelines = (await client.get("/api/v3.1/pipelines", headers=second.auth)).json()
    assert first_pipelines["items"][0]["id"] != second_pipelines["items"][0]["id"]
