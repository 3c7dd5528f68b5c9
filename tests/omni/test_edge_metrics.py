"""Omni's requests in the request edge's metrics: a preview poll answered by the fast path
(before routing) is counted under the route's template, as a routed one is."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from omni_service import metrics
from shared_contracts.events import EventType
from tests.omni.factories import create_organization, deal, send

PATH = "/api/v1/rooms/room-1/crm_preview"
ROUTE = {"handler": "/api/v1/rooms/{room_id}/crm_preview", "method": "GET"}


def requests_total(status: str) -> float:
    labels = {**ROUTE, "status": status}
    return metrics.REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


async def test_routed_and_fast_polls_are_counted_under_the_routes_template(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await asyncio.wait_for(app.state.change_feed.listening.wait(), timeout=10)
    org = await create_organization(client, "company-a")
    sent = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    assert sent.status_code == 200, sent.text
    before = {status: requests_total(status) for status in ("200", "304", "401")}

    routed = await client.get(PATH, headers=org.auth)  # fills the caches
    fast = await client.get(PATH, headers=org.auth)
    fast_304 = await client.get(PATH, headers={**org.auth, "If-None-Match": fast.headers["etag"]})
    unauthorized = await client.get(PATH)

    assert [r.status_code for r in (routed, fast, fast_304, unauthorized)] == [200, 200, 304, 401]
    assert requests_total("200") - before["200"] == 2
    assert requests_total("304") - before["304"] == 1
    assert requests_total("401") - before["401"] == 1
