"""``POST /api/v3.1/deals`` answered before routing (``deals/fast_path.py``): the same
answers, rows, events and metrics as the route gives for the creates it takes, and the
route's own answer for everything it leaves to the route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.deals import fast_path
from crm_service.deals.fast_path import DealCreateFastPath
from crm_service.main import create_app
from crm_service.metrics import API_REGISTRY
from crm_service.settings import Settings
from tests.crm.conftest import (
    DispatchingTransport,
    EnqueueRecorder,
    TeamHandle,
    create_contact,
    create_team,
    enable_parity,
    execute,
    fetch_rows,
)
from tests.support.databases import sent_statements

# What differs between two creates of the same body: the record's identity and times.
VARYING = {"id", "slug", "created_at", "updated_at", "external_url"}


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient
    enqueued: EnqueueRecorder


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Running]:
    enqueued = EnqueueRecorder()
    app.state.enqueue_outbox = enqueued
    async with app.router.lifespan_context(app):
        transport = DispatchingTransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
            yield Running(app, client, enqueued)


def routed_app(settings: Settings) -> FastAPI:
    """The app without the fast path: every create goes through FastAPI's route."""
    app = create_app(settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not DealCreateFastPath]
    return app


@pytest.fixture
async def fast(settings: Settings) -> AsyncIterator[Running]:
    async with running(create_app(settings)) as stack:
        yield stack


@pytest.fixture
async def routed(settings: Settings) -> AsyncIterator[Running]:
    async with running(routed_app(settings)) as stack:
        yield stack


@pytest.fixture
async def bot_team(fast: Running) -> TeamHandle:
    team = await create_team(fast.client)
    await enable_parity(fast.client, team)
    return team


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    """Status, headers and body, without what differs between two requests (the request
    id, the record's identity and times, and the length they make the body)."""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name not in {"x-request-id", "content-length"}
    ]
    try:
        body: Any = response.json()
    except ValueError:
        return response.status_code, headers, response.content
    if isinstance(body, dict) and response.status_code == 201:
        body = {key: value for key, value in body.items() if key not in VARYING}
    return response.status_code, headers, body


async def outbox_of(engine: AsyncEngine, deal_id: int) -> list[dict[str, Any]]:
    """The deal's outbox rows as the worker will read them, without their own identity."""
    rows = await fetch_rows(
        engine,
        "SELECT kind, event_type, record_kind, room_id, status, attempt_count, body"
        " FROM outbox_events WHERE record_id = :deal ORDER BY id",
        deal=deal_id,
    )
    for row in rows:
        if row["body"] is not None:
            envelope = json.loads(row["body"])
            data = envelope["data"]
            row["body"] = {
                "type": envelope["type"],
                "fields": sorted(data),
                "data": {key: value for key, value in data.items() if key not in VARYING},
            }
    return rows


def bot_deal(room: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "Deal from bot",
        "channel_integration_room_id": room,
        "creator_flag": "bot",
        "size": 1500000,
        **fields,
    }


CREATES = {
    "bot deal with a contact": lambda contact: {"crm_lead_ids": [contact]},
    "AI deal, amount alias": lambda contact: {
        "creator_flag": "AGENTIC_AI",
        "amount": "12.50",
        "contact_id": contact,
    },
    "no room": lambda contact: {"channel_integration_room_id": None},
    "unknown creator flag": lambda contact: {"creator_flag": "robot"},
    "another team's contact": lambda contact: {"crm_lead_ids": [contact, 999_999]},
    "won, unknown fields": lambda contact: {"status": "won", "extra": {"x": 1}},
}


@pytest.mark.parametrize("case", CREATES)
async def test_a_create_it_takes_is_answered_and_written_as_the_route_does(
    fast: Running, routed: Running, bot_team: TeamHandle, db: AsyncEngine, case: str
) -> None:
    contact = (await create_contact(fast.client, bot_team))["id"]
    extra = CREATES[case](contact)
    with sent_statements(fast.app.state.engine) as fast_statements:
        taken = await fast.client.post(
            "/api/v3.1/deals", json=bot_deal("room-fast", **extra), headers=bot_team.auth
        )
    with sent_statements(routed.app.state.engine) as routed_statements:
        answered = await routed.client.post(
            "/api/v3.1/deals", json=bot_deal("room-fast", **extra), headers=bot_team.auth
        )

    assert taken.status_code == 201, taken.text
    assert comparable(taken) == comparable(answered)
    assert fast_statements == []  # nothing went through the engine: the fast path answered
    assert routed_statements != []
    fast_deal, routed_deal = taken.json(), answered.json()
    assert fast_deal["id"] != routed_deal["id"]
    assert fast_deal["external_url"] == f"https://crm.example.test/deals/{fast_deal['id']}"
    # Stored and fetched alike, events and note jobs alike.
    fetched = await fast.client.get(f"/api/v3.1/deals/{fast_deal['id']}", headers=bot_team.auth)
    assert fetched.json() == fast_deal
    assert await outbox_of(db, fast_deal["id"]) == await outbox_of(db, routed_deal["id"])
    assert [kind for _, kind in fast.enqueued.items] == [kind for _, kind in routed.enqueued.items]
    ids = {row["id"] for row in await fetch_rows(db, "SELECT id FROM outbox_events")}
    assert {outbox_id for outbox_id, _ in fast.enqueued.items} <= ids


async def test_a_team_with_the_flag_off_gets_the_deal_without_events(
    fast: Running, routed: Running, db: AsyncEngine
) -> None:
    team = await create_team(fast.client)
    taken = await fast.client.post("/api/v3.1/deals", json=bot_deal("room-1"), headers=team.auth)
    answered = await routed.client.post(
        "/api/v3.1/deals", json=bot_deal("room-1"), headers=team.auth
    )

    assert taken.status_code == 201 and comparable(taken) == comparable(answered)
    assert await outbox_of(db, taken.json()["id"]) == []
    assert fast.enqueued.items == []

    await enable_parity(fast.client, team)  # read with the token on the next create
    turned_on = await fast.client.post(
        "/api/v3.1/deals", json=bot_deal("room-2"), headers=team.auth
    )
    assert [row["kind"] for row in await outbox_of(db, turned_on.json()["id"])] == ["webhook"]


def _refusals(team: TeamHandle) -> dict[str, tuple[Any, dict[str, str]]]:
    body = json.dumps(bot_deal("room-r"))
    return {
        "no token": (body, {"content-type": "application/json"}),
        "not bearer": (body, {"content-type": "application/json", "authorization": "Basic x"}),
        "unknown token": (
            body,
            {"content-type": "application/json", "authorization": "Bearer nope"},
        ),
        "not JSON": ("{oops", {"content-type": "application/json", **team.auth}),
        "an array": ("[1]", {"content-type": "application/json", **team.auth}),
        "no name": (
            json.dumps({"creator_flag": "bot"}),
            {"content-type": "application/json", **team.auth},
        ),
        "size with 3 decimals": (
            json.dumps(bot_deal("room-r", size="1.005")),
            {"content-type": "application/json", **team.auth},
        ),
        "another content type": (body, {"content-type": "text/plain", **team.auth}),
        "a pipeline of another team": (
            json.dumps(bot_deal("room-r", crm_pipeline_id=999_999)),
            {"content-type": "application/json", **team.auth},
        ),
    }


REFUSALS = list(_refusals(TeamHandle(0, "", "", "")))


@pytest.mark.parametrize("case", REFUSALS)
async def test_what_it_leaves_to_the_route_gets_the_routes_answer(
    fast: Running, routed: Running, bot_team: TeamHandle, db: AsyncEngine, case: str
) -> None:
    content, headers = _refusals(bot_team)[case]
    taken = await fast.client.post("/api/v3.1/deals", content=content, headers=headers)
    answered = await routed.client.post("/api/v3.1/deals", content=content, headers=headers)

    assert taken.status_code in {401, 422}, taken.text
    assert comparable(taken) == comparable(answered)
    assert await fetch_rows(db, "SELECT id FROM deals") == []


async def test_an_expired_token_is_refused_by_the_route(
    fast: Running, bot_team: TeamHandle, db: AsyncEngine
) -> None:
    await execute(db, "UPDATE company_tokens SET expires_at = now() - interval '1 second'")
    response = await fast.client.post(
        "/api/v3.1/deals", json=bot_deal("room-1"), headers=bot_team.auth
    )

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert await fetch_rows(db, "SELECT id FROM deals") == []


async def test_a_named_placement_and_a_key_go_through_the_route(
    fast: Running, bot_team: TeamHandle, db: AsyncEngine
) -> None:
    [pipeline] = await fetch_rows(db, "SELECT id, name FROM pipelines WHERE is_default")
    with sent_statements(fast.app.state.engine) as seen:
        named = await fast.client.post(
            "/api/v3.1/deals",
            json=bot_deal("room-1", crm_pipeline_name=pipeline["name"]),
            headers=bot_team.auth,
        )
    assert named.status_code == 201 and named.json()["crm_pipeline_id"] == pipeline["id"]
    assert any(statement.lstrip().startswith("WITH record") for statement, _ in seen)

    keyed = {**bot_team.auth, "Idempotency-Key": "k-1"}
    first = await fast.client.post("/api/v3.1/deals", json=bot_deal("room-2"), headers=keyed)
    again = await fast.client.post("/api/v3.1/deals", json=bot_deal("room-2"), headers=keyed)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert len(await fetch_rows(db, "SELECT id FROM deals")) == 2


async def test_a_team_without_a_default_pipeline_gets_the_routes_answer(
    fast: Running, routed: Running, bot_team: TeamHandle, db: AsyncEngine
) -> None:
    await execute(db, "UPDATE pipelines SET is_default = false")
    taken = await fast.client.post(
        "/api/v3.1/deals", json=bot_deal("room-1"), headers=bot_team.auth
    )
    answered = await routed.client.post(
        "/api/v3.1/deals", json=bot_deal("room-1"), headers=bot_team.auth
    )

    assert comparable(taken) == comparable(answered)


def _sample(name: str, labels: dict[str, str]) -> float:
    return API_REGISTRY.get_sample_value(name, labels) or 0.0


async def test_it_is_counted_as_the_route_counts(fast: Running, bot_team: TeamHandle) -> None:
    labels = {"handler": "/api/v3.1/deals", "method": "POST", "status": "201"}
    requests_before = _sample("http_requests_total", labels)
    created_before = _sample("bot_deal_created_total", {})
    with sent_statements(fast.app.state.engine) as seen:
        response = await fast.client.post(
            "/api/v3.1/deals", json=bot_deal("room-1"), headers=bot_team.auth
        )

    assert response.status_code == 201 and seen == []
    assert response.headers["x-request-id"]
    assert _sample("http_requests_total", labels) == requests_before + 1
    assert _sample("bot_deal_created_total", {}) == created_before + 1


@contextmanager
def held_calls(app: FastAPI) -> Iterator[list[str]]:
    """The statements the app's held connections run while the block runs."""
    held = app.state.held_connections
    sent: list[str] = []
    fetchrow = held.fetchrow

    async def recorded(sql: str, *args: Any) -> Any:
        sent.append(sql)
        return await fetchrow(sql, *args)

    held.fetchrow = recorded
    try:
        yield sent
    finally:
        del held.fetchrow


async def test_a_remembered_caller_creates_in_one_round_trip(
    fast: Running, routed: Running, bot_team: TeamHandle, db: AsyncEngine
) -> None:
    first = await fast.client.post(
        "/api/v3.1/deals", json=bot_deal("room-1"), headers=bot_team.auth
    )
    with held_calls(fast.app) as sent:
        again = await fast.client.post(
            "/api/v3.1/deals", json=bot_deal("room-2"), headers=bot_team.auth
        )
    answered = await routed.client.post(
        "/api/v3.1/deals", json=bot_deal("room-2"), headers=bot_team.auth
    )

    assert first.status_code == again.status_code == 201, again.text
    assert comparable(again) == comparable(answered)
    assert len(sent) == 1 and sent[0].lstrip().startswith("WITH guard AS")
    assert await outbox_of(db, again.json()["id"]) == await outbox_of(db, answered.json()["id"])
    assert [kind for _, kind in fast.enqueued.items] == ["webhook"] * 2


FIRST_STAGE = (
    "SELECT id FROM stages WHERE pipeline_id = (SELECT id FROM pipelines WHERE is_default)"
    " ORDER BY position, id LIMIT 1"
)
# What can change about a caller between two of its creates, as SQL.
CHANGES = {
    "parity turned off": "UPDATE team_features SET enabled = false",
    "pipeline renamed": "UPDATE pipelines SET name = 'Renamed pipeline' WHERE is_default",
    "first stage renamed": f"UPDATE stages SET name = 'Renamed stage' WHERE id = ({FIRST_STAGE})",
    "another first stage": (
        "UPDATE stages SET position = (SELECT max(position) + 1 FROM stages)"
        f" WHERE id = ({FIRST_STAGE})"
    ),
    "company id changed": "UPDATE teams SET external_company_id = 'company-renamed'",
    "another identity": "UPDATE company_tokens SET sso_id = 'someone-else'",
    "token expired": "UPDATE company_tokens SET expires_at = now() - interval '1 second'",
    "token revoked": "DELETE FROM company_tokens",
    "no default pipeline": "UPDATE pipelines SET is_default = false",
    "parity row deleted": "DELETE FROM team_features",
    "a new first stage": (
        "INSERT INTO stages (pipeline_id, name, position)"
        " SELECT id, 'Earlier stage', -1 FROM pipelines WHERE is_default"
    ),
    "another default pipeline": (
        "WITH pipeline AS (INSERT INTO pipelines (team_id, name, is_default)"
        " SELECT team_id, 'Other pipeline', true FROM pipelines WHERE is_default RETURNING id),"
        " stage AS (INSERT INTO stages (pipeline_id, name, position)"
        " SELECT id, 'Other first stage', 0 FROM pipeline)"
        " UPDATE pipelines SET is_default = false WHERE is_default"
    ),
}


@pytest.mark.parametrize("change", CHANGES)
async def test_a_change_to_a_remembered_caller_shows_on_its_next_create(
    fast: Running, routed: Running, bot_team: TeamHandle, db: AsyncEngine, change: str
) -> None:
    remembered = await fast.client.post(
        "/api/v3.1/deals", json=bot_deal("room-1"), headers=bot_team.auth
    )
    assert remembered.status_code == 201
    await execute(db, CHANGES[change])
    deals_before = len(await fetch_rows(db, "SELECT id FROM deals"))

    with held_calls(fast.app) as sent:
        taken = await fast.client.post(
            "/api/v3.1/deals", json=bot_deal("room-2"), headers=bot_team.auth
        )
    answered = await routed.client.post(
        "/api/v3.1/deals", json=bot_deal("room-2"), headers=bot_team.auth
    )

    assert sent[0].lstrip().startswith("WITH guard AS")  # tried with the remembered caller
    assert comparable(taken) == comparable(answered)
    deals = await fetch_rows(db, "SELECT id FROM deals ORDER BY id")
    if taken.status_code == 201:
        # One deal each, no half-written one from the guarded try; events as the route's.
        assert len(deals) == deals_before + 2
        assert await outbox_of(db, taken.json()["id"]) == await outbox_of(db, answered.json()["id"])
    else:
        assert taken.status_code == 401 and len(deals) == deals_before
    outbox_records = {
        row["record_id"] for row in await fetch_rows(db, "SELECT record_id FROM outbox_events")
    }
    assert outbox_records <= {deal["id"] for deal in deals}


async def test_it_remembers_a_bounded_number_of_callers(
    fast: Running, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_path, "MAX_CALLERS", 2)
    teams = [await create_team(fast.client, f"company-{n}", f"Team {n}") for n in range(3)]
    for team in [*teams, teams[0]]:
        response = await fast.client.post(
            "/api/v3.1/deals", json=bot_deal("room-1"), headers=team.auth
        )
        assert response.status_code == 201

    layer = _fast_path_of(fast.app)
    assert len(layer.callers) == 2
    assert len(await fetch_rows(db, "SELECT id FROM deals")) == 4


def _fast_path_of(app: FastAPI) -> DealCreateFastPath:
    layer: Any = app.middleware_stack
    while not isinstance(layer, DealCreateFastPath):
        layer = layer.app
    return layer
