"""Admin API: organizations, their one-time token, secret rotation."""

from __future__ import annotations

import httpx
import pytest

from shared_contracts.signatures import generate_secret
from tests.omni.factories import ADMIN_KEY, OrgHandle

ADMIN = {"X-Admin-Key": ADMIN_KEY}


def new_org_body(company_id: str = "company-x") -> dict[str, str]:
    return {"name": "Acme", "company_id": company_id, "webhook_secret": generate_secret()}


async def test_create_organization_returns_its_token_once(client: httpx.AsyncClient) -> None:
    response = await client.post("/admin/organizations", json=new_org_body(), headers=ADMIN)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "company_id", "api_token"}
    assert (body["name"], body["company_id"]) == ("Acme", "company-x")
    assert len(body["api_token"]) >= 40


async def test_returned_token_authenticates_the_organization(client: httpx.AsyncClient) -> None:
    token = (await client.post("/admin/organizations", json=new_org_body(), headers=ADMIN)).json()[
        "api_token"
    ]

    response = await client.get(
        "/api/v1/rooms/room-1/crm_preview", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-Admin-Key": "wrong"}])
async def test_admin_api_requires_the_admin_key(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/admin/organizations", json=new_org_body(), headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "missing or wrong X-Admin-Key"}


async def test_second_organization_for_a_company_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/admin/organizations", json=new_org_body(), headers=ADMIN)

    response = await client.post("/admin/organizations", json=new_org_body(), headers=ADMIN)

    assert response.status_code == 409


@pytest.mark.parametrize("secret", ["plain-text", "whsec_", "whsec_c2hvcnQ=", "whsec_!!!!"])
async def test_webhook_secret_must_be_a_standard_webhooks_secret(
    client: httpx.AsyncClient, secret: str
) -> None:
    body = {**new_org_body(), "webhook_secret": secret}

    response = await client.post("/admin/organizations", json=body, headers=ADMIN)

    assert response.status_code == 422


async def test_rotating_the_secret_answers_the_organization(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.put(
        f"/admin/organizations/{org.id}/webhook_secret",
        json={"webhook_secret": generate_secret()},
        headers=ADMIN,
    )

    assert response.status_code == 200
    assert response.json() == {"id": org.id, "name": org.name, "company_id": org.company_id}


async def test_rotating_the_secret_of_an_unknown_organization_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(
        "/admin/organizations/999/webhook_secret",
        json={"webhook_secret": generate_secret()},
        headers=ADMIN,
    )

    assert response.status_code == 404


async def test_rotating_the_secret_requires_the_admin_key(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.put(
        f"/admin/organizations/{org.id}/webhook_secret",
        json={"webhook_secret": generate_secret()},
    )

    assert response.status_code == 401
