"""Deals: create / get / patch / delete and every record rule of DESIGN.md §3."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.crm.conftest import (
    PUBLIC_URL,
    TeamHandle,
    add_pipeline,
    create_contact,
    create_deal,
    fetch_rows,
    row_counts,
)

DEAL_FIELDS = {
    "id",
    "slug",
    "name",
    "crm_pipeline_id",
    "crm_stage_id",
    "pipeline",
    "stage",
    "size",
    "status",
    "crm_source_id",
    "channel_integration_room_id",
    "creator_flag",
    "creator_name",
    "crm_lead_ids",
    "external_url",
    "created_at",
    "updated_at",
    "version",
}
RFC3339_MICROS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def patch(
    client: httpx.AsyncClient, team: TeamHandle, deal_id: int, **fields: object
) -> httpx.Response:
    return await client.patch(f"/api/v3.1/deals/{deal_id}", json=fields, headers=team.auth)


async def test_create_answers_201_with_exactly_the_read_fields(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.post(
        "/api/v3.1/deals",
        json={
            "name": "Deal from bot",
            "channel_integration_room_id": "room-1",
            "creator_flag": "bot",
            "size": 1500000,
            "crm_source_id": 7,
        },
        headers=team.auth,
    )
    assert response.status_code == 201
    deal = response.json()
    assert set(deal) == DEAL_FIELDS
    assert (deal["name"], deal["size"], deal["status"], deal["crm_source_id"]) == (
        "Deal from bot",
        1500000.0,
        "open",
        7,
    )
    assert deal["channel_integration_room_id"] == "room-1"
    assert (deal["creator_flag"], deal["creator_name"], deal["version"]) == ("bot", "Bot", 1)


async def test_get_answers_what_create_answered(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    contact = await create_contact(client, team)
    deal = await create_deal(
        client, team, creator_flag="agentic_ai", crm_lead_ids=[contact["id"]], size="10.50"
    )
    response = await client.get(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)
    assert response.status_code == 200
    assert response.json() == deal


async def test_times_are_rfc3339_utc_with_microseconds(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    assert RFC3339_MICROS_UTC.match(deal["created_at"])
    assert RFC3339_MICROS_UTC.match(deal["updated_at"])


async def test_external_url_is_the_crm_detail_page(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    assert deal["external_url"] == f"{PUBLIC_URL}/deals/{deal['id']}"


async def test_each_deal_gets_its_own_slug(client: httpx.AsyncClient, team: TeamHandle) -> None:
    first, second = await create_deal(client, team), await create_deal(client, team)
    assert first["slug"] and second["slug"] and first["slug"] != second["slug"]


async def test_amount_is_accepted_as_the_size(client: httpx.AsyncClient, team: TeamHandle) -> None:
    deal = await create_deal(client, team, amount=2500.75)
    assert deal["size"] == 2500.75


@pytest.mark.parametrize(
    ("sent", "stored", "label"),
    [
        ("bot", "bot", "Bot"),
        ("BOT", "bot", "Bot"),
        ("agentic_ai", "agentic_ai", "AI"),
        (" Agentic_AI ", "agentic_ai", "AI"),
    ],
)
async def test_creator_flag_is_case_insensitive_and_names_the_creator(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, sent: str, stored: str, label: str
) -> None:
    deal = await create_deal(client, team, creator_flag=sent)
    assert (deal["creator_flag"], deal["creator_name"]) == (stored, label)
    rows = await fetch_rows(db, "SELECT creator_flag FROM deals WHERE id = :id", id=deal["id"])
    assert rows == [{"creator_flag": stored}]


async def test_absent_creator_flag_is_null_and_the_creator_is_the_tokens_user(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    refreshed = await client.post(
        "/api/v3.1/teams/company_token",
        json={"sso_id": "rina@acme"},
        headers={"X-Crm-Api-Key": team.api_key},
    )
    auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    response = await client.post("/api/v3.1/deals", json={"name": "Manual deal"}, headers=auth)
    assert (response.json()["creator_flag"], response.json()["creator_name"]) == (
        None,
        "rina@acme",
    )


async def test_admin_issued_token_creates_as_admin(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    assert (deal["creator_flag"], deal["creator_name"]) == (None, "admin")


@pytest.mark.parametrize("flag", ["robot", "", 42, {"kind": "bot"}])
async def test_unrecognised_creator_flag_is_stored_null_logged_and_still_201(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    caplog: pytest.LogCaptureFixture,
    flag: object,
) -> None:
    with caplog.at_level(logging.WARNING, logger="crm_service.records.service"):
        deal = await create_deal(client, team, creator_flag=flag)
    assert (deal["creator_flag"], deal["creator_name"]) == (None, "admin")
    rows = await fetch_rows(db, "SELECT creator_flag FROM deals WHERE id = :id", id=deal["id"])
    assert rows == [{"creator_flag": None}]
    assert [r.message for r in caplog.records] == ["unrecognised creator_flag stored as null"]


async def test_creator_flag_cannot_change_on_update(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, creator_flag="bot")
    response = await patch(client, team, deal["id"], creator_flag="agentic_ai", name="Renamed")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "creator_flag"]
    rows = await fetch_rows(db, "SELECT name, creator_flag, version FROM deals")
    assert rows == [{"name": deal["name"], "creator_flag": "bot", "version": 1}]


async def test_creator_flag_cannot_be_added_by_update(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    response = await patch(client, team, deal["id"], creator_flag="bot")
    assert response.status_code == 422


async def test_update_repeating_the_stored_creator_flag_is_accepted(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, creator_flag="bot")
    response = await patch(client, team, deal["id"], creator_flag="BOT", name="Renamed")
    assert response.status_code == 200
    assert response.json()["creator_flag"] == "bot"


async def test_room_id_cannot_change_on_update(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, channel_integration_room_id="room-1")
    response = await patch(client, team, deal["id"], channel_integration_room_id="room-2")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "channel_integration_room_id"]
    rows = await fetch_rows(db, "SELECT channel_integration_room_id FROM deals")
    assert rows == [{"channel_integration_room_id": "room-1"}]


async def test_room_id_cannot_be_added_by_update(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    response = await patch(client, team, deal["id"], channel_integration_room_id="room-1")
    assert response.status_code == 422


async def test_update_repeating_the_stored_room_id_is_accepted(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, channel_integration_room_id="room-1")
    response = await patch(client, team, deal["id"], channel_integration_room_id="room-1")
    assert response.status_code == 200


async def test_contacts_from_crm_lead_ids_and_contact_id_are_united(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    first, second, third = [await create_contact(client, team, first_name=n) for n in "ABC"]
    deal = await create_deal(
        client, team, crm_lead_ids=[second["id"], first["id"]], contact_id=third["id"]
    )
    expected = sorted([first["id"], second["id"], third["id"]])
    assert deal["crm_lead_ids"] == expected
    rows = await fetch_rows(db, "SELECT contact_id FROM deal_contacts ORDER BY contact_id")
    assert [row["contact_id"] for row in rows] == expected


async def test_the_same_contact_in_both_fields_is_linked_once(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    contact = await create_contact(client, team)
    deal = await create_deal(
        client, team, crm_lead_ids=[contact["id"], contact["id"]], contact_id=contact["id"]
    )
    assert deal["crm_lead_ids"] == [contact["id"]]
    assert len(await fetch_rows(db, "SELECT * FROM deal_contacts")) == 1


async def test_contact_ids_not_of_this_team_are_skipped_logged_and_the_deal_still_created(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    other_team: TeamHandle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    own = await create_contact(client, team)
    foreign = await create_contact(client, other_team)
    with caplog.at_level(logging.WARNING, logger="crm_service.records.service"):
        deal = await create_deal(
            client, team, crm_lead_ids=[own["id"], foreign["id"]], contact_id=999_999
        )
    assert deal["crm_lead_ids"] == [own["id"]]
    [warning] = [r for r in caplog.records if r.message.startswith("contact ids skipped")]
    assert warning.skipped_contact_ids == [foreign["id"], 999_999]  # type: ignore[attr-defined]
    rows = await fetch_rows(db, "SELECT deal_id, contact_id FROM deal_contacts")
    assert rows == [{"deal_id": deal["id"], "contact_id": own["id"]}]


async def test_relinking_contacts_on_update_is_idempotent(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    contact = await create_contact(client, team)
    deal = await create_deal(client, team, crm_lead_ids=[contact["id"]])
    response = await patch(client, team, deal["id"], crm_lead_ids=[contact["id"]])
    assert response.status_code == 200
    assert response.json()["crm_lead_ids"] == [contact["id"]]
    assert len(await fetch_rows(db, "SELECT * FROM deal_contacts")) == 1


async def test_update_adds_contacts_to_the_existing_ones(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    first, second = await create_contact(client, team), await create_contact(client, team)
    deal = await create_deal(client, team, contact_id=first["id"])
    response = await patch(client, team, deal["id"], contact_id=second["id"])
    assert response.json()["crm_lead_ids"] == sorted([first["id"], second["id"]])


async def test_adding_contacts_does_not_bump_the_version(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    contact = await create_contact(client, team)
    deal = await create_deal(client, team)
    response = await patch(client, team, deal["id"], crm_lead_ids=[contact["id"]])
    assert response.json()["version"] == 1


async def test_crm_source_id_is_kept_as_given(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    deal = await create_deal(
        client, team, crm_source_id=42, channel_integration_room_id="room-1", creator_flag="bot"
    )
    assert deal["crm_source_id"] == 42
    rows = await fetch_rows(db, "SELECT crm_source_id FROM deals")
    assert rows == [{"crm_source_id": 42}]


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Renamed"},
        {"status": "won"},
        {"size": 99},
        {"crm_stage_name": "Qualified"},
    ],
    ids=["name", "status", "size", "stage"],
)
async def test_a_preview_field_change_bumps_the_version_by_one(
    client: httpx.AsyncClient, team: TeamHandle, change: dict[str, object]
) -> None:
    deal = await create_deal(client, team, size=10)
    response = await patch(client, team, deal["id"], **change)
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["updated_at"] > deal["updated_at"]


async def test_a_pipeline_change_bumps_the_version_and_takes_its_first_stage(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    pipeline_id, stage_ids = await add_pipeline(db, team.id, "Renewals", ["Due", "Renewed"])
    deal = await create_deal(client, team)
    response = await patch(client, team, deal["id"], crm_pipeline_id=pipeline_id)
    assert (response.json()["crm_stage_id"], response.json()["version"]) == (stage_ids[0], 2)


async def test_naming_the_current_pipeline_keeps_the_stage_and_the_version(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, crm_stage_name="Proposal")
    response = await patch(client, team, deal["id"], crm_pipeline_name="sales")
    assert (response.json()["stage"]["name"], response.json()["version"]) == ("Proposal", 1)


async def test_a_stage_name_on_update_is_looked_up_in_the_deals_pipeline_first(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    pipeline_id, stage_ids = await add_pipeline(db, team.id, "Renewals", ["Due", "Qualified"])
    deal = await create_deal(client, team, crm_pipeline_id=pipeline_id)
    response = await patch(client, team, deal["id"], crm_stage_name="qualified")
    assert (response.json()["crm_pipeline_id"], response.json()["crm_stage_id"]) == (
        pipeline_id,
        stage_ids[1],
    )


async def test_a_stage_name_only_in_another_pipeline_moves_the_deal_there(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    pipeline_id, stage_ids = await add_pipeline(db, team.id, "Renewals", ["Due", "Renewed"])
    deal = await create_deal(client, team)
    response = await patch(client, team, deal["id"], crm_stage_name="Renewed")
    assert response.status_code == 200
    assert (response.json()["crm_pipeline_id"], response.json()["crm_stage_id"]) == (
        pipeline_id,
        stage_ids[1],
    )


async def test_an_update_to_a_foreign_stage_is_422_and_changes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, other_team: TeamHandle
) -> None:
    _, foreign_stages = await add_pipeline(db, other_team.id, "Theirs", ["X"])
    deal = await create_deal(client, team)
    response = await patch(client, team, deal["id"], crm_stage_id=foreign_stages[0], name="New")
    assert response.status_code == 422
    rows = await fetch_rows(db, "SELECT name, stage_id, version FROM deals")
    assert rows == [{"name": deal["name"], "stage_id": deal["crm_stage_id"], "version": 1}]


@pytest.mark.parametrize(
    "change",
    [{"crm_source_id": 9}, {"name": "Deal from test"}, {"size": 10.0}, {"unknown": "x"}, {}],
    ids=["crm_source_id", "same-name", "same-size", "unknown-field", "empty"],
)
async def test_an_update_without_a_preview_field_change_keeps_the_version(
    client: httpx.AsyncClient, team: TeamHandle, change: dict[str, object]
) -> None:
    deal = await create_deal(client, team, size=10)
    response = await patch(client, team, deal["id"], **change)
    assert response.status_code == 200
    assert response.json()["version"] == 1


async def test_crm_source_id_can_be_changed_by_update(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, crm_source_id=1)
    response = await patch(client, team, deal["id"], crm_source_id=2)
    assert response.json()["crm_source_id"] == 2


@pytest.mark.parametrize("field", ["name", "status"])
async def test_null_for_a_required_field_on_update_is_422(
    client: httpx.AsyncClient, team: TeamHandle, field: str
) -> None:
    deal = await create_deal(client, team)
    response = await patch(client, team, deal["id"], **{field: None})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


async def test_size_can_be_cleared_with_null(client: httpx.AsyncClient, team: TeamHandle) -> None:
    deal = await create_deal(client, team, size=10)
    response = await patch(client, team, deal["id"], size=None)
    assert (response.json()["size"], response.json()["version"]) == (None, 2)


async def test_patch_answers_the_stored_deal(client: httpx.AsyncClient, team: TeamHandle) -> None:
    deal = await create_deal(client, team)
    patched = (await patch(client, team, deal["id"], name="Renamed", status="won")).json()
    fetched = (await client.get(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)).json()
    assert patched == fetched
    assert (fetched["name"], fetched["status"]) == ("Renamed", "won")


async def test_delete_answers_204_and_the_deal_is_then_404(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    response = await client.delete(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)
    assert (response.status_code, response.content) == (204, b"")
    assert (await client.get(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)).status_code == 404


async def test_delete_is_soft_and_bumps_the_version(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)
    await client.delete(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)
    [row] = await fetch_rows(db, "SELECT version, deleted_at FROM deals")
    assert row["version"] == 2
    assert row["deleted_at"] is not None


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_deleted_deal_cannot_be_changed_or_deleted_again(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, method: str
) -> None:
    deal = await create_deal(client, team)
    await client.delete(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)
    body = {"name": "Back"} if method == "PATCH" else None
    response = await client.request(
        method, f"/api/v3.1/deals/{deal['id']}", json=body, headers=team.auth
    )
    assert response.status_code == 404
    assert await fetch_rows(db, "SELECT name, version FROM deals") == [
        {"name": deal["name"], "version": 2}
    ]


@pytest.mark.parametrize(
    ("method", "body"), [("GET", None), ("PATCH", {"name": "Mine now"}), ("DELETE", None)]
)
async def test_another_teams_deal_is_404_and_untouched(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    other_team: TeamHandle,
    method: str,
    body: dict[str, str] | None,
) -> None:
    theirs = await create_deal(client, other_team, name="Globex deal")
    before = await fetch_rows(db, "SELECT * FROM deals")
    response = await client.request(
        method, f"/api/v3.1/deals/{theirs['id']}", json=body, headers=team.auth
    )
    assert response.status_code == 404
    assert response.json() == {"detail": f"deal {theirs['id']} not found"}
    assert await fetch_rows(db, "SELECT * FROM deals") == before


async def test_a_missing_deal_is_404(client: httpx.AsyncClient, team: TeamHandle) -> None:
    response = await client.get("/api/v3.1/deals/123456", headers=team.auth)
    assert response.status_code == 404


async def test_a_failed_create_writes_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    contact = await create_contact(client, team)
    before = await row_counts(db)
    response = await client.post(
        "/api/v3.1/deals",
        json={"name": "Deal", "crm_lead_ids": [contact["id"]], "crm_stage_id": 2_000_000},
        headers=team.auth,
    )
    assert response.status_code == 422
    assert await row_counts(db) == before
