"""Which requests run in a transaction: a deal create without an Idempotency-Key is one
statement and autocommits (no BEGIN / COMMIT round trips); everything that writes more
keeps its one transaction. (A chatbot's plain create is taken by the fast path, which
autocommits on held connections, ``test_deal_fast_path.py``; the route's creates here
name their pipeline, so the route takes them.)"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.crm.conftest import TeamHandle, create_deal, fetch_rows
from tests.support.databases import sent_statements

DEAL = {"name": "Bot deal", "channel_integration_room_id": "room-1", "creator_flag": "bot"}


async def routed_deal(crm_app: FastAPI) -> dict[str, str]:
    """``DEAL`` naming the team's default pipeline: what the route, not the fast path, takes."""
    [pipeline] = await fetch_rows(crm_app.state.engine, "SELECT name FROM pipelines")
    return {**DEAL, "crm_pipeline_name": pipeline["name"]}


async def test_a_deal_create_without_a_key_autocommits_every_statement(
    crm_app: FastAPI, client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await routed_deal(crm_app)
    with sent_statements(crm_app.state.engine) as seen:
        response = await client.post("/api/v3.1/deals", json=deal, headers=team.auth)

    assert response.status_code == 201, response.text
    assert any(statement.lstrip().startswith("WITH record AS") for statement, _ in seen)
    assert {level for _, level in seen} == {"AUTOCOMMIT"}
    [row] = await fetch_rows(crm_app.state.engine, "SELECT name FROM deals")
    assert row["name"] == "Bot deal"


async def test_a_create_with_a_key_keeps_its_transaction(
    crm_app: FastAPI, client: httpx.AsyncClient, team: TeamHandle
) -> None:
    headers = {**team.auth, "Idempotency-Key": "once"}
    deal = await routed_deal(crm_app)
    with sent_statements(crm_app.state.engine) as seen:
        response = await client.post("/api/v3.1/deals", json=deal, headers=headers)

    assert response.status_code == 201, response.text
    insert = [level for statement, level in seen if statement.lstrip().startswith("WITH record")]
    assert insert == [None]


async def test_a_ticket_create_and_a_deal_update_keep_their_transaction(
    crm_app: FastAPI, client: httpx.AsyncClient, team: TeamHandle
) -> None:
    deal = await create_deal(client, team, **DEAL)
    with sent_statements(crm_app.state.engine) as seen:
        ticket = await client.post(
            "/api/v3.1/tickets",
            json={"name": "Ticket", "channel_integration_room_id": "room-1"},
            headers=team.auth,
        )
        patched = await client.patch(
            f"/api/v3.1/deals/{deal['id']}", json={"name": "Renamed"}, headers=team.auth
        )

    assert ticket.status_code == 201 and patched.status_code == 200
    assert seen and {level for _, level in seen} == {None}
