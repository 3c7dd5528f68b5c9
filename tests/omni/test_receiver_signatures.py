"""Who may write: the Standard Webhooks signature, its timestamp window, body limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx

from omni_service.settings import Settings
from shared_contracts.events import EventType
from shared_contracts.signatures import generate_secret, sign_headers
from tests.omni.factories import ADMIN_KEY, OrgHandle, deal, preview, send, signed_request


async def test_valid_signature_is_applied(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    assert response.status_code == 200
    assert response.json() == {"status": "applied"}
    assert (await preview(client, org))["deal"]["id"] == 1


async def test_tampered_body_is_refused(client: httpx.AsyncClient, org: OrgHandle) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [org.secret]
    )

    response = await client.post(
        "/webhooks/crm", content=body.replace("Deal 1", "Deal X"), headers=headers
    )

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid webhook signature"}
    assert (await preview(client, org))["deal"] is None


async def test_wrong_secret_is_refused(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await send(
        client,
        org,
        EventType.DEAL_CREATE,
        deal(1, company_id=org.company_id),
        secrets=[generate_secret()],
    )

    assert response.status_code == 401
    assert (await preview(client, org))["deal"] is None


async def test_stale_timestamp_is_refused(client: httpx.AsyncClient, org: OrgHandle) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5, seconds=5)

    response = await send(
        client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id), at=at
    )

    assert response.status_code == 401
    assert response.json() == {"detail": "webhook-timestamp is too far from the current time"}


async def test_future_timestamp_is_refused(client: httpx.AsyncClient, org: OrgHandle) -> None:
    at = datetime.now(UTC) + timedelta(minutes=5, seconds=5)

    response = await send(
        client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id), at=at
    )

    assert response.status_code == 401


async def test_timestamp_within_five_minutes_is_accepted(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=4, seconds=50)

    response = await send(
        client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id), at=at
    )

    assert response.status_code == 200


async def test_missing_signature_headers_are_refused_before_any_lookup(
    client: httpx.AsyncClient,
) -> None:
    # The company does not exist: 401, not 404, so an unsigned caller learns nothing.
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id="nobody"), [generate_secret()]
    )
    del headers["webhook-signature"]

    response = await client.post("/webhooks/crm", content=body, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "missing webhook signature headers"}


async def test_malformed_signature_header_is_refused(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [org.secret]
    )

    response = await client.post(
        "/webhooks/crm", content=body, headers={**headers, "webhook-signature": "v1;garbage"}
    )

    assert response.status_code == 401


async def test_any_listed_signature_may_match(client: httpx.AsyncClient, org: OrgHandle) -> None:
    # The CRM signs with its new and its old secret while rotating: one of them is ours.
    response = await send(
        client,
        org,
        EventType.DEAL_CREATE,
        deal(1, company_id=org.company_id),
        secrets=[generate_secret(), org.secret],
    )

    assert response.status_code == 200


async def test_previous_secret_verifies_during_grace_period(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    new_secret = generate_secret()
    rotated = await client.put(
        f"/admin/organizations/{org.id}/webhook_secret",
        json={"webhook_secret": new_secret},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert rotated.status_code == 200

    old = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))
    new = await send(
        client,
        org,
        EventType.DEAL_UPDATE,
        deal(1, company_id=org.company_id, version=2),
        secrets=[new_secret],
    )

    assert (old.status_code, new.status_code) == (200, 200)


async def test_previous_secret_is_refused_after_grace_period(
    client: httpx.AsyncClient, org: OrgHandle, settings: Settings
) -> None:
    settings.secret_rotation_grace_seconds = 0
    await client.put(
        f"/admin/organizations/{org.id}/webhook_secret",
        json={"webhook_secret": generate_secret()},
        headers={"X-Admin-Key": ADMIN_KEY},
    )

    response = await send(client, org, EventType.DEAL_CREATE, deal(1, company_id=org.company_id))

    assert response.status_code == 401


async def test_an_unknown_company_answers_exactly_like_a_bad_signature(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    unknown = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id="nobody"), [generate_secret()]
    )
    forged = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [generate_secret()]
    )

    answers = [
        await client.post("/webhooks/crm", content=body, headers=headers)
        for body, headers in (unknown, forged)
    ]

    assert [answer.status_code for answer in answers] == [401, 401]
    assert answers[0].json() == answers[1].json() == {"detail": "invalid webhook signature"}
    assert answers[0].headers.get("www-authenticate") == answers[1].headers.get("www-authenticate")


async def test_unknown_event_type_is_a_bad_request(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [org.secret]
    )
    body = body.replace("qontak.crm.deal.create", "qontak.crm.deal.archive")
    body, headers = _resign(body, headers, org.secret)

    response = await client.post("/webhooks/crm", content=body, headers=headers)

    assert response.status_code == 400
    assert response.json() == {"detail": "unknown event type 'qontak.crm.deal.archive'"}


async def test_invalid_payload_of_a_known_type_is_unprocessable(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [org.secret]
    )
    body, headers = _resign(
        body.replace('"status":"open"', '"status":"maybe"'), headers, org.secret
    )

    response = await client.post("/webhooks/crm", content=body, headers=headers)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["status"]]


async def test_body_that_is_not_json_is_a_bad_request(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body, headers = _resign("not json", {"webhook-id": "msg_1"}, org.secret)

    response = await client.post("/webhooks/crm", content=body, headers=headers)

    assert response.status_code == 400


async def test_declared_oversized_body_is_refused(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body, headers = signed_request(
        EventType.DEAL_CREATE, deal(1, company_id=org.company_id), [org.secret]
    )
    padded = body[:-1] + ',"padding":"' + "x" * (256 * 1024) + '"}'

    response = await client.post("/webhooks/crm", content=padded, headers=headers)

    assert response.status_code == 413


async def test_streamed_oversized_body_is_refused(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(300):
            yield b"x" * 1024

    # A generator body is sent chunked: no Content-Length to check up front.
    response = await client.post("/webhooks/crm", content=chunks(), headers={"webhook-id": "msg_1"})

    assert response.status_code == 413


def _resign(body: str, headers: dict[str, str], secret: str) -> tuple[str, dict[str, str]]:
    """Sign an edited body again, so only the edit is under test."""
    return body, {**headers, **sign_headers(headers["webhook-id"], body, [secret])}
