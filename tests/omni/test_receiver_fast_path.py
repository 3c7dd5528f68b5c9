"""``POST /webhooks/crm`` answered before routing (``receiver/fast_path.py``): the same
answers as the route gives, for every outcome and every refusal, counted the same."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from omni_service import metrics
from omni_service.main import create_app
from omni_service.receiver import router as receiver_router
from omni_service.receiver.fast_path import ReceiverFastPath
from omni_service.settings import Settings
from shared_contracts.events import EventType
from shared_contracts.signatures import generate_secret
from tests.omni.factories import OrgHandle, create_organization, deal, signed_request
from tests.omni.fast_paths import app_without, client_of, comparable

Case = Callable[[OrgHandle, int], tuple[str | bytes, dict[str, str]]]


def applied(org: OrgHandle, record: int) -> tuple[str, dict[str, str]]:
    return signed_request(
        EventType.DEAL_CREATE,
        deal(record, company_id=org.company_id, room_id=f"r{record}"),
        [org.secret],
    )


def wrong_secret(org: OrgHandle, record: int) -> tuple[str, dict[str, str]]:
    return signed_request(
        EventType.DEAL_CREATE, deal(record, company_id=org.company_id), [generate_secret()]
    )


def unsigned(org: OrgHandle, record: int) -> tuple[str, dict[str, str]]:
    body, _ = applied(org, record)
    return body, {"content-type": "application/json"}


def not_json(org: OrgHandle, record: int) -> tuple[str, dict[str, str]]:
    _, headers = applied(org, record)
    return "{not json", headers


def too_large(org: OrgHandle, record: int) -> tuple[bytes, dict[str, str]]:
    _, headers = applied(org, record)
    return b"x" * (256 * 1024 + 1), headers


@pytest.mark.parametrize("case", [applied, wrong_secret, unsigned, not_json, too_large])
async def test_the_fast_path_answers_as_the_route_does(settings: Settings, case: Case) -> None:
    async with (
        client_of(create_app(settings)) as fast,
        client_of(app_without(settings, ReceiverFastPath)) as routed,
    ):
        org = await create_organization(fast, "company-a")
        body, headers = case(org, 1)
        by_route = await routed.post("/webhooks/crm", content=body, headers=headers)
        body, headers = case(org, 2)
        by_fast_path = await fast.post("/webhooks/crm", content=body, headers=headers)

    assert comparable(by_fast_path) == comparable(by_route)
    assert by_fast_path.headers["x-request-id"]


async def test_a_duplicate_is_answered_as_one(settings: Settings) -> None:
    async with client_of(create_app(settings)) as client:
        org = await create_organization(client, "company-a")
        body, headers = applied(org, 1)
        first = await client.post("/webhooks/crm", content=body, headers=headers)
        again = await client.post("/webhooks/crm", content=body, headers=headers)

    assert first.json() == {"status": "applied"}
    assert again.json() == {"status": "duplicate"}


async def test_fast_answers_are_counted_and_the_route_is_not_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*_args: object) -> None:
        raise AssertionError("the route ran")

    monkeypatch.setattr(receiver_router, "receive_crm_event", refuse)
    labels = {"handler": "/webhooks/crm", "method": "POST", "status": "200"}
    before = metrics.REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    applied_before = (
        metrics.REGISTRY.get_sample_value("omni_received_events_total", {"outcome": "applied"})
        or 0.0
    )
    async with client_of(create_app(settings)) as client:
        org = await create_organization(client, "company-a")
        for record in range(1, 4):
            body, headers = applied(org, record)
            response = await client.post("/webhooks/crm", content=body, headers=headers)
            assert response.status_code == 200, response.text

    assert metrics.REGISTRY.get_sample_value("http_requests_total", labels) == before + 3
    assert (
        metrics.REGISTRY.get_sample_value("omni_received_events_total", {"outcome": "applied"})
        == applied_before + 3
    )
