"""Text PostgreSQL cannot store (a NUL, an unpaired surrogate) and integers past the
columns are a 422 naming the field, on every route incl. the admin API; nothing is
written (issue 8)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.crm.conftest import ADMIN_KEY, TeamHandle, create_deal, row_counts

ADMIN = {"X-Admin-Key": ADMIN_KEY}
NUL = "a\x00b"
LONE_SURROGATE = '"a\\ud800b"'


async def test_a_nul_in_a_body_string_is_422_naming_the_field(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    before = await row_counts(db)
    response = await client.post("/api/v3.1/deals", json={"name": NUL}, headers=team.auth)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert "NUL" in error["msg"]
    assert await row_counts(db) == before


@pytest.mark.parametrize("kind", ["deals", "tickets"])
async def test_a_lone_surrogate_escape_in_a_body_is_422_naming_the_field(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, kind: str
) -> None:
    before = await row_counts(db)
    response = await client.post(
        f"/api/v3.1/{kind}",
        content=b'{"name": "ok", "channel_integration_room_id": ' + LONE_SURROGATE.encode() + b"}",
        headers={**team.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "channel_integration_room_id"]
    assert "surrogate" in error["msg"]
    assert await row_counts(db) == before


async def test_a_nul_inside_a_list_names_its_index(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.post(
        "/api/v3.1/deals", json={"name": "ok", "creator_flag": ["bot", NUL]}, headers=team.auth
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "creator_flag", 1]


async def test_a_valid_surrogate_pair_is_stored(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.post(
        "/api/v3.1/deals",
        content=b'{"name": "smile \\ud83d\\ude00"}',
        headers={**team.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "smile \U0001f600"


async def test_a_nul_in_the_query_is_422_naming_the_parameter(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.get("/api/v3.1/contacts?phone=%2B1%00", headers=team.auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "phone"]


async def test_a_nul_in_an_admin_query_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/deliveries?status=pending%00", headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "status"]


async def test_a_nul_in_an_admin_body_is_422_and_creates_no_team(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    before = await row_counts(db)
    response = await client.post(
        "/admin/teams", json={"name": NUL, "external_company_id": "c-1"}, headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]
    assert await row_counts(db) == before


async def test_a_nul_in_a_path_is_422_naming_the_parameter(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.put(
        f"/admin/teams/{team.id}/features/flag%00x", json={"enabled": True}, headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "flag"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/deliveries?team_id=4294967296",
        "/admin/deliveries?offset=9223372036854775807",
        "/admin/deliveries/4294967296",
    ],
)
async def test_an_integer_past_the_column_on_the_admin_api_is_422(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "less_than_equal"


async def test_replaying_a_delivery_id_past_32_bits_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/admin/deliveries/4294967296/replay", headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "delivery_id"]


async def test_a_timeline_page_past_the_bound_is_422(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    response = await client.get(
        f"/api/mobile/v2.8/deals/{deal['id']}/timeline?offset=9223372036854775807",
        headers=team.auth,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]


async def test_a_large_limit_is_still_clamped_not_refused(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    response = await client.get(
        f"/api/mobile/v2.8/deals/{deal['id']}/timeline?limit=100000", headers=team.auth
    )
    assert response.status_code == 200
    assert response.json()["limit"] == 100
