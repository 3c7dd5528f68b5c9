"""The CRM record pages (``/deals/{id}``, ``/tickets/{id}``) and their sign-in: a company
access token in an HttpOnly cookie, the form's CSRF token, the team's records only."""

from __future__ import annotations

import re

import httpx

from tests.crm.conftest import TeamHandle, create_contact, create_deal, create_ticket


async def _sign_in(client: httpx.AsyncClient, token: str, next_path: str) -> httpx.Response:
    form = await client.get("/sign-in", params={"next": next_path})
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert found is not None
    return await client.post(
        "/sign-in", data={"token": token, "csrf_token": found.group(1), "next": next_path}
    )


async def test_a_record_page_without_a_session_redirects_to_the_sign_in_form(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team)

    response = await client.get(f"/deals/{deal['id']}")

    assert response.status_code == 303
    assert response.headers["location"] == f"/sign-in?next=%2Fdeals%2F{deal['id']}"


async def test_sign_in_needs_the_forms_csrf_token(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    await client.get("/sign-in")

    response = await client.post("/sign-in", data={"token": team.access_token, "csrf_token": "x"})

    assert response.status_code == 403
    assert "crm_session" not in response.headers.get("set-cookie", "")


async def test_a_wrong_token_shows_the_forms_error(client: httpx.AsyncClient) -> None:
    response = await _sign_in(client, "wrong", "/deals/1")

    assert response.status_code == 401
    assert "That token is not valid" in response.text


async def test_the_deal_page_shows_fields_creator_and_contacts(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    contact = await create_contact(client, team, first_name="Budi", last_name="Santoso")
    deal = await create_deal(
        client,
        team,
        name="Blue units",
        creator_flag="bot",
        channel_integration_room_id="room-9",
        contact_id=contact["id"],
    )

    signed_in = await _sign_in(client, team.access_token, f"/deals/{deal['id']}")
    assert signed_in.status_code == 303
    assert "HttpOnly" in signed_in.headers["set-cookie"]
    page = await client.get(signed_in.headers["location"])

    assert page.status_code == 200
    assert "Blue units" in page.text
    assert '<dd data-field="creator">Bot</dd>' in page.text
    assert "Budi Santoso" in page.text
    assert "room-9" in page.text


async def test_the_ticket_page_shows_its_ticket_id_and_priority(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    ticket = await create_ticket(client, team, priority="urgent", creator_flag="agentic_ai")
    await _sign_in(client, team.access_token, f"/tickets/{ticket['id']}")

    page = await client.get(f"/tickets/{ticket['id']}")

    assert ticket["unique_ticket_id"] in page.text
    assert '<dd data-field="priority">urgent</dd>' in page.text
    assert '<dd data-field="creator">AI</dd>' in page.text


async def test_another_teams_record_is_not_found(
    client: httpx.AsyncClient, team: TeamHandle, other_team: TeamHandle
) -> None:
    deal = await create_deal(client, team, name="Not yours")
    await _sign_in(client, other_team.access_token, f"/deals/{deal['id']}")

    page = await client.get(f"/deals/{deal['id']}")

    assert page.status_code == 404
    assert "Not yours" not in page.text
