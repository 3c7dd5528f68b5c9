"""The preview poll answered from the caches before routing (``previews/fast_path.py``):
the same answer as the route's, byte for byte and header for header, counted the same,
and every case it does not hold left to the route."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from omni_service import metrics
from omni_service.inbox.auth import COOKIES
from omni_service.previews import router as preview_router
from shared_contracts.events import EventType
from tests.omni.factories import OrgHandle, create_organization, deal, send

ROOM = "room-1"
PATH = f"/api/v1/rooms/{ROOM}/crm_preview"


def _comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, headers, response.content


@pytest.fixture
async def org_with_deal(app: FastAPI, client: httpx.AsyncClient) -> OrgHandle:
    await asyncio.wait_for(app.state.change_feed.listening.wait(), timeout=10)
    org = await create_organization(client, "company-a")
    sent = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    assert sent.status_code == 200, sent.text
    return org


def _route_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*_args: Any) -> None:
        raise AssertionError("the route answered a poll the caches hold")

    monkeypatch.setattr(preview_router, "current_preview", refuse)


async def test_a_cached_poll_gets_the_routes_answer_without_the_route(
    client: httpx.AsyncClient, org_with_deal: OrgHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = org_with_deal
    routed = await client.get(PATH, headers=org.auth)  # fills the caches
    routed_304 = await client.get(
        PATH, headers={**org.auth, "If-None-Match": routed.headers["etag"]}
    )
    _route_must_not_run(monkeypatch)

    fast = await client.get(PATH, headers=org.auth)
    fast_304 = await client.get(PATH, headers={**org.auth, "If-None-Match": routed.headers["etag"]})

    assert routed.status_code == 200 and routed_304.status_code == 304
    assert _comparable(fast) == _comparable(routed)
    assert _comparable(fast_304) == _comparable(routed_304)
    assert fast.headers["x-request-id"] != routed.headers["x-request-id"]


async def test_the_inbox_cookie_is_answered_fast_too(
    client: httpx.AsyncClient, org_with_deal: OrgHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = org_with_deal
    cookie = {"Cookie": f"{COOKIES.session}={org.token}"}
    routed = await client.get(PATH, headers=cookie)
    _route_must_not_run(monkeypatch)

    fast = await client.get(
        PATH, headers={**cookie, "If-None-Match": f"W/{routed.headers['etag']}"}
    )

    assert routed.status_code == 200
    assert fast.status_code == 304
    assert fast.headers["etag"] == routed.headers["etag"]


@pytest.mark.parametrize(
    "headers, status",
    [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer not-a-token"}, 401),
        ({"Cookie": f"{COOKIES.session}=not-a-token"}, 401),
    ],
)
async def test_what_the_caches_cannot_answer_goes_to_the_route(
    client: httpx.AsyncClient, org_with_deal: OrgHandle, headers: dict[str, str], status: int
) -> None:
    await client.get(PATH, headers=org_with_deal.auth)  # the room is cached for the org

    response = await client.get(PATH, headers=headers)

    assert response.status_code == status
    assert response.json()["detail"]


async def test_a_header_token_wins_over_the_cookie_as_on_the_route(
    client: httpx.AsyncClient, org_with_deal: OrgHandle
) -> None:
    org = org_with_deal
    await client.get(PATH, headers=org.auth)
    cookie = f"{COOKIES.session}={org.token}"

    response = await client.get(PATH, headers={"Authorization": "Bearer wrong", "Cookie": cookie})

    assert response.status_code == 401


async def test_a_room_id_past_the_limit_is_still_refused(
    client: httpx.AsyncClient, org_with_deal: OrgHandle
) -> None:
    response = await client.get(
        f"/api/v1/rooms/{'r' * 256}/crm_preview", headers=org_with_deal.auth
    )

    assert response.status_code == 422


async def test_another_organizations_cached_room_is_not_shown(
    client: httpx.AsyncClient, org_with_deal: OrgHandle
) -> None:
    await client.get(PATH, headers=org_with_deal.auth)
    other = await create_organization(client, "company-b")

    response = await client.get(PATH, headers=other.auth)
    again = await client.get(PATH, headers=other.auth)  # now from the caches

    assert response.json()["deal"] is None
    assert again.json() == response.json()


def _sample(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_a_fast_answer_counts_a_shown_deal(
    client: httpx.AsyncClient, org_with_deal: OrgHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = org_with_deal
    etag = (await client.get(PATH, headers=org.auth)).headers["etag"]
    _route_must_not_run(monkeypatch)
    shown_before = _sample(metrics.REGISTRY, "deal_preview_displayed_total", {})

    for _ in range(3):
        response = await client.get(PATH, headers={**org.auth, "If-None-Match": etag})
        assert response.status_code == 304

    assert _sample(metrics.REGISTRY, "deal_preview_displayed_total", {}) == shown_before + 3
