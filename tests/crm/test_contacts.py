"""Contacts: create, and the phone lookup the chatbot uses to find ``crm_lead_ids``.

Normalisation rule (crm_service/contacts/phones.py): digits only; a leading ``+`` or
``00`` is international; a leading ``0`` is a national number of Indonesia (+62); any
other digit string is international without its ``+``.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.contacts.phones import normalize_phone
from tests.crm.conftest import TeamHandle, create_contact, fetch_rows, row_counts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+62 812-3456-7890", "+6281234567890"),
        ("0812-3456-7890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("0062 812 3456 7890", "+6281234567890"),
        ("(0812) 3456 7890", "+6281234567890"),
        ("+1 415 555 0100", "+14155550100"),
    ],
)
def test_phone_spellings_normalise_to_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "+", "abc", "12", "+62 1", "1" * 18])
def test_strings_that_are_not_phone_numbers_normalise_to_none(raw: str) -> None:
    assert normalize_phone(raw) is None


async def test_create_contact_answers_201_with_the_stored_contact(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.post(
        "/api/v3.1/contacts",
        json={
            "first_name": "Budi",
            "last_name": "Santoso",
            "phone": "+62 812-3456-7890",
            "email": "budi@example.test",
        },
        headers=team.auth,
    )
    assert response.status_code == 201
    body = response.json()
    assert isinstance(body["id"], int)
    assert body["created_at"].endswith("Z")
    assert {key: body[key] for key in body if key not in {"id", "created_at"}} == {
        "first_name": "Budi",
        "last_name": "Santoso",
        "phone": "+62 812-3456-7890",
        "phone_e164": "+6281234567890",
        "email": "budi@example.test",
    }


async def test_contact_needs_only_a_first_name(client: httpx.AsyncClient, team: TeamHandle) -> None:
    body = await create_contact(client, team, first_name="Siti")
    assert (body["last_name"], body["phone"], body["phone_e164"], body["email"]) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("spelling", ["+62 812-3456-7890", "0812-3456-7890", "6281234567890"])
async def test_every_spelling_of_a_phone_finds_the_same_contact(
    client: httpx.AsyncClient, team: TeamHandle, spelling: str
) -> None:
    contact = await create_contact(client, team, phone="0812 3456 7890")
    await create_contact(client, team, first_name="Other", phone="0813 0000 0000")
    response = await client.get("/api/v3.1/contacts", params={"phone": spelling}, headers=team.auth)
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [contact["id"]]


async def test_phone_lookup_returns_every_contact_with_that_number_oldest_first(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    first = await create_contact(client, team, phone="+6281234567890")
    second = await create_contact(client, team, first_name="Dewi", phone="081234567890")
    response = await client.get(
        "/api/v3.1/contacts", params={"phone": "6281234567890"}, headers=team.auth
    )
    assert [item["id"] for item in response.json()["items"]] == [first["id"], second["id"]]


async def test_phone_lookup_of_an_unknown_number_is_an_empty_list(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.get(
        "/api/v3.1/contacts", params={"phone": "081299999999"}, headers=team.auth
    )
    assert response.status_code == 200
    assert response.json() == {"items": []}


async def test_phone_lookup_never_returns_another_teams_contacts(
    client: httpx.AsyncClient, team: TeamHandle, other_team: TeamHandle
) -> None:
    await create_contact(client, other_team, phone="081234567890")
    response = await client.get(
        "/api/v3.1/contacts", params={"phone": "081234567890"}, headers=team.auth
    )
    assert response.json() == {"items": []}


@pytest.mark.parametrize("phone", ["not-a-phone", "12"])
async def test_phone_lookup_with_an_invalid_phone_is_422_naming_the_query_field(
    client: httpx.AsyncClient, team: TeamHandle, phone: str
) -> None:
    response = await client.get("/api/v3.1/contacts", params={"phone": phone}, headers=team.auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "phone"]


async def test_phone_lookup_without_a_phone_is_422(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.get("/api/v3.1/contacts", headers=team.auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "phone"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"last_name": "Santoso"}, "first_name"),
        ({"first_name": "  "}, "first_name"),
        ({"first_name": "x" * 256}, "first_name"),
        ({"first_name": 7}, "first_name"),
        ({"first_name": "Budi", "phone": "call me"}, "phone"),
        ({"first_name": "Budi", "phone": "0" * 65}, "phone"),
        ({"first_name": "Budi", "email": "budi-at-example"}, "email"),
        ({"first_name": "Budi", "company": "Acme"}, "company"),
    ],
    ids=[
        "missing-first-name",
        "blank-first-name",
        "long-first-name",
        "number-first-name",
        "bad-phone",
        "long-phone",
        "bad-email",
        "unknown-field",
    ],
)
async def test_invalid_contact_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    body: dict[str, object],
    field: str,
) -> None:
    before = await row_counts(db)
    response = await client.post("/api/v3.1/contacts", json=body, headers=team.auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert await row_counts(db) == before


async def test_unicode_contact_names_round_trip(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    contact = await create_contact(client, team, first_name="Ñoño 🙂", last_name="王小明")
    assert (contact["first_name"], contact["last_name"]) == ("Ñoño 🙂", "王小明")
    rows = await fetch_rows(db, "SELECT first_name, last_name FROM contacts")
    assert rows == [{"first_name": "Ñoño 🙂", "last_name": "王小明"}]
