"""The poll endpoint: shape, conditional GET, caching headers, tenant isolation, metric."""

from __future__ import annotations

import httpx

from omni_service.metrics import REGISTRY
from shared_contracts.events import EventType
from tests.omni.factories import OrgHandle, deal, send, ticket

URL = "/api/v1/rooms/room-1/crm_preview"
EMPTY = {
    "room_id": "room-1",
    "deal": None,
    "ticket": None,
    "cta": {"create_deal": True, "create_ticket": True},
}


def displayed() -> float:
    return REGISTRY.get_sample_value("deal_preview_displayed_total") or 0.0


async def test_room_without_records_shows_both_calls_to_action(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.get(URL, headers=org.auth)

    assert response.status_code == 200
    assert response.json() == EMPTY


async def test_preview_requires_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.get(URL)

    assert response.status_code == 401
    assert response.json() == {"detail": "missing bearer token"}


async def test_preview_refuses_a_wrong_token(client: httpx.AsyncClient) -> None:
    response = await client.get(URL, headers={"Authorization": "Bearer not-a-token"})

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid bearer token"}


async def test_room_of_another_organization_shows_nothing_of_theirs(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    await send(client, other_org, EventType.DEAL_CREATE, deal(1, company_id=other_org.company_id))
    await send(
        client, other_org, EventType.TICKET_CREATE, ticket(1, company_id=other_org.company_id)
    )

    response = await client.get(URL, headers=org.auth)

    assert response.status_code == 200
    assert response.json() == EMPTY


async def test_preview_carries_a_strong_etag_and_must_be_revalidated(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    response = await client.get(URL, headers=org.auth)

    assert response.headers["etag"].startswith('"')
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["vary"] == "Authorization, Cookie"


async def test_matching_if_none_match_answers_304_without_body(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    etag = (await client.get(URL, headers=org.auth)).headers["etag"]

    response = await client.get(URL, headers={**org.auth, "If-None-Match": etag})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "private, no-cache"


async def test_if_none_match_accepts_a_list_and_weak_tags(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    etag = (await client.get(URL, headers=org.auth)).headers["etag"]

    response = await client.get(URL, headers={**org.auth, "If-None-Match": f'"other", W/{etag}'})

    assert response.status_code == 304


async def test_if_none_match_star_matches(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.get(URL, headers={**org.auth, "If-None-Match": "*"})

    assert response.status_code == 304


async def test_changed_preview_answers_200_with_a_new_etag(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    etag = (await client.get(URL, headers=org.auth)).headers["etag"]
    await send(client, org, EventType.DEAL_UPDATE, deal(1, company_id=org.company_id, version=2))

    response = await client.get(URL, headers={**org.auth, "If-None-Match": etag})

    assert response.status_code == 200
    assert response.headers["etag"] != etag
    assert response.json()["deal"]["version"] == 2


async def test_etag_of_another_organization_does_not_reveal_their_preview(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    await send(client, other_org, EventType.DEAL_CREATE, deal(1, company_id=other_org.company_id))
    their_etag = (await client.get(URL, headers=other_org.auth)).headers["etag"]

    response = await client.get(URL, headers={**org.auth, "If-None-Match": their_etag})

    assert response.status_code == 200
    assert response.json() == EMPTY


async def test_shown_deal_card_is_counted_on_200_and_304(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    before = displayed()

    etag = (await client.get(URL, headers=org.auth)).headers["etag"]
    await client.get(URL, headers={**org.auth, "If-None-Match": etag})

    assert displayed() - before == 2


async def test_call_to_action_is_not_counted_as_a_shown_deal(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    before = displayed()

    await client.get(URL, headers=org.auth)

    assert displayed() == before


async def test_metrics_expose_the_preview_and_receiver_counters(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert "deal_preview_displayed_total" in response.text
    assert 'omni_received_events_total{outcome="applied"}' in response.text
