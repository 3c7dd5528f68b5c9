"""Bad input: 422 with field-level errors, 413 over the 1 MiB body limit, and nothing
written either way (DESIGN.md §3, §10)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.crm.conftest import TeamHandle, create_deal, create_ticket, fetch_rows, row_counts

MIB = 1024 * 1024
HUGE_ID = 2**31  # one past the largest INTEGER id
METHODS = ("GET", "PATCH", "DELETE")


async def assert_nothing_written(db: AsyncEngine, before: dict[str, int]) -> None:
    assert await row_counts(db) == before


@pytest.mark.parametrize("kind", ["deals", "tickets"])
async def test_malformed_json_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, kind: str
) -> None:
    before = await row_counts(db)
    response = await client.post(
        f"/api/v3.1/{kind}",
        content=b'{"name": "Deal",',
        headers={**team.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    await assert_nothing_written(db, before)


@pytest.mark.parametrize("body", [[], "deal"], ids=["list", "string"])
async def test_json_that_is_not_an_object_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, body: object
) -> None:
    before = await row_counts(db)
    response = await client.post("/api/v3.1/deals", json=body, headers=team.auth)
    assert response.status_code == 422
    await assert_nothing_written(db, before)


async def test_an_empty_body_is_422(client: httpx.AsyncClient, team: TeamHandle) -> None:
    response = await client.post("/api/v3.1/deals", headers=team.auth)
    assert response.status_code == 422


async def test_a_missing_name_is_422_naming_the_field(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.post("/api/v3.1/deals", json={"size": 5}, headers=team.auth)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "name"], "missing")


async def test_every_bad_field_is_reported_at_once(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.post(
        "/api/v3.1/deals", json={"name": "", "size": -1, "status": "maybe"}, headers=team.auth
    )
    assert response.status_code == 422
    assert sorted(error["loc"][1] for error in response.json()["detail"]) == [
        "name",
        "size",
        "status",
    ]


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("deals", "name", 123),
        ("deals", "name", "   "),
        ("deals", "name", "x" * 256),
        ("deals", "size", "lots"),
        ("deals", "size", -5),
        ("deals", "size", 1.234),
        ("deals", "size", 10**17),
        ("deals", "size", "99999999999999.99"),
        ("deals", "status", "maybe"),
        ("deals", "crm_lead_ids", "1,2"),
        ("deals", "crm_lead_ids", list(range(1, 102))),
        ("deals", "contact_id", "abc"),
        ("deals", "crm_source_id", {"id": 1}),
        ("deals", "channel_integration_room_id", 5),
        ("deals", "channel_integration_room_id", "r" * 256),
        ("tickets", "description", "d" * 10_001),
        ("tickets", "priority", 3),
        ("tickets", "status", None),
    ],
)
async def test_a_wrong_type_or_size_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    kind: str,
    field: str,
    value: object,
) -> None:
    before = await row_counts(db)
    body = {"name": "Record", field: value}
    response = await client.post(f"/api/v3.1/{kind}", json=body, headers=team.auth)
    assert response.status_code == 422
    assert {tuple(error["loc"][:2]) for error in response.json()["detail"]} == {("body", field)}
    await assert_nothing_written(db, before)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("contact_id", 0),
        ("contact_id", -1),
        ("contact_id", 2**64),
        ("contact_id", HUGE_ID),
        ("crm_lead_ids", HUGE_ID),
        ("crm_pipeline_id", HUGE_ID),
        ("crm_stage_id", HUGE_ID),
        ("crm_source_id", HUGE_ID),
    ],
)
async def test_a_zero_negative_or_out_of_range_id_in_the_body_is_422(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, field: str, value: int
) -> None:
    before = await row_counts(db)
    body = {"name": "Deal", field: [value] if field == "crm_lead_ids" else value}
    response = await client.post("/api/v3.1/deals", json=body, headers=team.auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", field]
    await assert_nothing_written(db, before)


@pytest.mark.parametrize(
    ("kind", "method", "record_id"),
    [
        *[("deals", "GET", bad) for bad in ["0", "-1", str(2**64), "abc", "1.5"]],
        *[(kind, method, str(HUGE_ID)) for kind in ("deals", "tickets") for method in METHODS],
    ],
)
async def test_a_record_id_in_the_path_that_names_no_row_is_422(
    client: httpx.AsyncClient, team: TeamHandle, kind: str, method: str, record_id: str
) -> None:
    body = {"name": "Renamed"} if method == "PATCH" else None
    response = await client.request(
        method, f"/api/v3.1/{kind}/{record_id}", json=body, headers=team.auth
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "record_id"]


async def test_the_largest_integer_id_in_the_path_is_a_plain_404(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.get(f"/api/v3.1/deals/{HUGE_ID - 1}", headers=team.auth)
    assert response.status_code == 404


async def test_a_body_over_1_mib_announced_by_content_length_is_413_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    before = await row_counts(db)
    body = json.dumps({"name": "Deal", "padding": "x" * MIB}).encode()
    response = await client.post(
        "/api/v3.1/deals", content=body, headers={**team.auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body exceeds the limit of {MIB} bytes"}
    await assert_nothing_written(db, before)


async def test_a_chunked_body_over_1_mib_is_413_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "Deal", "padding": "'
        for _ in range(17):
            yield b"x" * 65_536
        yield b'"}'

    before = await row_counts(db)
    response = await client.post(
        "/api/v3.1/deals",
        content=chunks(),
        headers={**team.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    await assert_nothing_written(db, before)


async def test_a_body_just_under_1_mib_is_accepted(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    envelope = json.dumps({"name": "Deal", "padding": ""}).encode()
    body = json.dumps({"name": "Deal", "padding": "x" * (MIB - len(envelope))}).encode()
    assert len(body) == MIB
    response = await client.post(
        "/api/v3.1/deals", content=body, headers={**team.auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 201


async def test_the_largest_size_round_trips_exactly_as_a_json_number(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, size="9999999999999.99")
    fetched = await client.get(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)
    assert b'"size":9999999999999.99' in fetched.content


async def test_unknown_fields_in_a_create_are_ignored(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, node_id="n-7", session={"a": 1})
    assert "node_id" not in deal
    assert len(await fetch_rows(db, "SELECT id FROM deals")) == 1


NAMES = ["Ñandú 🦤 deal", "商机 — 王小明", "صفقة جديدة", "emoji only 🚀🚀🚀", "ZWJ 👩‍👩‍👧‍👦"]


async def test_unicode_and_emoji_deal_names_round_trip(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    for name in NAMES:
        deal = await create_deal(client, team, name=name)
        fetched = (await client.get(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)).json()
        assert deal["name"] == fetched["name"] == name
    stored = await fetch_rows(db, "SELECT name FROM deals ORDER BY id")
    assert [row["name"] for row in stored] == NAMES


async def test_unicode_and_emoji_ticket_names_round_trip(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    for name in NAMES:
        ticket = await create_ticket(client, team, name=name, description=name * 3)
        url = f"/api/v3.1/tickets/{ticket['id']}"
        fetched = (await client.get(url, headers=team.auth)).json()
        assert (fetched["name"], fetched["description"]) == (name, name * 3)


async def test_a_255_character_emoji_name_is_accepted(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, name="🙂" * 255)
    assert deal["name"] == "🙂" * 255


async def test_names_are_stored_trimmed(client: httpx.AsyncClient, team: TeamHandle) -> None:
    deal = await create_deal(client, team, name="  Spaced deal  ")
    assert deal["name"] == "Spaced deal"


@pytest.mark.parametrize("kind", ["deals", "tickets"])
async def test_a_bad_update_is_422_and_changes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, kind: str
) -> None:
    record = await create_record_of(client, team, kind)
    table = kind
    before = await fetch_rows(db, f"SELECT * FROM {table}")
    response = await client.patch(
        f"/api/v3.1/{kind}/{record['id']}",
        json={"name": "x" * 256, "status": "nonsense"},
        headers=team.auth,
    )
    assert response.status_code == 422
    assert await fetch_rows(db, f"SELECT * FROM {table}") == before


async def create_record_of(
    client: httpx.AsyncClient, team: TeamHandle, kind: str
) -> dict[str, object]:
    if kind == "deals":
        return await create_deal(client, team)
    return await create_ticket(client, team)
