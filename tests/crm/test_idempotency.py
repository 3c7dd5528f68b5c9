"""``Idempotency-Key`` on creates: same key ⇒ same response and one record, different
body ⇒ 422, in flight ⇒ 409, concurrent duplicates ⇒ one record by a database constraint
(DESIGN.md §3, §10)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.database import session_factory, utcnow
from crm_service.errors import Conflict
from crm_service.idempotency.service import StoredResponse, fingerprint, idempotency_service
from tests.crm.conftest import TeamHandle, count_rows, execute, fetch_rows, row_counts

BODY = {"name": "Deal from bot", "channel_integration_room_id": "room-1", "creator_flag": "bot"}
TTL = timedelta(hours=24)


async def post(
    client: httpx.AsyncClient,
    team: TeamHandle,
    key: str,
    body: dict[str, object] = BODY,
    kind: str = "deals",
) -> httpx.Response:
    return await client.post(
        f"/api/v3.1/{kind}", json=body, headers={**team.auth, "Idempotency-Key": key}
    )


async def test_same_key_replays_the_first_response_and_creates_nothing_more(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    first = await post(client, team, "key-1")
    assert first.status_code == 201
    before = await row_counts(db)
    again = await post(client, team, "key-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await row_counts(db) == before


async def test_same_key_with_a_different_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    await post(client, team, "key-1")
    before = await row_counts(db)
    response = await post(client, team, "key-1", {**BODY, "name": "Another deal"})
    assert response.status_code == 422
    assert "different request body" in response.json()["detail"]
    assert await row_counts(db) == before


async def test_same_body_with_fields_in_another_order_is_a_replay(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    first = await post(client, team, "key-1")
    reordered = dict(reversed(list(BODY.items())))
    again = await post(client, team, "key-1", reordered)
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])


async def test_a_key_used_for_a_deal_cannot_create_a_ticket(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    await post(client, team, "key-1")
    response = await post(client, team, "key-1", kind="tickets")
    assert response.status_code == 422


async def test_the_same_key_in_another_team_creates_that_teams_own_record(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, other_team: TeamHandle
) -> None:
    mine = await post(client, team, "key-1")
    theirs = await post(client, other_team, "key-1")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert await count_rows(db, "deals") == 2


async def test_without_a_key_every_post_creates_a_record(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    for _ in range(2):
        response = await client.post("/api/v3.1/deals", json=BODY, headers=team.auth)
        assert response.status_code == 201
    assert await count_rows(db, "deals") == 2


async def test_ten_concurrent_duplicates_create_exactly_one_deal(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    responses = await asyncio.gather(*[post(client, team, "same-key") for _ in range(10)])
    created = [r for r in responses if r.status_code == 201]
    assert {r.status_code for r in responses} <= {201, 409}
    assert created
    assert {r.json()["id"] for r in created} == {created[0].json()["id"]}
    assert await count_rows(db, "deals") == 1
    assert await count_rows(db, "idempotency_keys") == 1


async def test_a_failed_create_releases_the_key_for_a_corrected_retry(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    failed = await post(client, team, "key-1", {**BODY, "crm_stage_id": 2_000_000})
    assert failed.status_code == 422
    assert await count_rows(db, "idempotency_keys") == 0
    retried = await post(client, team, "key-1")
    assert retried.status_code == 201
    assert await count_rows(db, "deals") == 1


async def claim_in_flight(db: AsyncEngine, team: TeamHandle, key: str, age_seconds: int) -> None:
    """A claim of ``BODY`` whose owner has not answered for ``age_seconds``."""
    await execute(
        db,
        "INSERT INTO idempotency_keys (team_id, key, fingerprint, created_at) "
        "VALUES (:team_id, :key, :fingerprint, now() - make_interval(secs => :age))",
        team_id=team.id,
        key=key,
        fingerprint=fingerprint("POST", "/api/v3.1/deals", BODY),
        age=age_seconds,
    )


async def test_a_claim_abandoned_for_60_seconds_is_taken_over(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    await claim_in_flight(db, team, "key-1", age_seconds=61)
    response = await post(client, team, "key-1")
    assert response.status_code == 201
    [claim] = await fetch_rows(db, "SELECT status_code, response_body FROM idempotency_keys")
    assert claim == {"status_code": 201, "response_body": response.text}


async def test_a_duplicate_while_the_first_is_in_flight_for_under_60_seconds_is_409(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    await claim_in_flight(db, team, "key-1", age_seconds=50)
    response = await post(client, team, "key-1")
    assert response.status_code == 409
    assert "in progress" in response.json()["detail"]
    assert await count_rows(db, "deals") == 0


async def test_a_key_older_than_24_hours_creates_a_new_record(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    first = await post(client, team, "key-1")
    await execute(db, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    again = await post(client, team, "key-1")
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert await count_rows(db, "deals") == 2


@pytest.mark.parametrize("key", ["", "k" * 256, "clé-1", "tab\tkey"])
async def test_a_key_that_is_not_1_to_255_printable_ascii_characters_is_422(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, key: str
) -> None:
    before = await row_counts(db)
    response = await client.post(
        "/api/v3.1/deals",
        json=BODY,
        headers=[*team.auth.items(), ("Idempotency-Key", key.encode())],
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    assert await row_counts(db) == before


async def test_ticket_creates_are_idempotent_too(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    first = await post(client, team, "ticket-key", {"name": "Ticket"}, kind="tickets")
    again = await post(client, team, "ticket-key", {"name": "Ticket"}, kind="tickets")
    assert again.json() == first.json()
    assert first.json()["unique_ticket_id"] == "TCK-000001"
    assert await count_rows(db, "tickets") == 1


async def test_one_key_per_team_is_enforced_by_the_database(
    db: AsyncEngine, team: TeamHandle
) -> None:
    insert = (
        "INSERT INTO idempotency_keys (team_id, key, fingerprint, created_at) "
        "VALUES (:team_id, 'key-1', 'f', now())"
    )
    await execute(db, insert, team_id=team.id)
    with pytest.raises(IntegrityError):
        await execute(db, insert, team_id=team.id)


async def test_an_owner_whose_claim_was_taken_over_cannot_complete_it(
    db: AsyncEngine, team: TeamHandle
) -> None:
    sessions = session_factory(db)
    stale = await idempotency_service.claim(
        sessions, team_id=team.id, key="key-1", fingerprint="f", ttl=TTL
    )
    await execute(db, "UPDATE idempotency_keys SET created_at = now() - interval '61 seconds'")
    taker = await idempotency_service.claim(
        sessions, team_id=team.id, key="key-1", fingerprint="f", ttl=TTL
    )
    assert not isinstance(stale, StoredResponse) and not isinstance(taker, StoredResponse)
    async with sessions() as session:
        with pytest.raises(Conflict):
            await idempotency_service.complete(
                session,
                team_id=team.id,
                key="key-1",
                claim=stale,
                response=StoredResponse(201, "{}"),
            )


async def test_an_owner_whose_claim_was_taken_over_cannot_release_it(
    db: AsyncEngine, team: TeamHandle
) -> None:
    sessions = session_factory(db)
    stale = await idempotency_service.claim(
        sessions, team_id=team.id, key="key-1", fingerprint="f", ttl=TTL
    )
    await execute(db, "UPDATE idempotency_keys SET created_at = now() - interval '61 seconds'")
    await idempotency_service.claim(
        sessions, team_id=team.id, key="key-1", fingerprint="f", ttl=TTL
    )
    assert not isinstance(stale, StoredResponse)
    await idempotency_service.release(sessions, team_id=team.id, key="key-1", claim=stale)
    [row] = await fetch_rows(db, "SELECT created_at FROM idempotency_keys")
    assert row["created_at"] > utcnow() - timedelta(seconds=30)


def test_fingerprint_is_the_sha256_of_method_path_and_canonical_body() -> None:
    expected = hashlib.sha256(b'POST /api/v3.1/deals\n{"a":1,"b":"\xc3\xa9"}').hexdigest()
    assert fingerprint("POST", "/api/v3.1/deals", {"b": "é", "a": 1}) == expected
